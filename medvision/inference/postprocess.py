"""Keep the largest connected component, where cross-validation says it helps.

nnU-Net's postprocessing rule (Isensee et al., Nature Methods 2021), in medvision's terms:

1. **all foreground together**: every voxel of a foreground class that is not connected to the
   largest foreground component becomes background. Kept when, on the cross-validation
   predictions, the mean foreground Dice rises and no class's Dice falls.
2. **per class**, on top of step 1: each class keeps only its own largest component. Kept for
   a class when that class's Dice rises (removing voxels of one class changes no other class's
   Dice, so each class is decided on its own).

The decision is made **only** on cross-validation predictions (each fold's validation cases
predicted by that fold's model; ``medvision-auto``), never on the test split, and stored as
``postprocessing.json`` in the ensemble folder with its figures; ``medvision-predict`` applies it.
Components use MONAI's ``KeepLargestConnectedComponent`` (full connectivity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: the decision inside an ensemble folder
DECISION_FILE = "postprocessing.json"

#: a CV case: its predicted mask and its label mask on the label file's grid (integer arrays)
CasePair = tuple[np.ndarray, np.ndarray]


def keep_largest(mask: np.ndarray, values: Sequence[int], together: bool) -> np.ndarray:
    """``mask`` with only the largest connected component of the label ``values`` (MONAI).

    Args:
        mask: integer label map (spatial axes only).
        values: label values the step applies to.
        together: one component over the union of ``values`` (else one per value).
    """
    import torch
    from monai.transforms import KeepLargestConnectedComponent

    if not values:
        return mask
    step = KeepLargestConnectedComponent(applied_labels=list(values), is_onehot=False, independent=not together)
    out = step(torch.tensor(mask)[None])  # a copy: MONAI edits its input in place
    return np.asarray(out[0]).astype(mask.dtype)


def apply_postprocessing(mask: np.ndarray, decision: Mapping[str, Any] | None) -> np.ndarray:
    """Apply a decision of :func:`choose_postprocessing` to one predicted mask (``None``: unchanged)."""
    if not decision:
        return mask
    values = [int(v) for v in decision.get("foreground_values", [])]
    if decision.get("foreground_together") and values:
        mask = keep_largest(mask, values, together=True)
    per_class = [int(v) for v in decision.get("per_class_values", [])]
    if per_class:
        mask = keep_largest(mask, per_class, together=False)
    return mask


def dice_per_class(prediction: np.ndarray, label: np.ndarray, values: Sequence[int]) -> dict[int, float]:
    """Dice of each label value in one case; NaN where neither mask holds it (left out of means)."""
    out: dict[int, float] = {}
    for v in values:
        p, t = prediction == v, label == v
        total = int(p.sum()) + int(t.sum())
        out[v] = float("nan") if total == 0 else 2.0 * int((p & t).sum()) / total
    return out


def _means(per_case: list[dict[int, float]], values: Sequence[int]) -> dict[int, float]:
    means = {}
    for v in values:
        finite = [d[v] for d in per_case if not math.isnan(d[v])]
        means[v] = float(np.mean(finite)) if finite else float("nan")
    return means


def _mean_foreground(means: Mapping[int, float]) -> float:
    finite = [m for m in means.values() if not math.isnan(m)]
    return float(np.mean(finite)) if finite else float("nan")


def choose_postprocessing(
    cases: Iterable[Callable[[], CasePair]] | Sequence[Callable[[], CasePair]], label_names: Sequence[str]
) -> dict[str, Any]:
    """Decide the postprocessing on cross-validation predictions.

    Args:
        cases: one loader per CV case, returning ``(predicted mask, label mask)`` on the label
            file's grid; called twice per case (before/after each step), so that the cases are
            never all in memory at once.
        label_names: name of each label value, background (0) first.

    Returns:
        ``{"foreground_together": bool, "foreground_values": [...], "per_class_values": [...],
        "per_class": [names], "cases": n, "dice_before": {name: mean}, "dice_after": {...},
        "mean_before", "mean_after", "steps": [{step, mean_before, mean_after, per_class_before,
        per_class_after, kept}]}``: JSON-ready.
    """
    loaders = list(cases)
    values = list(range(1, len(label_names)))
    name = {v: label_names[v] for v in values}
    base, together = [], []
    for load in loaders:
        prediction, label = load()
        base.append(dice_per_class(prediction, label, values))
        together.append(dice_per_class(keep_largest(prediction, values, together=True), label, values))
    before, after = _means(base, values), _means(together, values)
    no_fall = all(math.isnan(before[v]) or (not math.isnan(after[v]) and after[v] >= before[v]) for v in values)
    keep_together = bool(values) and _mean_foreground(after) > _mean_foreground(before) and no_fall
    steps = [_step("all foreground together", before, after, keep_together, name)]
    current = after if keep_together else before

    # per class, on top of step 1; each class's candidate changes only that class's Dice
    candidate: list[dict[int, float]] = []
    for load in loaders:
        prediction, label = load()
        if keep_together:
            prediction = keep_largest(prediction, values, together=True)
        candidate.append(dice_per_class(keep_largest(prediction, values, together=False), label, values))
    per_class_after = _means(candidate, values)
    kept_classes = []
    for v in values:
        trial = dict(current)
        trial[v] = per_class_after[v]
        kept = not math.isnan(current[v]) and not math.isnan(trial[v]) and trial[v] > current[v]
        steps.append(_step(f"largest component of {name[v]}", current, trial, kept, name))
        if kept:
            kept_classes.append(v)
    final = dict(current)
    for v in kept_classes:
        final[v] = per_class_after[v]
    return {
        "rule": "keep the largest connected component where the CV mean foreground Dice rises and no class falls",
        "foreground_together": keep_together,
        "foreground_values": values,
        "per_class_values": kept_classes,
        "per_class": [name[v] for v in kept_classes],
        "cases": len(loaders),
        "dice_before": {name[v]: _round(before[v]) for v in values},
        "dice_after": {name[v]: _round(final[v]) for v in values},
        "mean_before": _round(_mean_foreground(before)),
        "mean_after": _round(_mean_foreground(final)),
        "steps": steps,
    }


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def _step(
    what: str, before: Mapping[int, float], after: Mapping[int, float], kept: bool, name: Mapping[int, str]
) -> dict[str, Any]:
    return {
        "step": what,
        "mean_before": _round(_mean_foreground(before)),
        "mean_after": _round(_mean_foreground(after)),
        "per_class_before": {name[v]: _round(before[v]) for v in before},
        "per_class_after": {name[v]: _round(after[v]) for v in after},
        "kept": kept,
    }


def describe(decision: Mapping[str, Any] | None) -> str:
    """One line: what the decision does."""
    if not decision:
        return "none"
    parts = []
    if decision.get("foreground_together"):
        parts.append("largest foreground component")
    if decision.get("per_class"):
        parts.append("largest component of " + ", ".join(decision["per_class"]))
    return " + ".join(parts) if parts else "none (no step raised the CV Dice)"
