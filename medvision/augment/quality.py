"""How good are synthetic samples? Measures that need no download (no Inception, no ImageNet).

The feature space is the penultimate layer of a medvision classifier trained on the same data
(a ``ClassifierModule`` checkpoint of ``medvision-train model=classifier``): the input of its
last linear layer.

* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets
  (Heusel et al. 2017's FID formula, computed by torchmetrics' ``FrechetInceptionDistance``
  with the given features);
* :func:`knn_precision_recall`: improved precision and recall (Kynkäänniemi et al. 2019): a
  sample is inside a set's manifold when it lies within the distance of some member to that
  member's k-th nearest neighbour;
* :func:`class_agreement`: the fraction of samples of class c that the real-data classifier
  assigns to c (does the conditioning work?);
* :func:`train_on_synthetic_test_on_real` (TSTR; Esteban et al. 2017): a fresh classifier
  trained in this process on the synthetic store alone, scored on real images;
* :func:`gan_quality`: all of them in one dictionary (what ``medvision-gan-report`` prints).

Images are in model-input space (the DataModule's output after its ``load`` transforms), as
in a synthetic store; :func:`real_arrays` reads a split of a classification DataModule so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from medvision.augment.store import SyntheticStore, read_store
from medvision.utils.errors import MedvisionError

FeatureSource = str | os.PathLike[str] | nn.Module


def module_from_checkpoint(ckpt_path: str | os.PathLike[str]) -> Any:
    """Rebuild the LightningModule of a medvision checkpoint (``weights_only`` read), in eval mode on CPU.

    The model config and the data-given arguments (label names, channels, ...) are those stored
    in the checkpoint, so neither the data nor the config tree is needed.

    Raises:
        MedvisionError: missing or unreadable file, not a medvision checkpoint, or weights that
            do not fit the stored config.
    """
    from hydra.utils import instantiate

    from medvision.utils.checkpoint import load_checkpoint
    from medvision.utils.config import CHECKPOINT_CONFIG_KEY

    checkpoint = load_checkpoint(ckpt_path)
    config = checkpoint[CHECKPOINT_CONFIG_KEY]
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    model = instantiate(config["model"], **hparams)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise MedvisionError(f"checkpoint {ckpt_path}: its weights do not fit its own model config ({str(err)[:300]})",
                             fix="use a checkpoint written by medvision-train of this medvision version") from err
    return model.eval()


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
            raise MedvisionError(f"{type(net).__name__} has no linear layer whose input could serve as features",
                                 fix="use a medvision classifier checkpoint (model=classifier)")
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


def feature_extractor(source: FeatureSource) -> nn.Module:
    """A frozen module mapping images to features (B, F), with a ``num_features`` attribute.

    Args:
        source: a classifier checkpoint path, a ``ClassifierModule`` (its ``net``), a network
            ending in a linear layer, or a module that already has ``num_features`` (used as it is).
    """
    if isinstance(source, (str, os.PathLike)):
        source = module_from_checkpoint(source)
    if hasattr(source, "num_features"):
        return source.eval().requires_grad_(False)
    return PenultimateFeatures(getattr(source, "net", source))


def _batches(images: np.ndarray | torch.Tensor, batch_size: int) -> Any:
    for start in range(0, len(images), batch_size):
        yield torch.as_tensor(np.asarray(images[start:start + batch_size], dtype=np.float32))


@torch.no_grad()
def features(source: FeatureSource, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Penultimate features (N, F) of a medvision classifier for images in model-input space.

    Args:
        source: a classifier checkpoint path or module (see :func:`feature_extractor`).
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
    radii = [torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)]
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each point: is it within ``radii[j]`` of some ``centres[j]``?"""
    return torch.cat([(torch.cdist(points[i:i + chunk], centres) <= radii[None]).any(dim=1)
                      for i in range(0, len(points), chunk)])


