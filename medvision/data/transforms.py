"""The transform steps of a data config: ordered MONAI dict transforms, switched-off steps dropped.

A data config lists its transforms as ordered mappings ``name -> transform`` (``load``: the
deterministic preprocessing; ``augment``: the random augmentation), so that one step can be
replaced or switched off from the command line (``data.transforms.augment.flip=null``). The
DataModules (:class:`medvision.data.base.MedvisionDataModule`) and prediction
(:func:`medvision.inference.predict.preprocessing`) read them through :func:`transform_steps`.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
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


def transform_hash(transforms: Sequence[Any], taken: Sequence[tuple[Any, Any]] = ()) -> bytes:
    """The key of cached preprocessing (``data.cache=disk|preprocessed``): MONAI's ``json_hashing``
    of what the deterministic transforms do (:func:`transform_state`), versioned (entries keyed
    before the transforms' settings were, ``-meta``, are not read back).

    Some transforms keep state of their last call (a reader the files it read last): a key taken
    after a transform ran would differ from one taken before. ``taken`` pairs transforms with
    their states taken before any ran (:class:`~medvision.data.base.MedvisionDataModule` takes
    them when it is built); a transform not among them is described as it is now.

    Args:
        transforms: the deterministic transforms (MONAI's ``PersistentDataset`` passes the steps
            before the first random one).
        taken: ``(transform, transform_state(transform))`` pairs, taken before the transforms ran.
    """
    from monai.data.utils import json_hashing

    def state(transform: Any) -> Any:
        return next((s for t, s in taken if t is transform), None) or transform_state(transform)

    return json_hashing([state(t) for t in transforms]) + b"-state"


def transform_state(obj: Any) -> Any:
    """What a transform does, as plain JSON data: its class and its settings, recursively.

    The key of cached preprocessing (``data.cache=disk|preprocessed``): two transforms with the
    same state compute the same thing, and a changed setting (``Spacingd``'s ``pixdim``, a
    reader's options, ...) changes the state. MONAI's transforms are not JSON serialisable
    (``json_hashing`` of the objects themselves fails, and MONAI's ``PersistentDataset`` then
    keys its cache by the class names alone); their attributes are. Objects are described by
    their class and their attributes (``vars``), arrays and tensors by dtype, shape and a hash
    of their bytes, functions and classes by their qualified names; objects without attributes
    (locks, ...) and thread-local state by their type only. Nothing in it depends on memory
    addresses or on the process; what a transform records when it runs does (see
    :func:`transform_hash`).

    Args:
        obj: a transform, a list of them, or any setting.

    Returns:
        JSON-ready data (dicts, lists, strings, numbers).
    """
    return _state(obj, ())


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _state(obj: Any, path: tuple[int, ...]) -> Any:
    import numpy as np
    import torch

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return [_qualname(type(obj)), _state(obj.value, path)]
    if isinstance(obj, (np.dtype, torch.dtype, PurePath)):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytes, bytearray)):
        return {"sha256": hashlib.sha256(obj).hexdigest()}
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu()
        data = tensor.view(torch.uint8) if tensor.dtype == torch.bfloat16 else tensor  # NumPy has no bfloat16
        digest = hashlib.sha256(np.ascontiguousarray(data.numpy())).hexdigest()
        return {"dtype": str(tensor.dtype), "shape": list(tensor.shape), "sha256": digest}
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        return {"dtype": str(array.dtype), "shape": list(array.shape), "sha256": hashlib.sha256(array).hexdigest()}
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)):
        return _qualname(obj) if not isinstance(obj, types.ModuleType) else obj.__name__
    if isinstance(obj, threading.local):  # per-thread runtime state (MONAI's tracing switch)
        return _qualname(type(obj))
    if id(obj) in path:
        return "<cycle>"
    inner = (*path, id(obj))
    if isinstance(obj, functools.partial):
        return {"partial": _state(obj.func, inner), "args": _state(obj.args, inner), "kw": _state(obj.keywords, inner)}
    if isinstance(obj, Mapping):
        return {str(k): _state(v, inner) for k, v in obj.items()}
    if isinstance(obj, Sequence):  # lists, tuples, OmegaConf's ListConfig
        return [_state(v, inner) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_state(v, inner) for v in obj), key=lambda s: json.dumps(s, sort_keys=True))
    attributes = getattr(obj, "__dict__", None)
    if not isinstance(attributes, dict):
        return _qualname(type(obj))
    return {"class": _qualname(type(obj)), "state": {str(k): _state(v, inner) for k, v in attributes.items()}}
