"""Quality of generated samples in a feature space: Fréchet distance, k-NN precision/recall and
class agreement. Nothing is downloaded (no Inception, no ImageNet): the features are the
penultimate layer of a network trained on the same data (a medvision classifier), or any
module with a ``num_features`` attribute.

* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets
  (Heusel et al. 2017's FID formula, computed by torchmetrics' ``FrechetInceptionDistance``
  with the given features);
* :func:`knn_precision_recall`: improved precision and recall (Kynkäänniemi et al. 2019): a
  sample is inside a set's manifold when it lies within the distance of some member to that
  member's k-th nearest neighbour;
* :func:`class_agreement`: the fraction of samples of class c that the real-data classifier
  assigns to c (does the conditioning work?).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medvision.utils.errors import MedvisionError
from medvision.utils.names import safe_name


class PenultimateFeatures(nn.Module):
    """The input of a network's last ``nn.Linear`` (its penultimate features), as (B, F).

    MONAI's ResNet (``fc``), DenseNet (``class_layers.out``), EfficientNet (``_fc``) and
    medvision's slice RNN all end in a linear classifier registered last. The network is
    frozen and stays in eval mode.

    Args:
        net: a classification network.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise MedvisionError(
                f"{type(net).__name__} has no linear layer whose input could serve as features",
                fix="use a medvision classifier checkpoint (model=classifier)",
            )
        self.net = net.eval().requires_grad_(False)
        self._head = linears[-1]
        self.num_features = int(self._head.in_features)

    def train(self, mode: bool = True) -> PenultimateFeatures:
        """Always eval mode (BatchNorm statistics and dropout of the classifier stay fixed)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = self._head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            self.net(x.to(next(self.net.parameters()).dtype))
        finally:
            handle.remove()
        return captured[-1].flatten(1)


def feature_extractor(source: nn.Module) -> nn.Module:
    """A frozen module mapping images to features (B, F), with a ``num_features`` attribute.

    Args:
        source: a ``ClassifierModule`` (its ``net``), a network ending in a linear layer, or a
            module that already has ``num_features`` (used as it is).
    """
    if hasattr(source, "num_features"):
        return source.eval().requires_grad_(False)
    return PenultimateFeatures(getattr(source, "net", source))


def _batches(images: np.ndarray | torch.Tensor, batch_size: int) -> Any:
    for start in range(0, len(images), batch_size):
        yield torch.as_tensor(np.asarray(images[start : start + batch_size], dtype=np.float32))


@torch.no_grad()
def features(source: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Penultimate features (N, F) of a medvision classifier for images in model-input space.

    Args:
        source: a classifier module or network (see :func:`feature_extractor`).
        images: (N, C, *spatial) float images.
        batch_size: images per forward pass.
    """
    extractor = feature_extractor(source)
    device = next(extractor.parameters(), torch.empty(0)).device
    out = [extractor(x.to(device)).double().cpu() for x in _batches(images, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, extractor.num_features))


class _GivenFeatures(nn.Module):
    """Identity 'extractor': lets torchmetrics' Fréchet distance take features computed elsewhere."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)`` of two feature sets (N, F).

    Raises:
        ValueError: fewer than two samples in a set, or feature lengths that differ.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two sets of >= 2 feature vectors of one length, got {a.shape} and {b.shape}")
    metric = FrechetInceptionDistance(feature=_GivenFeatures(a.shape[1])).double()
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    return float(metric.compute())


def _kth_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    radii = [torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)]
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each point: is it within ``radii[j]`` of some ``centres[j]``?"""
    return torch.cat(
        [(torch.cdist(points[i : i + chunk], centres) <= radii[None]).any(dim=1) for i in range(0, len(points), chunk)]
    )


def knn_precision_recall(
    real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3, chunk: int = 1024
) -> dict[str, float]:
    """Improved precision and recall of Kynkäänniemi et al. (NeurIPS 2019).

    precision: fraction of fake samples inside the real manifold (within the k-NN radius of
    some real sample); recall: fraction of real samples inside the fake manifold.

    Args:
        real_feats: (N, F) features of real images.
        fake_feats: (M, F) features of synthetic images.
        k: the neighbour that sets each sample's radius (the paper uses 3).
        chunk: rows per distance block (memory).

    Raises:
        ValueError: a set has ``k`` samples or fewer.
    """
    real = torch.as_tensor(np.asarray(real_feats, dtype=np.float64))
    fake = torch.as_tensor(np.asarray(fake_feats, dtype=np.float64))
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"k={k} needs more than {k} real and fake samples, got {len(real)} and {len(fake)}")
    precision = _inside(fake, real, _kth_radius(real, k, chunk), chunk).double().mean()
    recall = _inside(real, fake, _kth_radius(fake, k, chunk), chunk).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


@torch.no_grad()
def predict_classes(classifier: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Arg-max class (N,) of a classifier module for each image (model-input space)."""
    module = classifier.eval()
    device = next(module.parameters()).device
    out = [module(x.to(device)).argmax(dim=1).cpu() for x in _batches(images, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def class_agreement(
    classifier: nn.Module, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, float]:
    """How often a classifier trained on real data assigns synthetic images to their conditioned class.

    Returns:
        ``agreement`` over all images and ``agreement/<class>`` per class present.
    """
    labels = np.asarray(labels).reshape(-1)
    hit = predict_classes(classifier, images) == labels
    out = {"agreement": float(hit.mean()) if len(hit) else float("nan")}
    for c, name in enumerate(class_names):
        if (labels == c).any():
            out[f"agreement/{safe_name(name)}"] = float(hit[labels == c].mean())
    return out
