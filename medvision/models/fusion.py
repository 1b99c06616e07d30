"""``FusionClassifierModule``: classify a case from its image(s) and its clinical record.

A :class:`~medvision.models.classifier.ClassifierModule` (same loss, metrics, logged names,
test table and prediction scores) whose network is a
:class:`~medvision.models.nets.fusion.FusionNet`: the ``model.net`` choice
(``conf/model/net/cls/*``) is the image encoder; the clinical vector (``batch["clinical"]``,
encoded by the DataModule with training-split statistics) goes through an MLP; ``model.fusion``
joins them (``concat`` | ``film``), ``model.modality_fusion`` combines several image modalities
(``early``: channels | ``late``: one encoder each), and ``model.inputs`` (``both`` | ``image`` |
``clinical``) trains the single-input baselines with the same code.

The fitted clinical encoding (``clinical``: means, standard deviations, categories, feature
names) comes from the data (``datamodule.model_kwargs()``) and is saved in the checkpoint's
hyperparameters, so prediction encodes new cases with the training statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medvision.models.base import plain as _plain
from medvision.models.classifier import ClassifierModule
from medvision.models.nets.fusion import Fusion, FusionNet, Inputs, ModalityFusion
from medvision.utils.errors import MedvisionError


class FusionClassifierModule(ClassifierModule):
    """Image + clinical-record classification (binary or multi-class).

    Args:
        net: factory of the image network (``net(in_channels=, out_channels=)``); its last linear
            layer is dropped and its pooled features are the image branch.
        loss, optimizer, scheduler, label_names, task, in_channels, spatial_dims,
            scheduler_interval, monitor: as :class:`~medvision.models.classifier.ClassifierModule`.
        clinical: the data's fitted clinical encoding (``ClinicalEncoder.to_dict()``: ``features``,
            ``columns``, statistics); ``None``: the data has no clinical columns.
        inputs: ``both`` (fusion), ``image`` (image only) or ``clinical`` (the clinical MLP only).
        fusion: ``concat`` or ``film``.
        modality_fusion: ``early`` or ``late``.
        clinical_hidden: width of the clinical MLP.
        head_hidden: width of the head's hidden layer.
        dropout: dropout of the clinical MLP and the head.
    """

    #: batch keys the network takes besides the image (Grad-CAM feeds them too)
    extra_inputs: tuple[str, ...] = ("clinical",)

    def __init__(
        self,
        net: Callable[..., nn.Module],
        loss: Callable[..., nn.Module] | nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        label_names: Sequence[str],
        task: str = "binary",
        in_channels: int = 1,
        spatial_dims: int = 2,
        clinical: Mapping[str, Any] | None = None,
        inputs: Inputs = "both",
        fusion: Fusion = "concat",
        modality_fusion: ModalityFusion = "early",
        clinical_hidden: int = 32,
        head_hidden: int = 64,
        dropout: float = 0.1,
        scheduler_interval: str = "epoch",
        monitor: str = "val/auc",
    ) -> None:
        features = len((clinical or {}).get("features") or [])
        if inputs != "image" and features == 0:
            raise MedvisionError(
                f"model.inputs={inputs} needs clinical columns, but the data declares none",
                fix="declare them (data.clinical.numeric=[...] / data.clinical.categorical=[...]) or set "
                "model.inputs=image",
            )
        for key, value, choices in (
            ("model.inputs", inputs, ("both", "image", "clinical")),
            ("model.fusion", fusion, ("concat", "film")),
            ("model.modality_fusion", modality_fusion, ("early", "late")),
        ):
            if value not in choices:
                raise MedvisionError(f"{key}={value!r} is not one of {list(choices)}", fix=f"{key}={choices[0]}")
        build = functools.partial(
            FusionNet,
            net if inputs != "clinical" else None,
            clinical_features=features,
            inputs=inputs,
            fusion=fusion,
            modality_fusion=modality_fusion,
            clinical_hidden=clinical_hidden,
            head_hidden=head_hidden,
            dropout=dropout,
        )
        super().__init__(
            build,
            loss,
            optimizer,
            scheduler,
            label_names,
            task=task,
            in_channels=in_channels,
            spatial_dims=spatial_dims,
            scheduler_interval=scheduler_interval,
            monitor=monitor,
        )
        if task == "multilabel":
            raise MedvisionError("the fusion classifier is binary or multi-class", fix="use model=classifier")
        #: the fitted clinical encoding (also in ``hparams``), or ``None``
        self.clinical = dict(clinical) if clinical else None

    def forward(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Logits (B, C) of an image batch and its clinical vectors (B, F)."""
        return self.net(x, clinical)

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits of a batch: ``image`` and ``clinical``."""
        clinical = batch.get("clinical")
        return self(_plain(batch["image"]), None if clinical is None else _plain(torch.as_tensor(clinical)).float())

    @property
    def clinical_features(self) -> list[str]:
        """The name of each feature of the clinical vector (``age``, ``age:missing``, ``sex=F``, ...)."""
        return list((self.clinical or {}).get("features") or [])

    @property
    def clinical_columns(self) -> dict[str, list[int]]:
        """Clinical column -> its features' indices in the vector."""
        return {str(k): [int(i) for i in v] for k, v in ((self.clinical or {}).get("columns") or {}).items()}
