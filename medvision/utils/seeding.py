"""One seed for everything: Python, NumPy, torch, Lightning's workers and MONAI's transforms."""

from __future__ import annotations

import os

import numpy as np


def seed_everything(seed: int) -> int:
    """Seed Lightning (Python, NumPy, torch, dataloader workers) and MONAI.

    MONAI's random transforms are seeded by ``monai.data.DataLoader`` from torch's generator,
    per worker, so seeding torch here makes every worker's augmentation reproducible.

    Args:
        seed: the run's seed (``cfg.seed``).

    Returns:
        The seed that was set.
    """
    import lightning.pytorch as pl
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    return pl.seed_everything(seed, workers=True, verbose=False)


def run_seed() -> int:
    """The run's seed (``PL_GLOBAL_SEED``, set by ``seed_everything``; 0 when unset)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that is a fixed function of ``keys`` (e.g. ``seed, epoch, position``)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0])
