"""Deterministic train/val/test splits grouped by subject (holdout or k-fold)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medvision.utils.errors import MedvisionError

SPLITS = ("train", "val", "test")


def _count(fraction: float, n: int) -> int:
    if fraction <= 0:
        return 0
    return max(1, round(fraction * n))


def group_split(
    subjects: Sequence[str],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_folds: int | None = None,
    fold: int = 0,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Split case indices into train/val/test so that no subject spans two splits.

    Subjects (not cases) are shuffled with ``seed``. ``test_fraction`` of them form the test
    split. The rest form either a holdout (``val_fraction`` of all subjects to val) or, with
    ``num_folds``, k folds of which fold ``fold`` is val and the others train. The test split
    is the same for every fold.

    Args:
        subjects: the subject of each case, in record order.
        val_fraction: fraction of subjects for validation (holdout mode).
        test_fraction: fraction of subjects for the test split.
        num_folds: number of cross-validation folds, or ``None`` for a holdout split.
        fold: the fold used for validation, ``0 <= fold < num_folds``.
        seed: the shuffling seed.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each a sorted list of case indices.
    """
    groups = sorted(set(subjects))
    n = len(groups)
    order = [groups[i] for i in np.random.default_rng(seed).permutation(n)]
    n_test = _count(test_fraction, n)
    test, rest = order[:n_test], order[n_test:]
    if num_folds is not None:
        if num_folds < 2 or num_folds > len(rest):
            raise MedvisionError(
                f"data.num_folds={num_folds} needs 2..{len(rest)} subjects outside the test split",
                fix="lower data.num_folds or data.test_fraction",
            )
        if not 0 <= fold < num_folds:
            raise MedvisionError(
                f"data.fold={fold} is outside 0..{num_folds - 1}", fix="pick a fold below data.num_folds"
            )
        chunks = np.array_split(np.array(rest, dtype=object), num_folds)
        val = list(chunks[fold])
        train = [g for i, c in enumerate(chunks) if i != fold for g in c]
    else:
        n_val = _count(val_fraction, n)
        val, train = rest[:n_val], rest[n_val:]
    if not train:
        raise MedvisionError(
            f"no subject is left for training "
            f"({n} subjects, val_fraction={val_fraction}, test_fraction={test_fraction})",
            fix="add cases or lower data.val_fraction / data.test_fraction",
        )
    where = dict.fromkeys(train, "train") | dict.fromkeys(val, "val") | dict.fromkeys(test, "test")
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, subject in enumerate(subjects):
        out[where[subject]].append(i)
    return out
