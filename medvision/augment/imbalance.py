"""An imbalanced task made on purpose: one class down-sampled in the training split only.

``data.imbalance={class: 1, keep: 0.1, seed: 0}`` keeps ``max(1, round(keep * n))`` of the
``n`` training samples of class ``1`` (drawn without replacement by ``numpy``'s generator
seeded with ``seed``, so the same seed keeps the same samples on every machine); every other
class, and the validation and test splits, stay as they are. ``class`` is a class index or a
class name of the data (``label_names``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medvision.utils.errors import MedvisionError


def class_index(ref: int | str, label_names: Sequence[str], key: str) -> int:
    """The index of a class given by index or by name.

    Args:
        ref: a class index (``1``) or name (``"malignant"``).
        label_names: the classes of the data (index = label value).
        key: the config key that named it (for the message).

    Raises:
        MedvisionError: no such class.
    """
    names = list(label_names)
    if isinstance(ref, bool):
        ref = int(ref)
    if isinstance(ref, int) and 0 <= ref < len(names):
        return ref
    if isinstance(ref, str):
        if ref in names:
            return names.index(ref)
        if ref.lstrip("-").isdigit() and 0 <= int(ref) < len(names):
            return int(ref)
    choices = ", ".join(f"{i}={n!r}" for i, n in enumerate(names))
    raise MedvisionError(f"{key}={ref!r} is not a class of this data", fix=f"use a class index or name: {choices}")


def single_labels(labels: np.ndarray, task: str, key: str) -> np.ndarray:
    """Class indices (N,) of a single-label task's (N, 1) labels.

    Raises:
        MedvisionError: the task is multi-label (``key`` names the option that needs classes).
    """
    if task == "multilabel":
        raise MedvisionError(
            f"{key} needs a single-label task, but this data is multi-label",
            fix=f"remove {key} (or use a binary or multi-class data set)",
        )
    return np.asarray(labels).reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class Imbalance:
    """Down-sample one class of the training split.

    Attributes:
        klass: the class (index or name), config key ``class``.
        keep: fraction of its training samples kept, in (0, 1].
        seed: seed of the draw.
    """

    klass: int | str
    keep: float
    seed: int = 0

    KEY = "data.imbalance"

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> Imbalance | None:
        """Read ``data.imbalance`` (``None``: no imbalance).

        Raises:
            MedvisionError: a key is missing, unknown or out of range.
        """
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise MedvisionError(
                f"{cls.KEY}={spec!r} is not a mapping", fix=f"{cls.KEY}={{class: 1, keep: 0.1, seed: 0}}"
            )
        unknown = sorted(set(spec) - {"class", "keep", "seed"})
        if unknown or "class" not in spec or "keep" not in spec:
            raise MedvisionError(
                f"{cls.KEY} has keys {sorted(spec)}; it takes class, keep and seed (class and keep required)",
                fix=f"{cls.KEY}={{class: 1, keep: 0.1, seed: 0}}",
            )
        keep = spec["keep"]
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < float(keep) <= 1.0:
            raise MedvisionError(
                f"{cls.KEY}.keep={keep!r} must be a fraction in (0, 1]",
                fix=f"{cls.KEY}.keep=0.1 keeps a tenth of the class's training samples",
            )
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise MedvisionError(f"{cls.KEY}.seed={seed!r} must be an integer", fix=f"{cls.KEY}.seed=0")
        return cls(spec["class"], float(keep), seed)

    def kept(self, labels: np.ndarray, label_names: Sequence[str]) -> np.ndarray:
        """Indices (sorted) of the training samples kept.

        Args:
            labels: (N,) class indices of the training split.
            label_names: the classes of the data.
        """
        target = class_index(self.klass, label_names, f"{self.KEY}.class")
        members = np.flatnonzero(labels == target)
        n_keep = min(len(members), max(1, round(self.keep * len(members))))
        rng = np.random.default_rng(self.seed)
        chosen = rng.choice(members, size=n_keep, replace=False) if len(members) else members
        return np.sort(np.concatenate([np.flatnonzero(labels != target), chosen]))
