"""One seed for everything: Python, NumPy, torch, Lightning's workers and MONAI's transforms."""

from __future__ import annotations


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
