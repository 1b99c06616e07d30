"""``SampledFgBgIndicesd``: where training patches may be centred, sampled once per case.

MONAI's ``RandCropByPosNegLabeld`` picks each patch centre among the foreground (label > 0) or
background voxels of the label. Given no pre-computed indices, it lists them again for every
sample: for a 512 x 512 x 300 CT that is two scans of 78.6 M voxels and a background list of
~75 M int64 (~600 MB) per patch, in every DataLoader worker. MONAI's ``FgBgToIndicesd`` computes
the lists once, but keeps them whole (the same ~600 MB per case in a memory cache).

This deterministic ``load`` step stores a fixed-size random sample of each list instead, the way
nnU-Net stores 10,000 foreground locations per class for its sampler (nnU-Net v2,
``DefaultPreprocessor``; number taken from there, not its code): ``max_indices`` flat indices
(C order over the spatial axes, MONAI's convention) of foreground and of background voxels,
drawn with a fixed seed from the label itself, so the same label always gives the same sample
and a cache (``data.cache``) keeps it with the case. ``RandCropByPosNegLabeld`` reads them
through ``fg_indices_key``/``bg_indices_key`` (and drops them from the patches it returns). A
class with fewer voxels than ``max_indices`` keeps all of them, repeated to the fixed size, so
that batches of whole cases (validation) collate.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

#: nnU-Net v2 keeps 10,000 sampled locations per class for its foreground oversampling
DEFAULT_MAX_INDICES = 10_000
#: above this fraction of the volume, a set's voxels are found by drawing random voxels and keeping
#: those in the set (no list of all of them is made)
REJECTION_FRACTION = 0.05


def sample_indices(flat: np.ndarray, value: bool, total: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` flat indices (int64, C order) of voxels where the boolean ``flat`` equals ``value``.

    Args:
        flat: the foreground mask, flattened (C order).
        value: ``True``: foreground voxels; ``False``: background voxels.
        total: how many voxels of ``flat`` equal ``value`` (known to the caller).
        count: how many indices (a set of fewer voxels gives all of them, repeated to ``count``).
        rng: the random generator.

    Returns:
        The indices, sorted (page-friendly reads); empty when no voxel equals ``value``.
    """
    if total == 0:
        return np.zeros(0, np.int64)
    if total >= REJECTION_FRACTION * flat.size and total > count:
        picked: list[np.ndarray] = []
        have = 0
        while have < count:
            draw = rng.integers(0, flat.size, size=2 * (count - have) + 64)
            keep = draw[flat[draw] == value]
            picked.append(keep)
            have += keep.size
        chosen = np.concatenate(picked)[:count]
    else:
        where = np.flatnonzero(flat if value else ~flat)
        if where.size < count:  # all of them, then repeats to the fixed size
            chosen = np.concatenate([where, rng.choice(where, size=count - where.size)])
        else:
            chosen = rng.choice(where, size=count, replace=False)
    return np.sort(chosen.astype(np.int64))


class SampledFgBgIndicesd(MapTransform):
    """Store ``max_indices`` sampled foreground and background voxel indices of each label key.

    Args:
        keys: the label keys (a label with several channels counts a voxel as foreground when
            any channel is positive, as MONAI does).
        max_indices: indices kept per set (foreground, background).
        fg_postfix: the foreground key is ``<key><fg_postfix>`` (MONAI's ``FgBgToIndicesd`` naming).
        bg_postfix: the background key is ``<key><bg_postfix>``.
        seed: seed of the draw (the same label gives the same indices).
        allow_missing_keys: skip a missing label (prediction reads no label).
    """

    def __init__(
        self,
        keys: KeysCollection,
        max_indices: int = DEFAULT_MAX_INDICES,
        fg_postfix: str = "_fg_indices",
        bg_postfix: str = "_bg_indices",
        seed: int = 0,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if max_indices < 1:
            raise ValueError(f"max_indices must be >= 1, got {max_indices}")
        self.max_indices = int(max_indices)
        self.fg_postfix = fg_postfix
        self.bg_postfix = bg_postfix
        self.seed = int(seed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
            if array.ndim > 1:  # channel first: foreground where any channel is positive
                foreground = array[0] > 0 if array.shape[0] == 1 else np.any(array > 0, axis=0)
            else:
                foreground = array > 0
            flat = foreground.reshape(-1)
            n_fg = int(np.count_nonzero(flat))
            rng = np.random.default_rng(self.seed)
            d[f"{key}{self.fg_postfix}"] = sample_indices(flat, True, n_fg, self.max_indices, rng)
            d[f"{key}{self.bg_postfix}"] = sample_indices(flat, False, flat.size - n_fg, self.max_indices, rng)
        return d
