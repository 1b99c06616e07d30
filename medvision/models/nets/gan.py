"""Class-conditional DCGAN networks for 2D and 3D images (MONAI has no conditional GAN pair).

* :class:`ConditionalGenerator`: noise ``z`` and a learned class embedding, concatenated
  (Mirza & Osindero 2014), projected to a 4^d feature map, then DCGAN blocks (Radford et al.
  2016): x2 upsampling (nearest + 3x3 convolution, or a 4x4 transposed convolution),
  BatchNorm, ReLU; a 3x3 convolution and ``tanh`` out.
* :class:`ProjectionDiscriminator`: strided 4x4 convolutions with LeakyReLU(0.2), optional
  spectral normalisation (Miyato et al. 2018), global sum pooling and the projection
  conditioning of Miyato & Koyama (2018): ``D(x, y) = psi(h) + <embed(y), h>``.
* :class:`ConditionalDCGAN`: the pair, built for one image shape; the network choice
  ``model/net=gan/dcgan`` of ``GANModule``.

Image sizes: the generator works at the smallest power of two >= the largest image side (at
least 8) and crops the centre to the image shape, so 28-pixel MedMNIST images are made at 32
and cropped to 28 (2 pixels off each border), 64-pixel images are made at 64. The
discriminator takes the image shape as it is (strided convolutions and global pooling accept
any size). Layers come from MONAI's factories (``Conv``, ``Norm``), so one class serves 2D
and 3D. The networks know nothing about Lightning.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "transpose")


def working_size(image_shape: Sequence[int]) -> int:
    """Side of the generator's square/cubic output: the smallest power of two >= every side, at least 8."""
    return max(8, 2 ** math.ceil(math.log2(max(image_shape))))


def centre_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The centre ``shape`` of the spatial axes of ``x`` (B, C, *spatial)."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], shape, strict=True):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


