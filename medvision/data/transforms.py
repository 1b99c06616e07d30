"""The transform steps of a data config: ordered MONAI dict transforms, switched-off steps dropped.

A data config lists its transforms as ordered mappings ``name -> transform`` (``load``: the
deterministic preprocessing; ``augment``: the random augmentation), so that one step can be
replaced or switched off from the command line (``data.transforms.augment.flip=null``). The
DataModules (:class:`medvision.data.base.MedvisionDataModule`) and prediction
(:func:`medvision.inference.predict.preprocessing`) read them through :func:`transform_steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: a config's steps: an ordered mapping name -> transform (``None``: switched off) or a list
StepSpec = Mapping[str, Callable | None] | Sequence[Callable | None] | None


def transform_steps(spec: StepSpec) -> list[Callable]:
    """The transforms of a config step mapping (or list), in order, without switched-off steps.

    Args:
        spec: an ordered mapping name -> transform, a list of transforms, or ``None``;
            ``None`` entries are dropped.

    Returns:
        The transforms, in config order (``[]`` for ``None``).
    """
    if spec is None:
        return []
    steps = spec.values() if isinstance(spec, Mapping) else spec
    return [t for t in steps if t is not None]


def nonzero(image: Any) -> Any:
    """``image != 0``: the foreground of ``CropForegroundd(select_fn=...)`` as nnU-Net crops (any
    nonzero voxel, negative ones included; MONAI's default keeps positive voxels only)."""
    return image != 0
