"""Whole-volume inference within a memory budget (``model.inferer.memory_gb``).

Sliding-window inference (MONAI ``sliding_window_inference``) keeps full-volume buffers for the
whole prediction and, at any time, the activations of ``sw_batch_size`` windows. From a budget in
GiB, :func:`sliding_window_kwargs` sets the MONAI options that bound that memory: ``sw_batch_size``
(as many windows as fit beside the full-volume buffers, never more than configured), ``sw_device``
(the windows run where the network is) and ``device`` (where the windows are stitched: on a GPU, in
GPU memory when the full-volume buffers fit there, else in host memory, ``device="cpu"``, with
``buffer_steps=1`` so that a slab of windows is accumulated on the GPU before each copy to the host).
``cpu_thresh`` is not used: the stitching device is chosen per image from the same count.

What is counted (float32, ``N`` = voxels of the image as the network sees it, padded to the window
where it is smaller; ``K`` classes, ``C`` input channels, ``R`` voxels of one window):

- full-volume buffers of the sliding window: the image (``C*N``; a padded copy too where the image is
  smaller than the window), the stitched class scores (``K*N``), MONAI's count map (``N``) and the
  window weight map (``R``);
- per window of a batch: the tensors the predictor creates for one window (the network's activations
  and, with test-time mirroring, its flips and softmaxes), traced once per window size on PyTorch's
  ``meta`` device (:func:`window_activation_bytes`, no memory, no compute) and multiplied by
  :data:`ACTIVATION_OVERHEAD` (what the kernels allocate beyond the tensors: oneDNN's reordered
  copies, the allocator), plus the window's input (``C*R``) and weighted output (``K*R``);
- the softmax that follows (in place, a chunk of :data:`SOFTMAX_CHUNK_VOXELS` voxels at a time);
- with :func:`inversion_bytes`, ``medvision-predict``'s last stage: the class probabilities are put back
  on the input's grid one class at a time and the arg-max is kept as it goes (``uint8``), never as
  ``int64``.

Not counted: the interpreter, PyTorch, MONAI and the network's weights (the process's baseline, about
0.5-0.7 GiB on a CPU), reading and preprocessing the file (the run's ``data.transforms.load``) and the
test metrics of a training run (which put every class back on the label grid at once). Without a
budget (``memory_gb: null``, the default) nothing here is used and the sliding window runs as configured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from medvision.utils.errors import MedvisionError

GIB = 2**30
#: bytes of one float32 value
FLOAT_BYTES = 4
#: resident memory a window batch adds / bytes of the tensors it creates (traced), measured for
#: medvision's default U-Net at 128^3 on a 2-core CPU: 1.4-2.0 while the windows run (oneDNN's
#: reordered copies of inputs and outputs), plus ~0.4 of allocator slack that stays resident after
#: them (freed blocks glibc keeps), over a 512x512x300 prediction
ACTIVATION_OVERHEAD = 2.5
#: voxels per chunk of the in-place softmax (a chunk and its result are the softmax's only extra memory)
SOFTMAX_CHUNK_VOXELS = 2**21
#: the key users set, named in every message
BUDGET_KEY = "model.inferer.memory_gb"


def budget_gb(value: Any) -> float | None:
    """``model.inferer.memory_gb`` as a positive number of GiB, or ``None`` (no budget).

    Raises:
        MedvisionError: not a positive number.
    """
    if value is None:
        return None
    try:
        gb = float(value)
    except (TypeError, ValueError):
        gb = float("nan")
    if not gb > 0 or math.isinf(gb):
        raise MedvisionError(
            f"{BUDGET_KEY}={value!r} is not a positive number of GiB",
            fix=f"{BUDGET_KEY}=3 (GiB for one case's prediction; medvision-predict: inferer.memory_gb=3), or null",
        )
    return gb


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def window_activation_bytes(predictor: nn.Module, in_channels: int, roi_size: Sequence[int]) -> int:
    """Peak bytes of the tensors ``predictor`` creates for one window (batch 1), without running it.

    The predictor runs on PyTorch's ``meta`` device (shapes only) with its parameters replaced by meta
    tensors (``torch.func.functional_call``), under a dispatch mode that adds up every tensor an
    operation creates and subtracts it when the last tensor sharing its memory is gone. A network
    that does not run on ``meta`` is traced by one real window on its own device instead.

    Args:
        predictor: what the sliding window calls (the network, or the network inside test-time mirroring).
        in_channels: image channels.
        roi_size: the window's spatial size.
    """
    from torch.func import functional_call

    try:
        tensors = {
            name: torch.empty_like(t, device="meta")
            for name, t in [*predictor.named_parameters(), *predictor.named_buffers()]
        }
        x = torch.empty((1, in_channels, *roi_size), device="meta")
        with torch.no_grad(), _LiveBytes() as live:
            out = functional_call(predictor, tensors, (x,))
            del out
        return live.peak
    except (NotImplementedError, RuntimeError):  # no meta kernel, or a tensor outside the net: trace a real window
        first = next(iter(predictor.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        x = torch.zeros((1, in_channels, *roi_size), device=device)
        with torch.no_grad(), _LiveBytes() as live:
            out = predictor(x)
            del out
        return live.peak


class _Allocation:
    """The memory of one tensor created under :class:`_LiveBytes`; released when no tensor refers to it."""

    def __init__(self, counter: _LiveBytes, nbytes: int) -> None:
        self.counter, self.nbytes = counter, nbytes
        counter.live += nbytes
        counter.peak = max(counter.peak, counter.live)

    def __del__(self) -> None:
        self.counter.live -= self.nbytes


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors alive (``live``) that operations create under it, and their ``peak``."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        for k, t in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
            if not isinstance(t, torch.Tensor):
                continue
            alias = returns[k].alias_info if k < len(returns) else None
            if alias is None:  # new memory
                t._medvision_allocation = _Allocation(self, t.numel() * t.element_size())  # type: ignore[attr-defined]
                continue
            # a view or an in-place result keeps the memory of the input it aliases alive
            for spec, value in zip(func._schema.arguments, args, strict=False):
                if spec.alias_info is not None and set(spec.alias_info.before_set) & set(alias.before_set):
                    if value is not t and hasattr(value, "_medvision_allocation"):
                        t._medvision_allocation = value._medvision_allocation  # type: ignore[attr-defined]
                    break
        return out


def window_stage_bytes(
    image_shape: Sequence[int],
    in_channels: int,
    num_classes: int,
    roi_size: Sequence[int],
    *,
    window_bytes: int,
    images: int = 1,
) -> tuple[dict[str, int], int]:
    """Bytes of the sliding window: its full-volume buffers (by name) and each window of a batch.

    Full-volume: the image (and its padded copy where it is smaller than the window), the stitched class
    scores, the count map, the window weight map and the in-place softmax's chunk. Per window:
    ``window_bytes * ACTIVATION_OVERHEAD`` and the window's input and weighted output.

    Args:
        image_shape: spatial shape of the image the network sees (preprocessed).
        in_channels: image channels.
        num_classes: output channels of the network.
        roi_size: the window's spatial size.
        window_bytes: bytes one window creates in the predictor (:func:`window_activation_bytes`).
        images: images inferred together (a batch): each has its full-volume buffers.
    """
    spatial = [max(int(s), int(r)) for s, r in zip(image_shape, roi_size, strict=True)]
    n, r = math.prod(spatial), math.prod(int(v) for v in roi_size)
    padded = spatial != [int(s) for s in image_shape]
    image = images * in_channels * (math.prod(int(s) for s in image_shape) + (n if padded else 0)) * FLOAT_BYTES
    volume = {
        "the image": image,
        "the stitched class scores": images * num_classes * n * FLOAT_BYTES,
        "the count map": n * FLOAT_BYTES,
        "the softmax chunk": 2 * num_classes * min(n, SOFTMAX_CHUNK_VOXELS) * FLOAT_BYTES,
        "the window weights": r * FLOAT_BYTES,
    }
    per_window = int(window_bytes * ACTIVATION_OVERHEAD) + (in_channels + num_classes) * r * FLOAT_BYTES
    return volume, per_window


def sliding_window_kwargs(
    image_shape: Sequence[int],
    in_channels: int,
    num_classes: int,
    roi_size: Sequence[int],
    memory_gb: float,
    *,
    window_bytes: int,
    device: torch.device | str = "cpu",
    sw_batch_size: int = 4,
    images: int = 1,
) -> dict[str, Any]:
    """MONAI ``sliding_window_inference`` options that keep one image's inference within ``memory_gb``.

    Counts :func:`window_stage_bytes`. On a CPU everything shares the budget: ``sw_batch_size`` is the
    number of windows that fit beside the full-volume buffers (at most the configured one). On a GPU
    the windows always run on the GPU; the full-volume buffers stay there when they fit beside a window,
    else the output is stitched in host memory (``device="cpu"``; host and GPU memory then each hold at
    most the budget), through a GPU buffer one window thick (``buffer_steps=1``, along the axis with the
    most windows) when that fits too.

    Args:
        image_shape: spatial shape of the image the network sees (preprocessed).
        in_channels: image channels.
        num_classes: output channels of the network.
        roi_size: the window's spatial size.
        memory_gb: the budget in GiB.
        window_bytes: bytes one window creates in the predictor (:func:`window_activation_bytes`).
        device: where the network runs (``cpu``, ``cuda``, ``cuda:1``...).
        sw_batch_size: the configured windows per batch; the budget lowers it, never raises it.
        images: images inferred together (a batch): each has its full-volume buffers.

    Returns:
        ``sw_batch_size``, ``sw_device`` and ``device`` (and on a GPU stitching into host memory
        through a buffer, ``buffer_steps`` and ``buffer_dim``).

    Raises:
        MedvisionError: the full-volume buffers and one window do not fit: the message names
            ``model.inferer.memory_gb``, the GiB needed and the fix.
    """
    sw_device = torch.device(device)
    volume, per_window = window_stage_bytes(
        image_shape, in_channels, num_classes, roi_size, window_bytes=window_bytes, images=images
    )
    budget = int(memory_gb * GIB)
    wanted = max(1, int(sw_batch_size))
    what = f"a {_shape_text(image_shape)} image in windows of {_shape_text(roi_size)}"

    def fitting(fixed: int) -> int:
        return int(min(wanted, (budget - fixed) // per_window))

    on_device = sum(volume.values())
    if sw_device.type == "cpu":
        _require(memory_gb, on_device, per_window, volume, what)
        return {"sw_batch_size": fitting(on_device), "sw_device": sw_device, "device": sw_device}
    if on_device + per_window <= budget:  # a GPU that holds everything
        return {"sw_batch_size": fitting(on_device), "sw_device": sw_device, "device": sw_device}
    host = {k: v for k, v in volume.items() if k != "the window weights"}
    _require(memory_gb, sum(host.values()), 0, host, f"{what} (host memory)")
    weights = volume["the window weights"]
    spatial = [max(int(s), int(r)) for s, r in zip(image_shape, roi_size, strict=True)]
    dim = max(range(len(spatial)), key=lambda d: spatial[d] / int(roi_size[d]))
    slab = num_classes * int(roi_size[dim]) * (math.prod(spatial) // spatial[dim]) * FLOAT_BYTES
    if slab + weights + per_window <= budget:
        return {
            "sw_batch_size": fitting(slab + weights),
            "sw_device": sw_device,
            "device": torch.device("cpu"),
            "buffer_steps": 1,
            "buffer_dim": dim,
        }
    _require(memory_gb, weights, per_window, {"the window weights": weights}, f"{what} (GPU memory)")
    return {"sw_batch_size": fitting(weights), "sw_device": sw_device, "device": torch.device("cpu")}


def softmax_(logits: torch.Tensor, dim: int = 1, chunk_voxels: int = SOFTMAX_CHUNK_VOXELS) -> torch.Tensor:
    """``torch.softmax(logits, dim)`` written into ``logits``, a slab of about ``chunk_voxels`` voxels at a
    time (along the first spatial axis), so that it needs two slabs of memory, not a second volume.

    Args:
        logits: ``(B, K, *spatial)`` scores (overwritten).
        dim: the class axis (1).
        chunk_voxels: voxels per slab.

    Returns:
        ``logits``, now the class probabilities.
    """
    if logits.ndim < 3 or dim != 1:
        return logits.copy_(torch.softmax(logits, dim=dim))
    plane = math.prod(logits.shape[3:])
    step = max(1, chunk_voxels // max(plane, 1))
    for b in range(logits.shape[0]):
        for start in range(0, logits.shape[2], step):
            part = logits[b, :, start : start + step]
            part.copy_(torch.softmax(part, dim=0))
    return logits


def inversion_bytes(
    num_classes: int, image_shape: Sequence[int], original_shape: Sequence[int], keep_probabilities: bool = False
) -> dict[str, int]:
    """Bytes of ``medvision-predict``'s last stage: the probabilities put back on the input's grid.

    The class probabilities (``K`` x the preprocessed grid) are kept until the last class is inverted;
    each class is inverted alone (MONAI ``Invertd``: each inverse step makes one new array while the
    last exists: two arrays of the original grid) and folded into a running maximum and ``uint8``
    arg-max (and a comparison mask). ``keep_probabilities`` (``save_probabilities=true`` or an
    ensemble): all classes are kept on the original grid instead of the running maximum.
    """
    n = math.prod(int(s) for s in image_shape)
    g = math.prod(int(s) for s in original_shape)
    out = {
        "the class probabilities": num_classes * n * FLOAT_BYTES,
        "one class being inverted": 2 * g * FLOAT_BYTES,
        "the arg-max": 2 * g,
    }
    if keep_probabilities:
        out["the probabilities on the input's grid"] = num_classes * g * FLOAT_BYTES
    else:
        out["the running maximum"] = g * FLOAT_BYTES
    return out


def check_inversion(
    memory_gb: float,
    num_classes: int,
    image_shape: Sequence[int],
    original_shape: Sequence[int],
    keep_probabilities: bool = False,
) -> None:
    """Refuse a budget that cannot hold :func:`inversion_bytes` (before anything is predicted).

    Raises:
        MedvisionError: names ``model.inferer.memory_gb``, the GiB needed and the fix.
    """
    parts = inversion_bytes(num_classes, image_shape, original_shape, keep_probabilities)
    what = f"the probabilities of a {_shape_text(image_shape)} image put back on its {_shape_text(original_shape)} grid"
    _require(memory_gb, sum(parts.values()), 0, parts, what)


def _size(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB // 10 else f"{n / 2**20:.1f} MiB"


def _at_least(needed: int) -> str:
    """``needed`` bytes in GiB, rounded up to two significant digits (0.1 GiB steps from 1 GiB)."""
    gib = needed / GIB
    step = 10.0 ** (math.floor(math.log10(gib)) - 1) if gib > 0 else 0.001
    return f"{math.ceil(gib / step - 1e-9) * step:.{max(0, -math.floor(math.log10(step)))}f}"


def _require(memory_gb: float, fixed: int, per_window: int, parts: dict[str, int], what: str) -> None:
    """Raise the budget error when ``fixed + per_window`` bytes exceed ``memory_gb``."""
    needed = fixed + per_window
    if needed <= int(memory_gb * GIB):
        return
    biggest = ", ".join(f"{k} {_size(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:3])
    window = f" and one window {_size(per_window)}" if per_window else ""
    at_least = _at_least(needed)
    raise MedvisionError(
        f"{BUDGET_KEY}={memory_gb:g} GiB cannot hold {what}: its full-volume buffers take {_size(fixed)} "
        f"({biggest}){window}, {_size(needed)} in all",
        fix=f"raise {BUDGET_KEY} to at least {at_least} (medvision-predict: inferer.memory_gb={at_least}), "
        "predict on a coarser grid (data.transforms.pixdim) or a smaller window (model.inferer.roi_size), "
        f"or set {BUDGET_KEY}=null for no bound",
    )