def _as_shape(image_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    shape = (int(image_size),) * spatial_dims if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(shape) != spatial_dims or min(shape) < 4:
        raise ValueError(f"image_size {image_size!r} must be one side >= 4 or {spatial_dims} sides >= 4")
    return shape


class ConditionalGenerator(nn.Module):
    """``G(z, y)``: noise and class -> image in ``[-1, 1]`` (``tanh``), cropped to ``image_size``.

    Args:
        spatial_dims: 2 or 3.
        out_channels: image channels.
        num_classes: number of classes (the embedding table's rows).
        image_size: one side, or one per spatial axis.
        latent_dim: length of the noise vector ``z``.
        embed_dim: length of the class embedding concatenated to ``z``.
        channels: feature maps of the last (full-resolution) block; each block towards the
            4^d start doubles them, up to ``max_channels``.
        max_channels: cap on the feature maps of a block.
        upsample: ``nearest`` (nearest-neighbour x2 + 3x3 convolution: no checkerboard
            artefacts, Odena et al. 2016) or ``transpose`` (4x4 stride-2 transposed
            convolution, the original DCGAN).
    """

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        latent_dim: int = 64,
        embed_dim: int = 16,
        channels: int = 32,
        max_channels: int = 256,
        upsample: Literal["nearest", "transpose"] = "nearest",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, not {upsample!r}")
        self.spatial_dims = spatial_dims
        self.image_shape = _as_shape(image_size, spatial_dims)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        n_up = int(math.log2(working_size(self.image_shape))) - 2
        widths = [min(max_channels, channels * 2 ** (n_up - i)) for i in range(n_up + 1)]
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.project = nn.Linear(latent_dim + embed_dim, widths[0] * 4**spatial_dims)
        self.start = nn.Sequential(norm(widths[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            if upsample == "nearest":
                up: list[nn.Module] = [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    conv(c_in, c_out, 3, padding=1, bias=False),
                ]
            else:
                up = [Conv[Conv.CONVTRANS, spatial_dims](c_in, c_out, 4, stride=2, padding=1, bias=False)]
            blocks.append(nn.Sequential(*up, norm(c_out), nn.ReLU(inplace=True)))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(conv(widths[-1], out_channels, 3, padding=1), nn.Tanh())
        self._width0 = widths[0]

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, C, *image_size) in ``[-1, 1]``.

        Args:
            z: noise (B, latent_dim).
            y: class indices (B,).
        """
        h = self.project(torch.cat([z, self.embed(y.long().reshape(-1))], dim=1))
        h = self.start(h.view(len(z), self._width0, *([4] * self.spatial_dims)))
        return centre_crop(self.head(self.blocks(h)), self.image_shape)


class ProjectionDiscriminator(nn.Module):
    """``D(x, y)``: one unbounded realness score per image (raw logit; the loss decides its meaning).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: number of classes (projection embedding rows).
        image_size: one side, or one per spatial axis (sets the number of strided blocks).
        channels: feature maps of the first block; doubled by each further block up to
            ``max_channels``.
        max_channels: cap on the feature maps of a block.
        spectral_norm: spectral normalisation of every convolution, the linear head and the
            projection embedding (Miyato et al. 2018).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        channels: int = 32,
        max_channels: int = 256,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        shape = _as_shape(image_size, spatial_dims)
        n_down = int(math.log2(working_size(shape))) - 2
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(n_down):
            c_out = min(max_channels, channels * 2**i)
            layers += [sn(conv(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.linear = sn(nn.Linear(c_in, 1))
        self.embed = sn(nn.Embedding(num_classes, c_in))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores (B,).

        Args:
            x: images (B, C, *spatial).
            y: class indices (B,).
        """
        h = self.features(x).flatten(2).sum(dim=2)  # global sum pooling (Miyato & Koyama 2018)
        return self.linear(h).reshape(-1) + (self.embed(y.long().reshape(-1)) * h).sum(dim=1)


class ConditionalDCGAN(nn.Module):
    """A :class:`ConditionalGenerator` and a :class:`ProjectionDiscriminator` for one image shape.

    Called by ``GANModule`` as ``net(in_channels=, num_classes=, spatial_dims=, image_size=)``;
    the other arguments come from ``conf/model/net/gan/dcgan.yaml``.

    Args:
        in_channels: image channels (the generator's output, the discriminator's input).
        num_classes: number of classes.
        spatial_dims: 2 or 3.
        image_size: one side, or one per spatial axis.
        latent_dim: length of the noise vector.
        embed_dim: length of the generator's class embedding.
        g_channels: the generator's ``channels``.
        d_channels: the discriminator's ``channels``.
        max_channels: cap on the feature maps of a block (both networks).
        upsample: the generator's ``upsample`` (``nearest`` or ``transpose``).
        spectral_norm: spectral normalisation in the discriminator.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int,
        image_size: int | Sequence[int],
        latent_dim: int = 64,
        embed_dim: int = 16,
        g_channels: int = 32,
        d_channels: int = 32,
        max_channels: int = 256,
        upsample: Literal["nearest", "transpose"] = "nearest",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = ConditionalGenerator(
            spatial_dims,
            in_channels,
            num_classes,
            image_size,
            latent_dim,
            embed_dim,
            g_channels,
            max_channels,
            upsample,
        )
        self.discriminator = ProjectionDiscriminator(
            spatial_dims, in_channels, num_classes, image_size, d_channels, max_channels, spectral_norm
        )


class RandomConvFeatures(nn.Module):
    """A fixed, randomly initialised convolutional feature extractor (no training, no download).

    Three strided 3x3 convolutions with ReLU and global average pooling give ``width * 4``
    features per image. Its weights are drawn from ``seed`` alone, so the same arguments give
    the same network in every process; it is a proxy feature space for comparing the epochs of
    one GAN run (``val/fd``), not a substitute for features of a classifier trained on the data.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        width: feature maps of the first convolution (then x2, x4).
        seed: seed of the weights.
    """

    def __init__(self, spatial_dims: int, in_channels: int, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        widths = [in_channels, width, width * 2, width * 4]
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [conv(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.num_features = widths[-1]
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.body.modules():
                if isinstance(module, nn.modules.conv._ConvNd):
                    fan_in = module.weight[0].numel()
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                    module.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, width * 4)."""
        return self.body(x).flatten(2).mean(dim=2)
