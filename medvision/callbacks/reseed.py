"""Reseed the global random generators before every training step from ``(seed, epoch, step, rank)``.

What the network draws during a step (dropout, stochastic depth, random init of lazy layers)
comes from the global torch/NumPy/Python generators. Reseeding them before each step from
the run's seed, the epoch, the batch index and the rank makes that randomness independent of
what ran before (how many dataloader workers drew a seed, a validation loop, a restart), so a
run resumed from a checkpoint, or run with another ``num_workers``, makes the same steps.
The data side is seeded the same way by :mod:`medvision.data.sampling`.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from medvision.utils.seeding import derive_seed, run_seed


class ReseedEveryStep(pl.Callback):
    """Seeds ``torch``, ``numpy`` and ``random`` at each training batch start.

    Args:
        seed: the run's seed (default: ``PL_GLOBAL_SEED``, set by ``seed_everything``).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed = derive_seed(
            run_seed() if self.seed is None else self.seed, trainer.current_epoch, batch_idx, trainer.global_rank
        )
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
