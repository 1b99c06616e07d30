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


def mirror_axes(augment: Mapping[str, Any] | Sequence[Any] | None) -> tuple[int, ...]:
    """The spatial axes a training pipeline mirrors: those of its ``RandFlipd`` steps with ``prob > 0``.

    Mirroring test-time augmentation (``tta=mirror``) flips along exactly these axes, so a model
    is only asked about flips it was trained on (nnU-Net keeps its ``inference_allowed_mirroring_axes``
    the same way). Read from the config (``data.transforms.augment``), not from built transforms.

    Args:
        augment: the ``data.transforms.augment`` config: a mapping name -> step (or a list).

    Returns:
        The sorted spatial axes (0 = the first axis after the channel); ``()`` when nothing is flipped.
    """
    if augment is None:
        return ()
    steps = augment.values() if isinstance(augment, Mapping) else augment
    axes: set[int] = set()
    for step in steps:
        if not isinstance(step, Mapping) or not str(step.get("_target_", "")).endswith("RandFlipd"):
            continue
        if float(step.get("prob", 0.1)) <= 0:
            continue
        spatial = step.get("spatial_axis")
        if spatial is None:  # MONAI: None flips every axis at once; count each as mirrored
            spatial = [0, 1, 2]
        axes.update(int(a) for a in ([spatial] if isinstance(spatial, int) else spatial))
    return tuple(sorted(axes))


#: the test-time augmentations ``tta=`` accepts
TTA_MODES: tuple[str, ...] = ("mirror", "none")


def tta_axes(tta: str | None, augment: Mapping[str, Any] | Sequence[Any] | None) -> tuple[int, ...]:
    """The axes whose flips test and prediction average over: the training flips for ``tta=mirror``.

    Args:
        tta: ``mirror`` or ``none`` (``None``: none).
        augment: the run's ``data.transforms.augment`` config.

    Raises:
        ValueError: ``tta`` is not one of :data:`TTA_MODES`.
    """
    mode = "none" if tta is None else str(tta)
    if mode not in TTA_MODES:
        raise ValueError(f"tta={tta!r}: choose one of {', '.join(TTA_MODES)}")
    return mirror_axes(augment) if mode == "mirror" else ()
