"""nnU-Net v2's own trainer, shortened to a CPU budget (the peer run of issue 14, point 4).

``scripts/bench/nnunet_peer.py setup`` copies this file into the peer venv as
``nnunetv2/training/nnUNetTrainer/nnUNetTrainerBudget.py``. It must sit directly in that folder:
nnU-Net finds a trainer class by importing every module of ``nnUNetTrainer/`` first and only
then descending into ``variants/``, and some modules there import torchvision, which does not
import against the CPU torch this machine has. Nothing here changes how nnU-Net trains, only
how long: the number of epochs, the iterations per epoch (nnU-Net: 1000 x 250 train + 50 val),
an optional wall-clock budget, and optionally skipping the final full-resolution validation.

Settings come from environment variables, because ``nnUNetv2_train`` passes no trainer options:

- ``nnUNet_budget_epochs`` (default 5): ``num_epochs``; the poly learning-rate schedule decays
  over this many epochs, as in nnU-Net.
- ``nnUNet_budget_iters`` (default 10): training iterations per epoch; ``auto`` (with a wall
  budget) runs epoch 0 with one iteration and then sizes epochs to about 1/12 of the budget at
  that pace (on a 2-core CPU one step of nnU-Net's 192x192x48 CT patch takes about a minute, so
  a fixed count would make one epoch longer than the whole budget).
- ``nnUNet_budget_val_iters`` (default 2): validation iterations per epoch (pseudo Dice only).
- ``nnUNet_budget_seconds`` (default unset): stop after the epoch at whose end the elapsed time
  since ``on_train_start`` plus the last epoch's duration would exceed this many seconds; the
  final checkpoint is then written as at a normal end.
- ``nnUNet_budget_skip_final_val`` (default 0): 1 skips ``perform_actual_validation`` (the
  sliding-window prediction of every validation case after training).
- ``nnUNet_budget_fit`` (default 0): 1 fits the run to ``nnUNet_budget_seconds`` at its measured
  pace, as medvision's planned runs do (``callbacks.budget_pace``): after two epochs the number
  of epochs that fit the remaining time (x0.95) at the second epoch's duration becomes the
  length of nnU-Net's poly learning-rate schedule (``lr_scheduler.max_steps``) and the run
  stops there, so its rate anneals to zero inside the budget instead of being cut while high.
  ``nnUNet_budget_epochs`` is then only the upper bound.
"""

from __future__ import annotations

import os
import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _env(name: str, default: str | None) -> str | None:
    """``nnUNet_budget_<name>``: nnU-Net's own variables are spelled ``nnUNet_*`` (``nnUNet_raw``, ...)."""
    return os.environ.get(f"nnUNet_budget_{name}", default)


class _BudgetSpent(Exception):
    """Raised at an epoch's end when the next epoch would overrun ``nnUNet_budget_seconds``."""


class nnUNetTrainerBudget(nnUNetTrainer):
    """``nnUNetTrainer`` with epochs, iterations and wall time from ``nnUNet_budget_*`` variables."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 - nnU-Net's own signature
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(_env("epochs", "5"))
        iters = _env("iters", "10")
        self.auto_iters = iters == "auto"
        self.num_iterations_per_epoch = 1 if self.auto_iters else int(iters)
        self.num_val_iterations_per_epoch = int(_env("val_iters", "2"))
        budget = _env("seconds", None)
        self.budget_seconds = float(budget) if budget else None
        self.skip_final_validation = _env("skip_final_val", "0") == "1"
        self.fit_to_budget = _env("fit", "0") == "1" and self.budget_seconds is not None
        #: the epochs the run was fitted to (``nnUNet_budget_fit``), once decided
        self.fitted_epochs: int | None = None
        self._train_start: float | None = None

    def on_train_start(self) -> None:
        """Start the budget clock, then nnU-Net's own start (network, optimizer, data loaders)."""
        self._train_start = time.perf_counter()
        super().on_train_start()
        self.print_to_log_file(
            f"budget: {self.num_epochs} epochs x {self.num_iterations_per_epoch} iterations "
            f"(+{self.num_val_iterations_per_epoch} val), wall budget {self.budget_seconds} s"
        )

    def on_epoch_end(self) -> None:
        """nnU-Net's epoch end; then stop if one more epoch would overrun the wall budget."""
        super().on_epoch_end()
        if self.budget_seconds is None or self._train_start is None or self.current_epoch >= self.num_epochs:
            return
        elapsed = time.perf_counter() - self._train_start
        last = self.logger.get_value("epoch_end_timestamps", step=-1) - self.logger.get_value(
            "epoch_start_timestamps", step=-1
        )
        if self.auto_iters and self.current_epoch == 1:
            # epoch 0 ran one iteration: size the epochs to ~1/12 of the budget at its pace
            self.num_iterations_per_epoch = max(1, min(250, round(self.budget_seconds / 12 / max(last, 1e-3))))
            self.print_to_log_file(f"budget: epoch 0 took {last:.1f} s: {self.num_iterations_per_epoch} iterations")
        if self.fit_to_budget and self.fitted_epochs is None and self.current_epoch >= 2:
            remaining = self.budget_seconds - elapsed
            self.fitted_epochs = min(self.num_epochs, self.current_epoch + max(1, int(0.95 * remaining / last)))
            self.lr_scheduler.max_steps = self.fitted_epochs
            self.print_to_log_file(
                f"budget: {last:.1f} s per epoch, {remaining:.0f} s left: fitted to {self.fitted_epochs} epochs "
                "(the poly schedule's length)"
            )
        if self.fitted_epochs is not None and self.current_epoch >= self.fitted_epochs:
            self.print_to_log_file(f"budget: the {self.fitted_epochs} fitted epochs are done at {elapsed:.1f} s")
            raise _BudgetSpent
        if elapsed + last > self.budget_seconds:
            self.print_to_log_file(f"budget: stopping after epoch {self.current_epoch} at {elapsed:.1f} s")
            raise _BudgetSpent

    def run_training(self) -> None:
        """nnU-Net's loop; a spent budget ends it like the last epoch would (final checkpoint)."""
        try:
            super().run_training()
        except _BudgetSpent:
            self.on_train_end()

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation, unless ``nnUNet_budget_skip_final_val=1``."""
        if self.skip_final_validation:
            self.print_to_log_file("budget: final validation skipped")
            return
        super().perform_actual_validation(save_probabilities)
