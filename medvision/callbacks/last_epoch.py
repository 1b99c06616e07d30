"""Validate in the epoch where training stops, whatever ``check_val_every_n_epoch`` says.

Lightning validates after epoch ``e`` only when ``(e + 1) % check_val_every_n_epoch == 0``: with
``trainer.max_epochs=15 trainer.check_val_every_n_epoch=10`` the last five epochs are never
validated, and with ``max_epochs`` below the interval nothing is, so ``ModelCheckpoint`` saves
no best checkpoint and the run has nothing to test. Lightning has no switch for it (its issue
#4539; the pull request #12473 that validated every last epoch was closed unmerged), so this
callback sets ``trainer.check_val_every_n_epoch`` to 1 for the epoch in which training stops
and restores it afterwards. That epoch is the last of ``max_epochs``, or the one in which
``max_time`` runs out or a callback or the module sets ``trainer.should_stop`` during a
training batch (Lightning validates at once on ``should_stop`` in a validation epoch).

Not covered, as Lightning leaves no batch to validate on: a ``max_steps`` reached mid-epoch,
and a stop decided at a training epoch's end (``EarlyStopping(check_on_train_epoch_end=True)``).
Early stopping on a validation metric (the default) stops right after a validation, whose
checkpoint already exists. Validation by step count (``check_val_every_n_epoch=None``) is left
alone. An epoch that validates anyway is left as it is, so runs whose last epoch is a validation
epoch (the demo: 60 epochs, every 10) train, validate and checkpoint exactly as without it.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Timer


class ValidateLastEpoch(pl.Callback):
    """Validation in the last training epoch, so a best checkpoint exists whenever training ran.

    Under DDP every rank takes the same decision: the epoch counter and ``should_stop`` agree
    across ranks, and the time limit is rank 0's (broadcast, as Lightning's ``Timer`` does).
    """

    def __init__(self) -> None:
        #: the configured ``check_val_every_n_epoch`` while this epoch's is overridden, else None
        self._every_n_epochs: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(trainer)
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs:
            self._validate_this_epoch(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._every_n_epochs is not None or trainer.check_val_every_n_epoch in (None, 1):
            return  # this epoch validates already, or validation is by step count
        out_of_time = self._out_of_time(trainer)  # first: under DDP every rank joins its broadcast
        if trainer.should_stop or out_of_time:
            self._validate_this_epoch(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(trainer)

    def _validate_this_epoch(self, trainer: pl.Trainer) -> None:
        every_n_epochs = trainer.check_val_every_n_epoch
        if every_n_epochs is None or (trainer.current_epoch + 1) % every_n_epochs == 0:
            return  # validation by step count, or an epoch that validates anyway: nothing changes
        self._every_n_epochs = every_n_epochs
        trainer.check_val_every_n_epoch = 1

    def _restore(self, trainer: pl.Trainer) -> None:
        if self._every_n_epochs is not None:
            trainer.check_val_every_n_epoch = self._every_n_epochs
            self._every_n_epochs = None

    @staticmethod
    def _out_of_time(trainer: pl.Trainer) -> bool:
        """Whether ``max_time`` is used up (Lightning's ``Timer`` stops after this batch or epoch)."""
        timers = [cb for cb in trainer.callbacks if isinstance(cb, Timer)]
        remaining = [t.time_remaining() for t in timers]
        if not any(r is not None for r in remaining):
            return False
        return bool(trainer.strategy.broadcast(any(r is not None and r <= 0 for r in remaining)))
