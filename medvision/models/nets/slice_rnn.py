"""``SliceRNN``: a volume classifier reading a stack of slices like a sequence.

A small 2D CNN encodes every slice; a bidirectional GRU or LSTM runs over the slice
features; the hidden states are pooled over slices and mapped to logits. This is the
recurrent "CNN + RNN over slices" model used for CT/MR slice stacks (e.g. intracranial
haemorrhage and pulmonary embolism detection). MONAI has no such network, hence ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn


def _encoder(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    previous = in_channels
    for width in channels:
        layers += [
            nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
        previous = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class SliceRNN(nn.Module):
    """2D CNN per slice, then a (bi)directional GRU/LSTM over slices, pooled to logits.

    Input ``(B, C, D, H, W)``; slices are taken along ``slice_axis`` (2 = D).

    Args:
        in_channels: image channels.
        out_channels: number of logits.
        encoder_channels: widths of the per-slice conv blocks (conv-BN-ReLU-maxpool each).
        hidden_size: hidden units of the recurrent layer (per direction).
        num_layers: stacked recurrent layers.
        cell: ``gru`` or ``lstm``.
        bidirectional: run over slices in both directions.
        pooling: ``mean`` or ``max`` over slices of the recurrent outputs.
        dropout: dropout before the final linear layer.
        slice_axis: spatial axis of the input (2, 3 or 4) holding the slices.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        encoder_channels: Sequence[int] = (16, 32, 64),
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: Literal["gru", "lstm"] = "gru",
        bidirectional: bool = True,
        pooling: Literal["mean", "max"] = "mean",
        dropout: float = 0.0,
        slice_axis: int = 2,
    ) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', not {pooling!r}")
        if slice_axis not in (2, 3, 4):
            raise ValueError(f"slice_axis must be 2, 3 or 4 (a spatial axis of (B, C, D, H, W)), not {slice_axis}")
        self.slice_axis = slice_axis
        self.pooling = pooling
        self.encoder = _encoder(in_channels, encoder_channels)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(
            encoder_channels[-1], hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden_size * (2 if bidirectional else 1), out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)`` of volumes ``(B, C, D, H, W)``."""
        if x.ndim != 5:
            raise ValueError(f"SliceRNN expects (B, C, D, H, W) volumes, got shape {tuple(x.shape)}")
        x = x.movedim(self.slice_axis, 1)  # (B, S, C, h, w)
        b, s = x.shape[:2]
        features = self.encoder(x.reshape(b * s, *x.shape[2:])).reshape(b, s, -1)
        outputs, _ = self.rnn(features)
        pooled = outputs.mean(dim=1) if self.pooling == "mean" else outputs.amax(dim=1)
        return self.head(pooled)
