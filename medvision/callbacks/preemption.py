"""Pre-emption: on SIGTERM (or Ctrl+C) during training, save a checkpoint and stop cleanly.

Lightning turns SIGTERM into a clean stop after the current batch (and, under SLURM with
auto-requeue, SIGUSR1 into an ``hpc_ckpt_*.ckpt`` and a requeue). This callback adds the
checkpoint for a plain SIGTERM (a cloud spot instance, ``kill``, a scheduler's time limit):
``<run dir>/checkpoints/preempted.ckpt``, the state after the last finished batch. The next
launch with ``ckpt_path=last hydra.run.dir=<run dir>`` picks the newest of ``last.ckpt`` and
``preempted.ckpt`` (Lightning's rule for ``ckpt_path="last"``) and continues mid-epoch: the
data sampler skips the batches already done (:func:`medvision.data.sampling.resumed_batches`).
A run that ends normally deletes ``preempted.ckpt``.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class PreemptionCheckpoint(OnExceptionCheckpoint):
    """Lightning's ``OnExceptionCheckpoint``, for pre-emption only: SIGTERM or Ctrl+C while fitting.

    A crash of the code (an error, a NaN) saves nothing: its state is not one to resume from.

    Args:
        dirpath: folder of the checkpoint (the run's ``checkpoints/``).
        filename: file name without ``.ckpt``.
    """

    def __init__(self, dirpath: str, filename: str = "preempted") -> None:
        super().__init__(dirpath, filename)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != TrainerFn.FITTING or not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        super().on_exception(trainer, pl_module, exception)
        rank_zero_info(
            f"pre-empted: saved {self.ckpt_path} (epoch {trainer.current_epoch}, step {trainer.global_step}); "
            "continue with ckpt_path=last hydra.run.dir=<this run's folder>"
        )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:
            super().teardown(trainer, pl_module, stage)  # a finished fit has nothing left to resume
