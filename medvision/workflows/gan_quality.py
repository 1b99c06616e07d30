"""How good is a synthetic store? The measures of :mod:`medvision.metrics.generative` in the
features of a medvision classifier trained on the same data (a ``ClassifierModule`` checkpoint of
``medvision-train model=classifier``), plus:

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
from medvision.metrics.generative import class_agreement, features, frechet_distance, knn_precision_recall
from medvision.utils.errors import MedvisionError
from medvision.utils.names import safe_name

FeatureSource = str | os.PathLike[str] | nn.Module


def _module(classifier: FeatureSource) -> nn.Module:
    """A classifier given as a checkpoint path or a module, as a module."""
    from medvision.models.loading import module_from_checkpoint

    return module_from_checkpoint(classifier)[0] if isinstance(classifier, (str, os.PathLike)) else classifier


def _samples(images: np.ndarray, labels: np.ndarray) -> list[dict[str, torch.Tensor]]:
    """``{"image", "label"}`` samples of model-input-space arrays (what ``ClassifierModule`` takes)."""
    images, labels = np.asarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64).reshape(-1)
    return [{"image": torch.from_numpy(x), "label": torch.tensor(y)} for x, y in zip(images, labels, strict=False)]


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

    images, _labels = train
    spatial_dims = np.asarray(images).ndim - 2
    task = "binary" if len(class_names) == 2 else "multiclass"
    loaders = [
        torch.utils.data.DataLoader(_samples(*pair), batch_size=batch_size, shuffle=shuffle)
        for pair, shuffle in ((train, True), (test, False))
    ]
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        module = ClassifierModule(
            net=net or partial(resnet, depth=10, spatial_dims=spatial_dims),
            loss=ClassificationLoss,
            optimizer=partial(torch.optim.Adam, lr=lr),
            scheduler=None,
            label_names=list(class_names),
            task=task,
            in_channels=int(np.asarray(images).shape[1]),
            spatial_dims=spatial_dims,
        )
        trainer = pl.Trainer(
            max_epochs=epochs,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
        )
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
        raise MedvisionError(
            f"{type(datamodule).__name__} has no dataset(split) method",
            fix="use a classification DataModule (data=medmnist, data=dicom_modality, ...)",
        )
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
    module = _module(classifier)
    real_images, real_labels = np.asarray(real[0]), np.asarray(real[1]).reshape(-1)
    if tuple(real_images.shape[1:]) != tuple(synth.images.shape[1:]):
        raise MedvisionError(
            f"real images {list(real_images.shape[1:])} and synthetic {list(synth.images.shape[1:])} "
            f"({synth.path}) differ in shape",
            fix="compare the store with the data its GAN was trained on",
        )
    f_real, f_fake = features(module, real_images), features(module, synth.images)
    out: dict[str, float] = {"n_real": float(len(real_labels)), "n_synthetic": float(len(synth))}
    out["fd"] = frechet_distance(f_real, f_fake)
    out.update(knn_precision_recall(f_real, f_fake, k))
    for c, name in enumerate(synth.class_names):
        r, f = f_real[real_labels == c], f_fake[synth.labels == c]
        if min(len(r), len(f)) > k:
            out[f"fd/{safe_name(name)}"] = frechet_distance(r, f)
            pr = knn_precision_recall(r, f, k)
            out[f"precision/{safe_name(name)}"], out[f"recall/{safe_name(name)}"] = pr["precision"], pr["recall"]
    out.update(class_agreement(module, synth.images, synth.labels, synth.class_names))
    if real_test is not None:
        options = dict(tstr or {})
        out.update(train_on_synthetic_test_on_real(synth, real_test, **options))
        if reference:
            out.update(fit_and_test((real_images, real_labels), real_test, synth.class_names, "trtr", **options))
    return out


__all__ = ["fit_and_test", "gan_quality", "real_arrays", "train_on_synthetic_test_on_real"]
