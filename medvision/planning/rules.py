"""The planning rules: target spacing, normalisation, network topology and patch shape.

Each rule returns its value and one sentence saying why, so that ``medvision-plan`` can print
the choice beside the rule that made it. The spacing, normalisation and topology rules follow
nnU-Net v2's published planner (Isensee et al., Nature Methods 2021, and nnU-Net v2's
``ExperimentPlanner``), written here in our own words and code; the numbers they use (the
anisotropy factor 3, the 10th percentile, the 4-voxel bottleneck, pooling only axes within 2x
of the finest spacing, CT clipping to the foreground 0.5/99.5 percentiles) are nnU-Net's.
Axes are those of the reoriented images (``data.transforms.axcodes``), not nnU-Net's
transposed ones; the rules do not depend on axis order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: an axis is anisotropic when its spacing exceeds this factor times the others' (nnU-Net: 3)
ANISOTROPY = 3.0
#: the smallest edge of the network's bottleneck feature map, in voxels (nnU-Net: 4)
BOTTLENECK = 4
#: cropping that keeps less than this fraction of the image normalises inside the nonzero mask
MASK_NORM_BELOW = 0.75


def _fmt(values: Sequence[float], digits: int = 3) -> str:
    return "x".join(f"{v:.{digits}g}" for v in values)


def target_spacing(spacings: np.ndarray, shapes_after_crop: np.ndarray) -> tuple[list[float], str]:
    """Resampling target: the per-axis median spacing, except for one strongly anisotropic axis.

    If the coarsest median spacing is more than :data:`ANISOTROPY` times every other axis's
    *and* that axis's median size is less than a third of every other's, the target along it is
    the 10th percentile of its spacings (no lower than the next-coarsest axis), so that thick
    slices are not interpolated into many thin fake ones nor thin ones averaged away.

    Args:
        spacings: (cases, axes) voxel sizes in mm.
        shapes_after_crop: (cases, axes) sizes of the nonzero region.

    Returns:
        ``(spacing, rule)``.
    """
    target = np.percentile(spacings, 50, axis=0).astype(float)
    size = np.percentile(shapes_after_crop, 50, axis=0).astype(float)
    coarse = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != coarse]
    aniso_spacing = target[coarse] > ANISOTROPY * max(target[a] for a in others)
    aniso_size = size[coarse] * ANISOTROPY < min(size[a] for a in others)
    if aniso_spacing and aniso_size:
        low = float(np.percentile(spacings[:, coarse], 10))
        floor = max(target[a] for a in others)
        target[coarse] = low if low >= floor else floor + 1e-5
        rule = (
            f"median spacing, but axis {coarse} is anisotropic (median {np.median(spacings[:, coarse]):.3g} mm "
            f"> {ANISOTROPY:g}x the others, its median size {size[coarse]:.0f} < 1/{ANISOTROPY:g} of theirs): "
            f"its 10th-percentile spacing {target[coarse]:.4g} mm (nnU-Net's rule)"
        )
    else:
        rule = "per-axis median of the cases' spacings (no axis > 3x coarser with < 1/3 the voxels)"
    return [float(v) for v in target], rule


@dataclass
class Normalisation:
    """How one channel is normalised.

    Args:
        scheme: ``ct`` (clip to the foreground 0.5/99.5 percentiles, then the dataset's foreground
            mean and std), ``zscore`` (per case), ``none``, ``rescale`` (per case to 0..1) or
            ``rgb`` (/255).
        use_mask: z-score inside the nonzero mask only (voxels outside stay 0).
        clip: ``(low, high)`` for ``ct``.
        mean: dataset foreground mean for ``ct``.
        std: dataset foreground std for ``ct``.
    """

    scheme: str
    use_mask: bool = False
    clip: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None


#: channel names (case-insensitive, exact) that select a scheme; anything else is z-scored
NAMED_SCHEMES = {"ct": "ct", "nonorm": "none", "zscore": "zscore", "rescale_to_0_1": "rescale", "rgb_to_0_1": "rgb"}


def normalisation(
    modalities: Sequence[str], intensity: Sequence[Any], median_relative_size: float
) -> tuple[list[Normalisation], str]:
    """One :class:`Normalisation` per channel, from its name and the dataset's statistics.

    A channel named ``CT`` (any case) gets CT normalisation with the dataset's foreground
    statistics (HU are absolute: a global scheme keeps them comparable across cases); ``nonorm``,
    ``zscore``, ``rescale_to_0_1``, ``rgb_to_0_1`` select those schemes by name; any other
    name is z-scored per case, inside the nonzero mask when cropping to it keeps less than
    :data:`MASK_NORM_BELOW` of the image (skull-stripped MRI: the mask is the anatomy).

    Args:
        modalities: channel names.
        intensity: per channel, an object with ``mean``, ``std``, ``p00_5``, ``p99_5`` (the
            fingerprint's :class:`~medvision.data.fingerprint.ChannelIntensity`).
        median_relative_size: the fingerprint's median nonzero-box fraction.
    """
    out, why = [], []
    use_mask = median_relative_size < MASK_NORM_BELOW
    for c, name in enumerate(modalities):
        scheme = NAMED_SCHEMES.get(str(name).casefold(), "zscore")
        if scheme == "ct":
            stats = intensity[c]
            out.append(Normalisation("ct", clip=(stats.p00_5, stats.p99_5), mean=stats.mean, std=max(stats.std, 1e-8)))
            why.append(
                f"{name}: CT, clip to the foreground 0.5/99.5 percentiles [{stats.p00_5:.4g}, {stats.p99_5:.4g}], "
                f"then (x - {stats.mean:.4g}) / {stats.std:.4g}"
            )
        elif scheme == "zscore":
            out.append(Normalisation("zscore", use_mask=use_mask))
            where = (
                f"inside the nonzero mask (cropping keeps {median_relative_size:.2f} < {MASK_NORM_BELOW} of the image)"
                if use_mask
                else f"over the whole image (cropping keeps {median_relative_size:.2f} >= {MASK_NORM_BELOW})"
            )
            why.append(f"{name}: per-case z-score {where}")
        else:
            out.append(Normalisation(scheme))
            why.append(f"{name}: '{scheme}' by its channel name")
    return out, "; ".join(why)


@dataclass
class Topology:
    """A U-Net's shape for MONAI ``DynUNet``: per stage its kernel and stride, per axis its pools."""

    kernel_size: list[list[int]]
    strides: list[list[int]]
    pools_per_axis: list[int]

    @property
    def divisor(self) -> list[int]:
        """What each patch edge must be a multiple of."""
        return [2**p for p in self.pools_per_axis]

    @property
    def stages(self) -> int:
        return len(self.strides)


def topology(spacing: Sequence[float], patch: Sequence[float], max_pools: int = 6) -> Topology:
    """Pooling and kernels per stage for a patch at a spacing (nnU-Net's rule, our code).

    At each stage an axis is pooled (stride 2) when its feature map is at least twice the
    :data:`BOTTLENECK` and its current spacing is within 2x of the finest current spacing among
    the axes that can still be pooled (a single axis left needs 3x the bottleneck). An axis's
    kernel is 3 once its current spacing is within 2x of the finest, 1 before (in-plane-only
    convolutions on thick slices). The bottleneck stage has 3s.

    Args:
        spacing: target spacing in mm.
        patch: patch size in voxels.
        max_pools: most pooling stages.
    """
    dims = len(spacing)
    current = [float(s) for s in spacing]
    size = [float(p) for p in patch]
    kernel = [1] * dims
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * dims]
    pools = [0] * dims
    while len(strides) - 1 < max_pools:
        finest = min(current)
        kernel = [3 if kernel[a] == 3 or current[a] / finest < 2 else 1 for a in range(dims)]
        candidates = [a for a in range(dims) if size[a] >= 2 * BOTTLENECK]
        if not candidates:
            break
        finest_candidate = min(current[a] for a in candidates)
        pool = [a for a in candidates if current[a] / finest_candidate < 2]
        if len(pool) == 1 and size[pool[0]] < 3 * BOTTLENECK:
            break
        kernels.append(list(kernel))
        strides.append([2 if a in pool else 1 for a in range(dims)])
        for a in pool:
            current[a] *= 2
            size[a] = math.ceil(size[a] / 2)
            pools[a] += 1
    kernels.append([3] * dims)
    return Topology(kernels, strides, pools)