def knn_precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3, chunk: int = 1024) -> dict[str, float]:
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
def predict_classes(classifier: FeatureSource, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Arg-max class (N,) of a medvision classifier (checkpoint path or module) for each image."""
    module = module_from_checkpoint(classifier) if isinstance(classifier, (str, os.PathLike)) else classifier
    module.eval()
    device = next(module.parameters()).device
    out = [module(x.to(device)).argmax(dim=1).cpu() for x in _batches(images, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def _safe(name: str) -> str:
    from medvision.metrics.classification import safe_name

    return safe_name(name)


def class_agreement(classifier: FeatureSource, images: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str]) -> dict[str, float]:
    """How often a classifier trained on real data assigns synthetic images to their conditioned class.

    Returns:
        ``agreement`` over all images and ``agreement/<class>`` per class present.
    """
    labels = np.asarray(labels).reshape(-1)
    hit = predict_classes(classifier, images) == labels
    out = {"agreement": float(hit.mean()) if len(hit) else float("nan")}
    for c, name in enumerate(class_names):
        if (labels == c).any():
            out[f"agreement/{_safe(name)}"] = float(hit[labels == c].mean())
    return out


class _ArrayDataset(torch.utils.data.Dataset):
    """``{"image", "label"}`` samples of in-memory arrays (what ``ClassifierModule`` takes)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = np.asarray(images, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": torch.from_numpy(self.images[i]), "label": torch.tensor(self.labels[i])}


def fit_and_test(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    prefix: str,
    net: Callable[..., nn.Module] | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Train a fresh ``ClassifierModule`` on ``train`` with a short Lightning fit, test it on ``test``.

    Args:
        train: (images, labels) to train on (model-input space).
        test: (images, labels) to score on.
        class_names: the task's classes (2: binary, more: multi-class).
        prefix: metric prefix (``tstr``, ``trtr``).
        net: network factory ``net(in_channels=, out_channels=)`` (default: MONAI ResNet-10
            of the images' dimensionality).
        epochs: training epochs.
        batch_size: training batch size.
        lr: Adam learning rate.
        seed: seed of the initialisation and the shuffling (torch's RNG is restored after).

    Returns:
        ``<prefix>/acc``, ``<prefix>/balanced_acc``, ``<prefix>/auc`` (MedMNIST's definitions).
    """
    import lightning.pytorch as pl

    from medvision.models.classifier import ClassifierModule
    from medvision.models.losses import ClassificationLoss
    from medvision.models.nets.classifiers import resnet

    images, labels = train
    spatial_dims = np.asarray(images).ndim - 2
    task = "binary" if len(class_names) == 2 else "multiclass"
    loaders = [torch.utils.data.DataLoader(_ArrayDataset(*pair), batch_size=batch_size, shuffle=shuffle)
               for pair, shuffle in ((train, True), (test, False))]
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        module = ClassifierModule(
            net=net or partial(resnet, depth=10, spatial_dims=spatial_dims),
            loss=ClassificationLoss, optimizer=partial(torch.optim.Adam, lr=lr), scheduler=None,
            label_names=list(class_names), task=task, in_channels=int(np.asarray(images).shape[1]), spatial_dims=spatial_dims,
        )
        trainer = pl.Trainer(max_epochs=epochs, devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
        trainer.fit(module, train_dataloaders=loaders[0])
        result = trainer.test(module, dataloaders=loaders[1], verbose=False)[0]
    return {f"{prefix}/{key}": float(result[f"test/{key}"]) for key in ("acc", "balanced_acc", "auc")}


def train_on_synthetic_test_on_real(
    store: SyntheticStore | str | os.PathLike[str],
    real_test: tuple[np.ndarray, np.ndarray],
    **kwargs: Any,
) -> dict[str, float]:
    """TSTR: a classifier trained on the synthetic store alone, scored on real images.

    Args:
        store: a synthetic store (or its folder).
        real_test: (images, labels) of real data the GAN did not train on (e.g. the test split).
        kwargs: :func:`fit_and_test` options (``net``, ``epochs``, ``batch_size``, ``lr``, ``seed``).

    Returns:
        ``tstr/acc``, ``tstr/balanced_acc``, ``tstr/auc``.
    """
    synth = store if isinstance(store, SyntheticStore) else read_store(store)
    return fit_and_test((synth.images, synth.labels), real_test, synth.class_names, "tstr", **kwargs)


def real_arrays(datamodule: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split of a classification DataModule in model-input space (its ``load`` transforms, no augmentation).

    Returns:
        ``(images (N, C, *spatial) float32, labels (N,) int64)``.
    """
    if not hasattr(datamodule, "dataset"):
        raise MedvisionError(f"{type(datamodule).__name__} has no dataset(split) method",
                             fix="use a classification DataModule (data=medmnist, data=dicom_modality, ...)")
    from medvision.models.base import plain

    dataset = datamodule.dataset(split, train=False)
    samples = [dataset[i] for i in range(len(dataset))]
    images = np.stack([np.asarray(plain(torch.as_tensor(s["image"])), dtype=np.float32) for s in samples])
    labels = np.asarray([int(np.asarray(s["label"]).reshape(-1)[0]) for s in samples], dtype=np.int64)
    return images, labels


def gan_quality(
    store: SyntheticStore | str | os.PathLike[str],
    real: tuple[np.ndarray, np.ndarray],
    classifier: FeatureSource,
    real_test: tuple[np.ndarray, np.ndarray] | None = None,
    k: int = 3,
    reference: bool = True,
    tstr: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Every quality measure of a synthetic store against real data, in one dictionary.

    Args:
        store: the synthetic store (or its folder).
        real: (images, labels) of real data to compare with (e.g. the GAN's training split).
        classifier: a medvision classifier trained on the same real data (checkpoint path or
            module): its features and its predictions.
        real_test: real (images, labels) the GAN never saw, for TSTR (``None``: no TSTR).
        k: neighbour of the precision/recall radii.
        reference: with ``real_test``, also train the same classifier on ``real`` (TRTR), the
            figure TSTR is read against.
        tstr: :func:`fit_and_test` options for TSTR and TRTR (``epochs``, ``net``, ...).

    Returns:
        ``fd``, ``precision``, ``recall``, ``agreement`` and per class ``fd/<c>``,
        ``precision/<c>``, ``recall/<c>``, ``agreement/<c>``; ``tstr/*`` (and ``trtr/*``) with
        ``real_test``; ``n_real``, ``n_synthetic``.
    """
    synth = store if isinstance(store, SyntheticStore) else read_store(store)
    module = module_from_checkpoint(classifier) if isinstance(classifier, (str, os.PathLike)) else classifier
    real_images, real_labels = np.asarray(real[0]), np.asarray(real[1]).reshape(-1)
    if tuple(real_images.shape[1:]) != tuple(synth.images.shape[1:]):
        raise MedvisionError(f"real images {list(real_images.shape[1:])} and synthetic {list(synth.images.shape[1:])} "
                             f"({synth.path}) differ in shape", fix="compare the store with the data its GAN was trained on")
    f_real, f_fake = features(module, real_images), features(module, synth.images)
    out: dict[str, float] = {"n_real": float(len(real_labels)), "n_synthetic": float(len(synth))}
    out["fd"] = frechet_distance(f_real, f_fake)
    out.update(knn_precision_recall(f_real, f_fake, k))
    for c, name in enumerate(synth.class_names):
        r, f = f_real[real_labels == c], f_fake[synth.labels == c]
        if min(len(r), len(f)) > k:
            out[f"fd/{_safe(name)}"] = frechet_distance(r, f)
            pr = knn_precision_recall(r, f, k)
            out[f"precision/{_safe(name)}"], out[f"recall/{_safe(name)}"] = pr["precision"], pr["recall"]
    out.update(class_agreement(module, synth.images, synth.labels, synth.class_names))
    if real_test is not None:
        options = dict(tstr or {})
        out.update(train_on_synthetic_test_on_real(synth, real_test, **options))
        if reference:
            out.update(fit_and_test((real_images, real_labels), real_test, synth.class_names, "trtr", **options))
    return out


__all__ = [
    "PenultimateFeatures", "class_agreement", "feature_extractor", "features", "fit_and_test", "frechet_distance",
    "gan_quality", "knn_precision_recall", "module_from_checkpoint", "predict_classes", "real_arrays",
    "train_on_synthetic_test_on_real",
]
