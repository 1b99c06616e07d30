"""Mixing synthetic samples into the training split of a classification DataModule.

``data.synthetic={store: <dir>, ratio: 0.5, classes: [1]}`` adds, for every class ``c`` of
``classes`` (default: every class of the store's task),

    n_synthetic(c) = round(ratio * n_real(c))

samples of class ``c`` from the store, where ``n_real(c)`` is the number of *real training*
samples of ``c`` (after ``data.imbalance``, if any). ``ratio: 1.0`` doubles each augmented class;
``ratio: 9`` with ``data.imbalance.keep=0.1`` brings it back to its original size. The first
``n_synthetic(c)`` samples of class ``c`` in store order are taken (stores hold independent draws,
so this is a random subset, and the same one on every run). Validation and test splits never get
synthetic samples. Synthetic sample ids are ``synthetic/<index in the store>``.

Store images are in model-input space (after the DataModule's deterministic ``load``
transforms): the DataModule applies only its random ``augment`` transforms to them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvision.augment.imbalance import Imbalance, class_index, single_labels
from medvision.augment.store import SyntheticStore, read_store
from medvision.utils.errors import MedvisionError

KEY = "data.synthetic"


@dataclass(frozen=True)
class SyntheticMix:
    """What to mix in.

    Attributes:
        store: the store folder (written by ``medvision-generate``).
        ratio: synthetic / real training samples of each augmented class (>= 0).
        classes: the augmented classes (indices or names); ``None``: every class.
    """

    store: Path
    ratio: float
    classes: tuple[int | str, ...] | None = None

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> SyntheticMix | None:
        """Read ``data.synthetic`` (``None``: no synthetic samples).

        Raises:
            MedvisionError: a key is missing, unknown or out of range.
        """
        example = f"{KEY}={{store: <dir>, ratio: 1.0, classes: [1]}}"
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise MedvisionError(f"{KEY}={spec!r} is not a mapping", fix=example)
        unknown = sorted(set(spec) - {"store", "ratio", "classes"})
        if unknown or not spec.get("store") or "ratio" not in spec:
            raise MedvisionError(
                f"{KEY} has keys {sorted(spec)}; it takes store, ratio and classes (store and ratio required)",
                fix=example,
            )
        ratio = spec["ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not float(ratio) >= 0.0:
            raise MedvisionError(
                f"{KEY}.ratio={ratio!r} must be a number >= 0 (synthetic / real training samples per class)",
                fix=f"{KEY}.ratio=1.0 doubles each augmented class",
            )
        classes = spec.get("classes")
        if classes is not None:
            classes = (classes,) if isinstance(classes, (int, str)) else tuple(classes)
        return cls(Path(os.fspath(spec["store"])), float(ratio), classes)

    def class_indices(self, label_names: Sequence[str]) -> list[int]:
        """The augmented classes as indices, in ascending order."""
        if self.classes is None:
            return list(range(len(label_names)))
        return sorted({class_index(c, label_names, f"{KEY}.classes") for c in self.classes})

    def read(self, label_names: Sequence[str]) -> SyntheticStore:
        """Read the store and check that it belongs to this task (same class names).

        Raises:
            MedvisionError: the store is missing or unreadable, or its classes differ.
        """
        try:
            store = read_store(self.store)
        except MedvisionError as err:
            raise MedvisionError(f"{KEY}.store: {err.message}", fix=err.fix) from err
        if list(store.class_names) != list(label_names):
            raise MedvisionError(
                f"{KEY}.store={self.store} holds classes {store.class_names}, "
                f"but this data's classes are {list(label_names)}",
                fix="generate the store from a GAN trained on this data (same data config), or point to that store",
            )
        return store

    def select(self, store: SyntheticStore, real_counts: Mapping[int, int], label_names: Sequence[str]) -> np.ndarray:
        """Store indices of the samples to mix in (per augmented class, the first ones).

        Args:
            store: the store (see :meth:`read`).
            real_counts: real training samples per class index.
            label_names: the classes of the data.

        Raises:
            MedvisionError: the store holds too few samples of a class.
        """
        chosen = []
        for c in self.class_indices(label_names):
            wanted = round(self.ratio * real_counts.get(c, 0))
            members = np.flatnonzero(store.labels == c)
            if len(members) < wanted:
                raise MedvisionError(
                    f"{KEY}.store={self.store} holds {len(members)} samples of class {label_names[c]!r}, but "
                    f"{KEY}.ratio={self.ratio:g} x {real_counts.get(c, 0)} real training samples needs {wanted}",
                    fix=f"generate at least {wanted} per class (medvision-generate n_per_class={wanted}) "
                    f"or lower {KEY}.ratio",
                )
            chosen.append(members[:wanted])
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def check_shape(store: SyntheticStore, image: Any, mix: SyntheticMix, as_rgb: bool) -> None:
    """Check that the store's images have the shape of a real training image after ``load``.

    Args:
        store: the store.
        image: a real training image after the ``load`` transforms (C, *spatial).
        mix: the mixing spec (for the message).
        as_rgb: the DataModule repeats grey images to 3 channels (a 1-channel store is repeated too).

    Raises:
        MedvisionError: the shapes differ.
    """
    want = tuple(int(s) for s in image.shape)
    have = tuple(int(s) for s in store.images.shape[1:])
    if as_rgb and have and have[0] == 1:
        have = (3, *have[1:])
    if have != want:
        raise MedvisionError(
            f"{KEY}.store={mix.store} holds images of shape {list(have)} but this data's training images are "
            f"{list(want)} after its load transforms",
            fix="generate the store from a GAN trained with the same data config (size, channels, load transforms)",
        )


class SyntheticSamples(Sequence):
    """Sample dictionaries ``{"image", "label", "id"}`` of selected store samples, already in model-input space.

    Types follow a real sample after ``load`` (``like``), so that a batch collates.

    Args:
        store: the store.
        indices: store indices to serve.
        like: a real training sample after the ``load`` transforms.
        as_rgb: repeat 1-channel images to 3 channels.
    """

    def __init__(self, store: SyntheticStore, indices: np.ndarray, like: Mapping[str, Any], as_rgb: bool) -> None:
        self.images, self.labels, self.indices = store.images, store.labels, np.asarray(indices, dtype=np.int64)
        self.as_rgb = as_rgb
        self.image_is_tensor = _is_tensor(like["image"])
        self.label_is_tensor = _is_tensor(like["label"])
        self.label_shape = tuple(np.shape(like["label"]))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        k = int(self.indices[i])
        image = self.images[k].astype(np.float32)
        if self.as_rgb and image.shape[0] == 1:
            image = np.repeat(image, 3, axis=0)
        label = np.full(self.label_shape, self.labels[k], dtype=np.int64)
        if self.image_is_tensor or self.label_is_tensor:
            import torch

            image = torch.as_tensor(image) if self.image_is_tensor else image
            label = torch.as_tensor(label) if self.label_is_tensor else label
        return {"image": image, "label": label, "id": f"synthetic/{k}"}


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith(("torch", "monai"))


@dataclass
class TrainingSplit:
    """What the training split holds: which real samples (after ``data.imbalance``) and which synthetic ones.

    Attributes:
        labels: (N,) class indices of the whole real training split, before down-sampling.
        real: indices of the real samples kept (sorted).
        label_names: the classes of the data.
        imbalance: the down-sampling applied (``None``: none).
        mix: the mixing spec (``None``: no synthetic samples).
        store: the synthetic store (``None``: no synthetic samples).
        synthetic: store indices of the synthetic samples mixed in (sorted).
    """

    labels: np.ndarray
    real: np.ndarray
    label_names: list[str]
    imbalance: Imbalance | None = None
    mix: SyntheticMix | None = None
    store: SyntheticStore | None = None
    synthetic: np.ndarray | None = None

    @property
    def synthetic_labels(self) -> np.ndarray:
        """(M,) class indices of the synthetic samples mixed in."""
        if self.store is None or self.synthetic is None:
            return np.zeros(0, dtype=np.int64)
        return self.store.labels[self.synthetic]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"original"|"real"|"synthetic": {class name: samples}}`` of the training split."""

        def per_class(labels: np.ndarray) -> dict[str, int]:
            return {name: int((labels == i).sum()) for i, name in enumerate(self.label_names)}

        return {
            "original": per_class(self.labels),
            "real": per_class(self.labels[self.real]),
            "synthetic": per_class(self.synthetic_labels),
        }

    def hyperparameters(self) -> dict[str, int]:
        """The counts as flat logger hyperparameters ``data/train_{real,synthetic}_<class>``."""
        from medvision.utils.names import safe_name

        counts = self.counts()
        return {
            f"data/train_{kind}_{safe_name(name)}": n
            for kind in ("real", "synthetic")
            for name, n in counts[kind].items()
        }

    def summary(self) -> dict[str, Any]:
        """The counts, the options that made them and the synthetic ids (``data.counts_report``)."""
        synthetic = None
        if self.mix is not None:
            synthetic = {
                "store": str(self.mix.store),
                "ratio": self.mix.ratio,
                "classes": [self.label_names[c] for c in self.mix.class_indices(self.label_names)],
                "ids": [f"synthetic/{int(k)}" for k in (self.synthetic if self.synthetic is not None else [])],
            }
        imbalance = None
        if self.imbalance is not None:
            imbalance = {
                "class": self.label_names[class_index(self.imbalance.klass, self.label_names, "data.imbalance.class")],
                "keep": self.imbalance.keep,
                "seed": self.imbalance.seed,
            }
        return {"train": self.counts(), "imbalance": imbalance, "synthetic": synthetic}

    def print_table(self) -> None:
        """Print the counts per class (original, real kept, synthetic) as a rich table."""
        from rich.console import Console
        from rich.table import Table

        counts = self.counts()
        table = Table(title="training split: samples per class")
        table.add_column("class")
        for kind in ("original", "real", "synthetic"):
            table.add_column(kind, justify="right")
        for name in self.label_names:
            table.add_row(name, *(str(counts[kind][name]) for kind in ("original", "real", "synthetic")))
        Console().print(table)


def training_split(
    labels: np.ndarray, label_names: Sequence[str], task: str, imbalance: Imbalance | None, mix: SyntheticMix | None
) -> TrainingSplit | None:
    """Compose the training split from its real labels, a down-sampling and a synthetic mix.

    Args:
        labels: the real training labels ((N, 1) class indices, or (N, L) multi-hot).
        label_names: the classes of the data.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        imbalance: the down-sampling, or ``None``.
        mix: what to mix in, or ``None``.

    Returns:
        The composition; ``None`` for a multi-label task with neither option set (nothing to count).

    Raises:
        MedvisionError: an option on a multi-label task, or a store that does not fit.
    """
    if task == "multilabel" and imbalance is None and mix is None:
        return None
    key = "data.imbalance" if imbalance is not None else KEY
    classes = single_labels(labels, task, key)
    names = list(label_names)
    real = imbalance.kept(classes, names) if imbalance is not None else np.arange(len(classes))
    split = TrainingSplit(classes, real, names, imbalance, mix)
    if mix is not None:
        split.store = mix.read(names)
        kept = classes[real]
        split.synthetic = mix.select(split.store, {c: int((kept == c).sum()) for c in range(len(names))}, names)
    return split
