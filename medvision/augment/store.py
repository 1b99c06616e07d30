"""Synthetic sample stores: what ``medvision-generate`` writes and classification DataModules mix in.

A store is a folder::

    <store>/manifest.json   format, class names, image shape, generator checkpoint, one entry per sample
    <store>/samples.npz     images: float32 (N, C, *spatial); labels: int64 (N,)

Images are in the *model-input space* of the data the GAN was trained on: the output of the
DataModule's deterministic ``load`` transforms (e.g. MedMNIST's -1..1), so a DataModule mixes
them into training after ``load`` and before its random ``augment`` transforms. Both files are
written atomically; an existing store is never overwritten.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medvision.utils.errors import MedvisionError

FORMAT = "medvision-synthetic-store/1"
MANIFEST = "manifest.json"
SAMPLES = "samples.npz"


@dataclass
class SyntheticStore:
    """A store read into memory.

    Attributes:
        images: float32 (N, C, *spatial), model-input space.
        labels: int64 (N,) class indices.
        class_names: names of the classes (index = label value).
        manifest: the whole ``manifest.json``.
        path: the store folder.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def of_classes(self, classes: Sequence[int]) -> SyntheticStore:
        """The samples whose label is one of ``classes``."""
        keep = np.isin(self.labels, np.asarray(list(classes), dtype=np.int64))
        return SyntheticStore(self.images[keep], self.labels[keep], self.class_names, self.manifest, self.path)


def write_store(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    seeds: Sequence[int] | None = None,
    generator_checkpoint: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a new store folder (refuses one that already holds a store).

    Args:
        path: the store folder (created).
        images: float (N, C, *spatial) samples in model-input space.
        labels: (N,) class indices.
        class_names: all class names of the task.
        seeds: per-sample noise seeds (recorded in the manifest).
        generator_checkpoint: the checkpoint the samples came from.
        extra: more manifest fields (e.g. ``{"ema": true, "n_per_class": 100}``).

    Returns:
        The store folder.

    Raises:
        MedvisionError: the folder already holds a store, or images and labels disagree.
    """
    from medvision.utils.io import atomic_write_bytes, atomic_write_json

    folder = Path(path)
    if (folder / MANIFEST).exists() or (folder / SAMPLES).exists():
        raise MedvisionError(
            f"{folder} already holds a synthetic store; it is not overwritten",
            fix="choose a new output folder (or delete the old store yourself)",
        )
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if images.ndim not in (4, 5) or len(images) != len(labels):
        raise MedvisionError(
            f"synthetic images {images.shape} and labels {labels.shape} do not match",
            fix="images must be (N, C, H, W[, D]) with one label per image",
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise MedvisionError(
            f"synthetic labels span {labels.min()}..{labels.max()} but there are {len(class_names)} classes",
            fix="labels are class indices into class_names",
        )
    seeds = list(seeds) if seeds is not None else [None] * len(labels)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels)
    atomic_write_bytes(folder / SAMPLES, buffer.getvalue())
    manifest = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "class_names": list(class_names),
        "image_shape": list(images.shape[1:]),
        "spatial_dims": images.ndim - 2,
        "space": "model_input",
        "generator_checkpoint": str(generator_checkpoint) if generator_checkpoint else None,
        "counts": {name: int((labels == i).sum()) for i, name in enumerate(class_names)},
        "samples": [
            {"index": i, "label": int(label), "seed": seed}
            for i, (label, seed) in enumerate(zip(labels, seeds, strict=False))
        ],
        **(extra or {}),
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return folder


def read_store(path: str | os.PathLike[str]) -> SyntheticStore:
    """Read a store folder written by :func:`write_store`.

    Raises:
        MedvisionError: the folder is missing, not a store, or its files disagree.
    """
    folder = Path(path)
    fix = "point to a folder written by `medvision-generate` (it holds manifest.json and samples.npz)"
    if not (folder / MANIFEST).is_file() or not (folder / SAMPLES).is_file():
        raise MedvisionError(f"{folder} is not a synthetic sample store (no {MANIFEST} / {SAMPLES})", fix=fix)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        with np.load(folder / SAMPLES, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError) as err:
        raise MedvisionError(f"{folder}: unreadable synthetic store ({type(err).__name__}: {err})", fix=fix) from err
    if (
        manifest.get("format") != FORMAT
        or len(images) != len(labels)
        or len(manifest.get("samples", [])) != len(labels)
    ):
        raise MedvisionError(f"{folder}: manifest.json and samples.npz disagree or the format is not {FORMAT}", fix=fix)
    return SyntheticStore(images, labels.astype(np.int64), list(manifest["class_names"]), manifest, folder)
