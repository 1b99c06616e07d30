"""Tiny MedMNIST files in exactly the official format (keys, uint8 images, (N, 1)/(N, L) labels).

The images carry a pattern per class, so a classifier can separate them: the tests can then
tell a working training from a broken one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medvision.data.medmnist_info import medmnist_info
from medvision.data.splits import SPLITS


def _pattern(label: int, n_classes: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """A grey image whose class is visible: bright square, dark square, stripes, ... plus noise."""
    image = rng.normal(110, 20, (side, side))
    lo, hi = side // 4 + rng.integers(-2, 3), 3 * side // 4 + rng.integers(-2, 3)
    kind = label % 4
    if kind == 0:
        image[lo:hi, lo:hi] = 230
    elif kind == 1:
        image[lo:hi, lo:hi] = 10
    elif kind == 2:
        image[::4] = 230
    else:
        image[:, ::4] = 230
    image += 25 * (label // 4)  # more than 4 classes: brightness tells the groups apart
    return image


def _multilabel(labels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A grey image with a bright block in cell ``j`` of a 4x4 grid for every positive label ``j``."""
    image = rng.normal(60, 15, (side, side))
    cell = side // 4
    for j in np.flatnonzero(labels):
        r, c = divmod(int(j), 4)
        image[r * cell + 1 : (r + 1) * cell - 1, c * cell + 1 : (c + 1) * cell - 1] = 220
    return image


def write_medmnist(root: Path, flag: str, size: int = 28, n: int = 20, seed: int = 0) -> Path:
    """Write ``<root>/<official file name>`` with ``n`` images per split; returns the path."""
    info = medmnist_info(flag)
    rng = np.random.default_rng(seed)
    n_labels = len(info.labels)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if info.our_task == "multilabel":
            labels = (rng.random((n, n_labels)) < 0.4).astype(np.uint8)
            images = [_multilabel(row, size, rng) for row in labels]
        else:
            labels = (np.arange(n) % n_labels)[rng.permutation(n)].reshape(n, 1).astype(np.uint8)
            images = [_pattern(int(y), n_labels, size, rng) for y in labels[:, 0]]
        stack = np.clip(np.stack(images), 0, 255)
        if info.spatial_dims == 3:
            stack = np.repeat(stack[:, None], size, axis=1) + rng.normal(0, 5, (n, size, size, size))
        elif info.n_channels == 3:
            stack = np.repeat(stack[..., None], 3, axis=-1)
        arrays[f"{split}_images"] = np.clip(stack, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    path = root / info.filename(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path
