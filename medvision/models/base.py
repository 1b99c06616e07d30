"""What every medvision LightningModule shares: optimiser and scheduler from partial configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch


def plain(x: torch.Tensor) -> torch.Tensor:
    """Drop MONAI's MetaTensor wrapper (its metadata is not needed inside the network)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


class MedvisionModule(pl.LightningModule):
    """Base LightningModule: builds the optimiser and LR scheduler the config describes.

    Args:
        optimizer: partial optimizer, called with ``params``.
        scheduler: partial LR scheduler called with ``optimizer`` (or ``None``).
        scheduler_interval: ``epoch`` or ``step``.
        monitor: the validation metric a plateau scheduler watches.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.monitor = monitor
        #: one row per test case of the last test epoch (this rank's cases): ``id`` and the case's
        #: metrics (a segmenter adds an ``overlay`` of its middle slice); the
        #: :class:`~medvision.callbacks.test_cases.TestCaseTable` callback writes and logs them
        self.test_cases: list[dict[str, Any]] = []

    def on_test_epoch_start(self) -> None:
        self.test_cases = []

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval, "monitor": self.monitor},
        }
