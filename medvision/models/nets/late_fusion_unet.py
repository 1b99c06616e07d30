"""``LateFusionUNet``: one U-Net encoder per modality, their features joined at every scale, one decoder.

Early fusion (the default: the modalities are the channels of one network's input) mixes them
in the first convolution. Late fusion keeps a separate encoder per modality, so each learns
features of its own contrast (CT density, PET uptake, T2 fluid), and joins them afterwards.

Where to join, for segmentation: at **every scale**, not only at the bottleneck. A U-Net decoder
localises with the skip features of each scale; joining at the bottleneck alone would leave the
decoder either without skips (coarse masks) or with one modality's skips (an asymmetric net that
fails when that modality is missing). Joining each scale's features is what the hetero-modal
U-Nets do (HeMIS, Havaei et al. 2016; U-HeMIS, Dorent et al. 2019).

How to join: ``mean`` (default) averages the encoders' features at each scale: the decoder sees
features of the same scale whether one modality carries the object or all do, which suits
modality dropout and a modality missing at prediction; ``concat`` concatenates them and mixes with
a 1x1 convolution (more parameters; the decoder can weigh the modalities). Built from MONAI's
``BasicUNet`` blocks (``TwoConv``, ``Down``, ``UpCat``), with its defaults (instance norm, leaky
ReLU, transposed-convolution upsampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

Fusion = Literal["mean", "concat"]


class LateFusionUNet(nn.Module):
    """Per-modality encoders, features fused at each scale (mean or concat), one shared decoder.

    Args:
        in_channels: input channels; each is one modality with its own encoder.
        out_channels: output channels (classes).
        spatial_dims: 2 or 3.
        features: feature maps at each scale (the first at full resolution); ``len - 1`` poolings.
        fusion: ``mean`` or ``concat`` (then a 1x1 convolution back to the scale's features).
        act: activation (MONAI's factory name and arguments).
        norm: normalisation (MONAI's factory name and arguments).
        dropout: dropout ratio inside the convolution blocks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        features: Sequence[int] = (16, 32, 64, 128),
        fusion: Fusion = "mean",
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: str | tuple = ("instance", {"affine": True}),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in ("mean", "concat"):
            raise ValueError(f"fusion must be 'mean' or 'concat', got {fusion!r}")
        if len(features) < 2:
            raise ValueError(f"features needs at least two scales, got {list(features)}")
        f = [int(n) for n in features]
        self.fusion = fusion
        self.encoders = nn.ModuleList(
            nn.ModuleList(
                [TwoConv(spatial_dims, 1, f[0], act, norm, True, dropout)]
                + [Down(spatial_dims, f[i - 1], f[i], act, norm, True, dropout) for i in range(1, len(f))]
            )
            for _ in range(in_channels)
        )
        conv = Conv["conv", spatial_dims]
        self.mix = nn.ModuleList(conv(n * in_channels, n, kernel_size=1) for n in f) if fusion == "concat" else None
        self.decoder = nn.ModuleList(
            UpCat(spatial_dims, f[i], f[i - 1], f[i - 1], act, norm, True, dropout, "deconv", halves=i > 1)
            for i in range(len(f) - 1, 0, -1)
        )
        self.head = conv(f[0], out_channels, kernel_size=1)

    def _fuse(self, scale: int, features: list[torch.Tensor]) -> torch.Tensor:
        if self.mix is None:
            return torch.stack(features).mean(dim=0)
        return self.mix[scale](torch.cat(features, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, *spatial)`` of ``x`` ``(B, in_channels, *spatial)``."""
        per_modality: list[list[torch.Tensor]] = []
        for c, encoder in enumerate(self.encoders):
            h, scales = x[:, c : c + 1], []
            for block in encoder:
                h = block(h)
                scales.append(h)
            per_modality.append(scales)
        fused = [self._fuse(s, [m[s] for m in per_modality]) for s in range(len(per_modality[0]))]
        h = fused[-1]
        for up, skip in zip(self.decoder, reversed(fused[:-1]), strict=True):
            h = up(h, skip)
        return self.head(h)
