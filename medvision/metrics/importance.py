"""Permutation importance of groups of input features (Breiman 2001; Fisher et al. 2019).

A feature group (the one-hot and missing-indicator features of one clinical column) is shuffled
across the cases, jointly, and the drop of a score (test AUC) is its importance: what the model
loses when that column no longer belongs to its case. scikit-learn's ``permutation_importance``
shuffles single feature columns of an estimator's input; here a column's features must move
together (a one-hot group shuffled feature by feature is no longer one-hot), and the model is a
torch network scored on cached image features, so the loop is written out (a few lines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np


def permutation_importance(
    score: Callable[[np.ndarray], float],
    x: np.ndarray,
    groups: Mapping[str, Sequence[int]],
    repeats: int = 5,
    seed: int = 0,
) -> tuple[float, dict[str, dict[str, float | list[float]]]]:
    """The score of ``x`` and, per group, the drop of the score when the group's features are shuffled.

    Args:
        score: the score of a feature matrix (e.g. the test AUC of a model fed with it).
        x: (N, F) features of the cases, in the order ``score`` expects.
        groups: group name -> indices of its features (shuffled together, the same permutation).
        repeats: shuffles per group.
        seed: seed; group ``k`` draws from ``default_rng([seed, k])``, so groups do not share draws.

    Returns:
        ``(baseline, {group: {"mean": drop, "std": ..., "drops": [one per repeat]}})``; a positive
        drop means the model relied on the group.
    """
    baseline = float(score(x))
    out: dict[str, dict[str, float | list[float]]] = {}
    for k, (name, indices) in enumerate(groups.items()):
        rng = np.random.default_rng([seed, k])
        columns = list(indices)
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, columns] = x[rng.permutation(len(x))][:, columns]
            drops.append(baseline - float(score(shuffled)))
        out[name] = {"mean": float(np.mean(drops)), "std": float(np.std(drops)), "drops": drops}
    return baseline, out
