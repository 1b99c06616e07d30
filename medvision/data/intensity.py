"""``ClipZScore`` / ``ClipZScored``: CT normalisation (clip to a range, then z-score) in one allocation.

The planner's CT scheme (``medvision.planning``, nnU-Net's CT rule: clip to the foreground's 0.5
and 99.5 percentiles, subtract the foreground mean, divide by its standard deviation) used to be
MONAI's ``ScaleIntensityRanged`` with the equivalent linear map. That computes the same numbers
in four whole-volume passes, each allocating a new float32 volume: 1.06 s for a 512 x 512 x 300
CT on one thread, against 0.39 s for a clip into a new tensor followed by an in-place subtract and
divide (benchmark machine, ``make bench`` row 10). These transforms do the latter; their output
equals ``ScaleIntensityRange(a_min=low, a_max=high, b_min=(low - mean) / std,
b_max=(high - mean) / std, clip=True)`` to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor


class ClipZScore(Transform):
    """``(clip(x, low, high) - mean) / std`` as float32, with one new volume (the input is not changed).

    Args:
        low: lower clip bound (input units, e.g. HU).
        high: upper clip bound.
        mean: subtracted after clipping.
        std: divisor after subtracting (must be > 0).
    """

    def __init__(self, low: float, high: float, mean: float, std: float) -> None:
        if not high >= low:
            raise ValueError(f"ClipZScore needs low <= high, got low={low}, high={high}")
        if not std > 0:
            raise ValueError(f"ClipZScore needs std > 0, got {std}")
        self.low, self.high, self.mean, self.std = float(low), float(high), float(mean), float(std)

    def __call__(self, img: Any) -> torch.Tensor:
        tensor = convert_to_tensor(img, track_meta=isinstance(img, MetaTensor))
        if not tensor.is_floating_point() or tensor.dtype != torch.float32:
            tensor = tensor.to(torch.float32)  # a new tensor: clip in place
            out = tensor.clamp_(self.low, self.high)
        else:
            out = tensor.clamp(self.low, self.high)
        return out.sub_(self.mean).div_(self.std)


class ClipZScored(MapTransform):
    """Dictionary version of :class:`ClipZScore` (``keys``: the images)."""

    def __init__(
        self, keys: KeysCollection, low: float, high: float, mean: float, std: float, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ClipZScore(low, high, mean, std)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
