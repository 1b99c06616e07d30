"""Learning-rate schedules stated as fractions of training, so they follow ``trainer.max_epochs``."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def multistep_at_fractions(
    optimizer: torch.optim.Optimizer,
    total_epochs: int,
    fractions: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.MultiStepLR:
    """``MultiStepLR`` whose milestones are fractions of the run (MedMNIST v2: x0.1 at 50% and 75%).

    Args:
        optimizer: the optimizer.
        total_epochs: epochs of the run (``${trainer.max_epochs}``).
        fractions: where the learning rate drops, as fractions of ``total_epochs``.
        gamma: factor applied at each milestone.
    """
    milestones = sorted({max(1, round(f * total_epochs)) for f in fractions})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