def round_patch(patch: Sequence[float], divisor: Sequence[int]) -> list[int]:
    """Each edge rounded up to a multiple of its divisor."""
    return [int(math.ceil(p / d) * d) for p, d in zip(patch, divisor, strict=True)]


def initial_patch(spacing: Sequence[float], median_shape: Sequence[float], voxels: float) -> list[float]:
    """A patch of about ``voxels`` voxels with the aspect of ``1 / spacing`` (equal mm per axis),
    no larger than the median image (nnU-Net's starting point; not rounded yet: :func:`topology`
    halves it with ceiling and :func:`round_patch` pads it to its net's divisibility)."""
    aspect = np.array([1.0 / s for s in spacing])
    patch = aspect * (voxels / np.prod(aspect)) ** (1 / len(aspect))
    return [float(min(round(p), m)) for p, m in zip(patch, median_shape, strict=True)]


#: the shortest patch edge a plan shrinks to, in voxels of the finest axis (other axes: the same
#: length in mm), unless the median image is shorter
MIN_EDGE = {2: 64, 3: 48}


def shrink_axis(
    patch: Sequence[int], median_shape: Sequence[float], divisor: Sequence[int], spacing: Sequence[float]
) -> int | None:
    """The axis to shrink next (largest patch / median-shape ratio), or ``None`` when every axis is
    at its floor (:data:`MIN_EDGE` voxels of the finest spacing, in mm; or the median image's edge)."""
    finest = min(spacing)
    floor = [min(MIN_EDGE[len(patch)] * finest / s, m) for m, s in zip(median_shape, spacing, strict=True)]
    ratios = [
        (p / m, a)
        for a, (p, m, d) in enumerate(zip(patch, median_shape, divisor, strict=True))
        if p - d >= max(floor[a], 2 * BOTTLENECK)
    ]
    return max(ratios)[1] if ratios else None


def feature_map_voxels(patch: Sequence[int], topo: Topology, filters: Sequence[int]) -> float:
    """Feature-map elements of one sample through the net (encoder and decoder, two convs a stage):
    what activation memory and step time grow with."""
    size = np.array(patch, dtype=float)
    total = 0.0
    for stage, stride in enumerate(topo.strides):
        size = np.ceil(size / np.array(stride))
        total += 2 * 2 * filters[stage] * float(np.prod(size))
    return total
