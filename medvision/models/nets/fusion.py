"""``FusionNet``: image network features + an MLP of the clinical vector, joined before the head.

The image branch is any classification network of ``conf/model/net/cls`` (MONAI's ResNet,
DenseNet, EfficientNet) with its last linear layer replaced by the identity
(:func:`feature_extractor`): its pooled features. The clinical branch is a two-layer MLP.
They are joined by

- ``concat``: ``head([image features, clinical features])``;
- ``film`` (Perez et al., FiLM, AAAI 2018): the clinical features give a per-channel scale and
  shift of the image features, ``f * (1 + gamma(c)) + beta(c)``, then ``head(f)``. Applied to the
  pooled features, which equals applying it to the last feature map (average pooling commutes
  with a per-channel affine map); gamma and beta start at zero (the identity).

The head is an MLP with one hidden layer: a label that depends on an interaction of the two
inputs (an XOR) needs one. Several image modalities (channels) go into one encoder (``early``
fusion) or into one encoder each (``late``: one channel per encoder, features concatenated).
``inputs=image`` or ``clinical`` keeps one branch only (the single-input baselines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

#: which inputs the network reads (``model.inputs``)
Inputs = Literal["both", "image", "clinical"]
#: how the two branches are joined (``model.fusion``)
Fusion = Literal["concat", "film"]
#: how several image modalities are combined (``model.modality_fusion``)
ModalityFusion = Literal["early", "late"]


def feature_extractor(net: nn.Module) -> tuple[nn.Module, int]:
    """``net`` with its last ``nn.Linear`` replaced by ``nn.Identity``, and that layer's input width.

    MONAI's classification networks end in one linear layer after pooling (ResNet ``fc``,
    DenseNet ``class_layers.out``, EfficientNet ``_fc``); what goes into it are the image features.

    Raises:
        ValueError: ``net`` has no linear layer.
    """
    linears = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no linear layer to take image features before")
    name, last = linears[-1]
    parent_name, _, attribute = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, attribute, nn.Identity())
    return net, int(last.in_features)


def _mlp(width_in: int, hidden: int, width_out: int | None, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(width_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
    if width_out is not None:
        layers.append(nn.Linear(hidden, width_out))
    return nn.Sequential(*layers)


class FusionNet(nn.Module):
    """Image encoder(s) + clinical MLP + fusion + MLP head -> logits.

    Args:
        encoder: factory of the image network, called as ``encoder(in_channels=, out_channels=)``
            (a ``conf/model/net/cls`` choice); its last linear layer is dropped. ``None`` only
            with ``inputs="clinical"``.
        in_channels: image channels (one per modality).
        out_channels: number of logits.
        clinical_features: length of the clinical vector (0: no clinical data).
        inputs: ``both``, ``image`` or ``clinical``.
        fusion: ``concat`` or ``film`` (with ``inputs="both"``).
        modality_fusion: ``early`` (channels into one encoder) or ``late`` (an encoder per channel).
        clinical_hidden: width of the clinical MLP.
        head_hidden: width of the head's hidden layer.
        dropout: dropout in the clinical MLP and the head.
    """

    def __init__(
        self,
        encoder: Callable[..., nn.Module] | None,
        in_channels: int,
        out_channels: int,
        clinical_features: int = 0,
        inputs: Inputs = "both",
        fusion: Fusion = "concat",
        modality_fusion: ModalityFusion = "early",
        clinical_hidden: int = 32,
        head_hidden: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if inputs not in ("both", "image", "clinical"):
            raise ValueError(f"inputs must be both, image or clinical, not {inputs!r}")
        if fusion not in ("concat", "film"):
            raise ValueError(f"fusion must be concat or film, not {fusion!r}")
        if modality_fusion not in ("early", "late"):
            raise ValueError(f"modality_fusion must be early or late, not {modality_fusion!r}")
        self.inputs, self.fusion, self.modality_fusion = inputs, fusion, modality_fusion
        self.uses_image = inputs in ("both", "image")
        self.uses_clinical = inputs in ("both", "clinical")
        if self.uses_clinical and clinical_features < 1:
            raise ValueError(f"inputs={inputs} needs clinical features, but the data has none")
        image_width = 0
        self.image_encoders = nn.ModuleList()
        if self.uses_image:
            if encoder is None:
                raise ValueError(f"inputs={inputs} needs an image network")
            count, channels = (in_channels, 1) if modality_fusion == "late" else (1, in_channels)
            for _ in range(count):
                net, width = feature_extractor(encoder(in_channels=channels, out_channels=1))
                self.image_encoders.append(net)
            image_width = width * count
        # pooled CNN features are a large constant plus a small case-to-case variation; standardised
        # over the batch, that variation is what the head (and FiLM) sees, on the scale of the record's
        self.image_norm = nn.BatchNorm1d(image_width) if self.uses_image else None
        self.clinical_mlp = _mlp(clinical_features, clinical_hidden, None, dropout) if self.uses_clinical else None
        self.film: nn.Linear | None = None
        if inputs == "both" and fusion == "film":
            self.film = nn.Linear(clinical_hidden, 2 * image_width)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
            joined = image_width
        else:
            joined = image_width + (clinical_hidden if self.uses_clinical else 0)
        self.head = _mlp(joined, head_hidden, out_channels, dropout)

    @property
    def image_branch(self) -> str | None:
        """Name of the (first) image encoder among the modules (where Grad-CAM looks); ``None``: no image input."""
        return "image_encoders.0" if self.uses_image else None

    def image_features(self, image: torch.Tensor) -> torch.Tensor | None:
        """Pooled features of the image encoder(s) (B, F), or ``None`` without an image branch."""
        if not self.uses_image:
            return None
        if self.modality_fusion == "late":
            features = torch.cat([enc(image[:, k : k + 1]) for k, enc in enumerate(self.image_encoders)], dim=1)
        else:
            features = self.image_encoders[0](image)
        assert self.image_norm is not None
        return self.image_norm(features)

    def fuse(self, features: torch.Tensor | None, clinical: torch.Tensor | None) -> torch.Tensor:
        """Logits from image features (:meth:`image_features`) and the clinical vector."""
        parts: list[torch.Tensor] = []
        if self.uses_clinical:
            if clinical is None:
                raise ValueError(f"a FusionNet with inputs={self.inputs} needs the clinical vector")
            assert self.clinical_mlp is not None
            hidden = self.clinical_mlp(clinical.float())
            if self.film is not None:
                assert features is not None
                gamma, beta = self.film(hidden).chunk(2, dim=1)
                return self.head(features * (1.0 + gamma) + beta)
            parts.append(hidden)
        if features is not None:
            parts.insert(0, features)
        return self.head(torch.cat(parts, dim=1))

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, out_channels) of an image batch and its clinical vectors (B, F)."""
        return self.fuse(self.image_features(image), clinical)
