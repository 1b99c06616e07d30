"""Several images per case (CT + PET, T1 + T2 + FLAIR, ...): load them onto one grid, normalise each its own way.

A case's ``image`` may be a list of files, one per modality (a CSV manifest's ``image_<modality>``
columns, or the columns ``data.image_columns`` names). MONAI's ``LoadImaged`` stacks such a list
as channels only when every file has the same grid. :class:`LoadModalitiesd` is ``LoadImaged``
that also accepts modalities on different grids: each modality is resampled onto the grid of the
FIRST one (MONAI ``ResampleToMatch``, linear), then they are stacked as channels. The stacked image
keeps the first modality's metadata (file name, affine, shape), so the label map must lie on the
first modality's grid (the data audit checks it) and predictions are written on that grid.

:class:`ChannelIntensityd` normalises each channel with its own MONAI intensity transform (a CT
channel clipped and z-scored with the dataset's foreground statistics, an MR channel z-scored
per case): the planner's per-channel rule (:func:`medvision.planning.rules.normalisation`)
chooses the schemes and writes this step when they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import LoadImaged, MapTransform

#: largest difference between two affines' entries (mm) that still counts as the same grid (the audit's)
AFFINE_TOLERANCE = 1e-3


def same_grid(a: Any, b: Any, tol: float = AFFINE_TOLERANCE) -> bool:
    """Whether two channel-first MetaTensors lie on one grid (spatial shape and affine within ``tol`` mm)."""
    if tuple(a.shape[1:]) != tuple(b.shape[1:]):
        return False
    return bool(np.allclose(np.asarray(a.affine), np.asarray(b.affine), atol=tol, rtol=0))


class LoadModalitiesd(LoadImaged):
    """``LoadImaged`` whose list of files (one per modality) may lie on different grids.

    A key holding one file is loaded exactly as ``LoadImaged`` loads it. A key holding a list of
    files is loaded file by file; every file whose grid (spatial shape, affine) differs from the
    first file's is resampled onto the first file's grid (MONAI ``ResampleToMatch``, ``mode``,
    ``padding_mode``), and the files are stacked as channels in list order: ``(C, *spatial)``,
    with the first file's metadata (its name, affine, spatial shape) and ``original_channel_dim``
    0, as ``LoadImaged`` gives a stacked list (``EnsureChannelFirstd`` after it changes nothing).

    Args:
        keys: keys of the items to load (``image``, ``label``).
        mode: interpolation of the resampled modalities (``bilinear``: images).
        padding_mode: values outside a resampled modality's field of view (``border``: its edge,
            MONAI's default; air stays air in a CT).
        kwargs: every other ``LoadImaged`` argument (``image_only``, ``reader``, ...); with
            ``image_only=False`` (metadata dictionaries beside the images) it is ``LoadImaged``.
    """

    def __init__(
        self, keys: KeysCollection, mode: str = "bilinear", padding_mode: str = "border", **kwargs: Any
    ) -> None:
        super().__init__(keys, **kwargs)
        self.mode = mode
        self.padding_mode = padding_mode

    def __call__(self, data: Mapping[Hashable, Any], reader: Any = None) -> dict[Hashable, Any]:
        d = dict(data)
        several = [k for k in self.key_iterator(d) if isinstance(d[k], (list, tuple)) and len(d[k]) > 1]
        if not several or not self._loader.image_only:
            return super().__call__(d, reader)
        for key in self.key_iterator(d):
            if key in several:
                d[key] = self.stack([self._loader(f, reader) for f in d[key]])
            else:  # what LoadImaged does with image_only=True
                d[key] = self._loader(d[key], reader)
        return d

    def stack(self, images: Sequence[Any]) -> Any:
        """Channel-first modalities -> one ``(C, *spatial)`` MetaTensor on the first one's grid."""
        from monai.data import MetaTensor
        from monai.transforms import EnsureChannelFirst, ResampleToMatch

        channel_first = [EnsureChannelFirst()(img) for img in images]
        reference = channel_first[0]
        resample = ResampleToMatch(mode=self.mode, padding_mode=self.padding_mode)
        parts = [
            img if k == 0 or same_grid(img, reference) else resample(img, img_dst=reference)
            for k, img in enumerate(channel_first)
        ]
        array = torch.cat([torch.as_tensor(p.as_tensor() if isinstance(p, MetaTensor) else p).float() for p in parts])
        meta = dict(reference.meta)
        meta["original_channel_dim"] = 0
        return MetaTensor(array, meta=meta)


class ChannelIntensityd(MapTransform):
    """Normalise each channel with its own intensity transform (one per modality).

    MONAI's intensity transforms treat every channel alike (``NormalizeIntensityd(channel_wise=True)``
    z-scores each channel, ``ScaleIntensityRanged`` clips all of them to one range); a CT channel
    beside an MR channel needs a clip-and-scale for the first and a per-case z-score for the second.
    Each transform is a MONAI array transform applied to its channel ``(1, *spatial)``; ``None``
    leaves the channel as it is. Metadata and the record of spatial operations are kept.

    Args:
        keys: keys of the images.
        channels: one MONAI array transform (or ``None``) per channel, in channel order.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self, keys: KeysCollection, channels: Sequence[Callable | None], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = list(channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] != len(self.channels):
                raise ValueError(
                    f"{key} has {image.shape[0]} channel(s), the intensity step normalises {len(self.channels)}"
                )
            out = torch.as_tensor(image).clone()
            for c, transform in enumerate(self.channels):
                if transform is not None:
                    out[c : c + 1] = torch.as_tensor(transform(image[c : c + 1]))
            d[key] = out
        return d
