"""A trivial intensity look-up-table segmenter: the floor a network must clear.

For each intensity bin, predict the label most often seen at that intensity in the training
images. When labels are nearly a function of intensity (as in the MNI152 tissue demo), this
scores high without any spatial reasoning, so a network's Dice means little unless it is
read beside this one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class IntensityLUT:
    """Majority label per intensity bin, fit on training images.

    Args:
        num_classes: number of label values.
        bins: number of equal-width intensity bins between the training min and max.
    """

    def __init__(self, num_classes: int, bins: int = 256) -> None:
        self.num_classes = num_classes
        self.bins = bins
        self.edges: np.ndarray | None = None
        self.table: np.ndarray | None = None

    def fit(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> IntensityLUT:
        """Fit on ``(image, label)`` arrays of equal shape (first image channel only)."""
        pairs = [
            (np.asarray(i, dtype=np.float64).ravel(), np.asarray(lab).astype(np.int64).ravel()) for i, lab in pairs
        ]
        lo = min(i.min() for i, _ in pairs)
        hi = max(i.max() for i, _ in pairs)
        self.edges = np.linspace(lo, hi, self.bins + 1)
        counts = np.zeros((self.bins, self.num_classes), dtype=np.int64)
        for image, label in pairs:
            idx = self._bin(image)
            np.add.at(counts, (idx, label), 1)
        self.table = counts.argmax(axis=1)
        return self

    def _bin(self, image: np.ndarray) -> np.ndarray:
        assert self.edges is not None
        return np.clip(np.searchsorted(self.edges, image, side="right") - 1, 0, self.bins - 1)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Label map of ``image`` (same shape)."""
        if self.table is None:
            raise RuntimeError("IntensityLUT.predict called before fit")
        return self.table[self._bin(np.asarray(image, dtype=np.float64))]
