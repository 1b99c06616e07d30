"""Store the run's resolved config in every checkpoint, so a checkpoint is self-describing."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from medvision.utils.config import CHECKPOINT_CONFIG_KEY


class RunConfigInCheckpoint(pl.Callback):
    """Adds ``checkpoint["medvision_config"]``: the resolved config as plain containers.

    ``medvision-eval`` (and later prediction/export) rebuild data and model from it, so the
    preprocessing used at evaluation is the one the model was trained with, not retyped.

    Args:
        config: the resolved run config (plain dicts/lists/scalars, safe for ``weights_only``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.config
