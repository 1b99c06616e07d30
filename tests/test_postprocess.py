"""Postprocessing chosen on cross-validation predictions: kept where it helps, refused where it hurts.

The cases are label maps drawn here: an organ (a ball) with a second class inside it, and
predictions that are the truth plus a spurious blob far away (what "keep the largest component"
removes) or, for a structure made of two parts (left and right), exactly the truth (where the
step would delete a true part).
"""

from __future__ import annotations

import numpy as np

from medvision.inference.postprocess import apply_postprocessing, choose_postprocessing, dice_per_class

LABELS = ["background", "organ", "lesion"]
SHAPE = (40, 40, 40)


def ball(centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    return ((grid - np.array(centre)) ** 2).sum(-1) <= radius**2


def organ_case(shift: int) -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[ball((16 + shift, 18, 20), 9)] = 1
    label[ball((16 + shift, 18, 20), 3)] = 2
    return label


def with_blob(label: np.ndarray, value: int, corner: tuple[int, int, int]) -> np.ndarray:
    prediction = label.copy()
    prediction[ball(corner, 2.5)] = value
    return prediction


def test_far_blobs_are_removed_where_cv_says_so() -> None:
    labels = [organ_case(s) for s in (0, 2, 4)]
    predictions = [
        with_blob(labels[0], 1, (36, 36, 36)),
        with_blob(labels[1], 2, (3, 35, 4)),
        with_blob(labels[2], 1, (35, 3, 35)),
    ]
    decision = choose_postprocessing(
        [lambda p=p, t=t: (p, t) for p, t in zip(predictions, labels, strict=True)], LABELS
    )
    assert decision["foreground_together"] is True
    assert decision["mean_after"] > decision["mean_before"]
    assert all(decision["dice_after"][n] >= decision["dice_before"][n] for n in LABELS[1:])

    # a new case with a spurious organ blob in a far corner: the step removes it, the organ stays
    truth = organ_case(1)
    new = with_blob(truth, 1, (37, 2, 37))
    cleaned = apply_postprocessing(new, decision)
    assert cleaned[ball((37, 2, 37), 2.5)].max() == 0
    assert dice_per_class(cleaned, truth, [1, 2]) == {1: 1.0, 2: 1.0}
    assert dice_per_class(new, truth, [1])[1] < 1.0


def test_a_structure_of_two_parts_keeps_both() -> None:
    """Left and right parts are both true: dropping the smaller one would lower the Dice, so no step is kept."""
    cases = []
    for shift in (0, 3):
        label = np.zeros(SHAPE, np.uint8)
        label[ball((10 + shift, 20, 20), 6)] = 1
        label[ball((30, 20, 20 - shift), 5)] = 1
        cases.append((label.copy(), label))
    decision = choose_postprocessing([lambda c=c: c for c in cases], ["background", "kidney"])
    assert decision["foreground_together"] is False
    assert decision["per_class"] == []
    mask = cases[0][0]
    assert np.array_equal(apply_postprocessing(mask, decision), mask)


def test_per_class_step_is_decided_per_class() -> None:
    """A spurious lesion blob inside the organ (connected to the foreground) is only removed per class."""
    labels = [organ_case(s) for s in (0, 3)]
    predictions = []
    for label in labels:
        prediction = label.copy()
        prediction[ball((int(np.argwhere(label == 1)[:, 0].max()) - 2, 18, 20), 1.5)] = 2  # inside the organ's edge
        predictions.append(prediction)
    decision = choose_postprocessing(
        [lambda p=p, t=t: (p, t) for p, t in zip(predictions, labels, strict=True)], LABELS
    )
    assert decision["foreground_together"] is False  # one connected foreground: nothing to remove
    assert decision["per_class"] == ["lesion"]
    cleaned = apply_postprocessing(predictions[0], decision)
    assert dice_per_class(cleaned, labels[0], [2])[2] > dice_per_class(predictions[0], labels[0], [2])[2]
