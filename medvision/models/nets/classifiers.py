"""MONAI classification networks behind one calling convention: ``net(in_channels=, out_channels=)``.

The LightningModules call every network factory with ``in_channels`` and ``out_channels``
(the data decides both). MONAI's nets name those arguments differently (ResNet:
``n_input_channels``/``num_classes``; EfficientNet: ``in_channels``/``num_classes``;
DenseNet: ``in_channels``/``out_channels``); the adapters here rename them and nothing else, so
every other argument is MONAI's own and is set in ``conf/model/net/cls/*.yaml``.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def resnet(in_channels: int, out_channels: int, depth: int = 18, spatial_dims: int = 2, **kwargs: Any) -> nn.Module:
    """MONAI ResNet (``resnet10`` ... ``resnet200``), 2D or 3D, trained from scratch.

    Args:
        in_channels: image channels.
        out_channels: number of logits (classes, or labels for multi-label).
        depth: 10, 18, 34, 50, 101, 152 or 200.
        spatial_dims: 2 or 3.
        kwargs: other ``monai.networks.nets.ResNet`` arguments, e.g. ``conv1_t_size=3,
            conv1_t_stride=1, no_max_pool=True`` for 28-pixel inputs (the MedMNIST v2 ResNets).
    """
    from monai.networks import nets

    factory = getattr(nets, f"resnet{depth}", None)
    if factory is None:
        raise ValueError(f"MONAI has no resnet{depth}")
    return factory(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=out_channels, **kwargs)


def efficientnet(
    in_channels: int,
    out_channels: int,
    model_name: str = "efficientnet-b0",
    spatial_dims: int = 2,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """MONAI ``EfficientNetBN`` (``efficientnet-b0`` ... ``b7``), from scratch by default.

    Args:
        in_channels: image channels.
        out_channels: number of logits.
        model_name: MONAI's model name.
        spatial_dims: 2 or 3.
        pretrained: ImageNet weights (2D only; downloads them).
        kwargs: other ``monai.networks.nets.EfficientNetBN`` arguments.
    """
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN(
        model_name,
        pretrained=pretrained,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=out_channels,
        **kwargs,
    )
