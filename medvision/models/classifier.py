"""``ClassifierModule``: binary, multi-class and multi-label classification of 2D/3D images.

It knows the classification problem and nothing about file formats. The network is any
factory taking ``in_channels`` and ``out_channels`` (``conf/model/net/cls/*.yaml``); the task,
label names and channels come from the data (``datamodule.model_kwargs()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medvision.metrics.classification import TASKS, ClassificationMetrics
from medvision.models.base import MedvisionModule
from medvision.models.base import plain as _plain


class ClassifierModule(MedvisionModule):
    """Image classification; metrics as torchmetrics objects, reset every epoch.

    Logged: ``train/loss``, ``{val,test}/loss`` and ``{val,test}/acc``, ``auc`` (MedMNIST's
    definitions), ``f1``, ``precision``, ``recall``, ``specificity``, ``balanced_acc``,
    ``auc_<label>``. The last confusion matrix of each stage is kept in
    :attr:`confusion_matrices` (``"val"``/``"test"``).

    Args:
        net: factory of the network, called as ``net(in_channels=..., out_channels=...)``.
        loss: factory of the loss, called with ``task`` and ``num_classes``
            (:class:`medvision.models.losses.ClassificationLoss`), or a ready ``nn.Module``.
        optimizer: partial optimizer, called with ``params``.
        scheduler: partial LR scheduler called with ``optimizer`` (or ``None``).
        label_names: one name per class (binary: negative first) or per label (from the data).
        task: ``binary``, ``multiclass`` or ``multilabel`` (from the data).
        in_channels: image channels (from the data).
        spatial_dims: 2 or 3 (from the data; recorded in the hyperparameters).
        scheduler_interval: ``epoch`` or ``step``.
        monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
    """

    #: the problem this module solves (:func:`medvision.models.loading.problem_of`)
    problem = "classification"

    def __init__(
        self,
        net: Callable[..., nn.Module],
        loss: Callable[..., nn.Module] | nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        label_names: Sequence[str],
        task: str = "multiclass",
        in_channels: int = 1,
        spatial_dims: int = 2,
        scheduler_interval: str = "epoch",
        monitor: str = "val/auc",
    ) -> None:
        super().__init__(optimizer, scheduler, scheduler_interval, monitor)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        self.save_hyperparameters(logger=False, ignore=["net", "loss", "optimizer", "scheduler"])
        self.task = task
        self.label_names = list(label_names)
        num_classes = len(self.label_names)
        self.net = net(in_channels=in_channels, out_channels=num_classes)
        self.loss_fn = loss if isinstance(loss, nn.Module) else loss(task=task, num_classes=num_classes)
        self.val_metrics = ClassificationMetrics(task, self.label_names)
        self.test_metrics = ClassificationMetrics(task, self.label_names)
        self.confusion_matrices: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of an image batch."""
        return self.net(x)

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits (B, C) of a batch (the steps call this; a module with more inputs than the image overrides it)."""
        return self(_plain(batch["image"]))

    def _target(self, batch: dict[str, Any]) -> torch.Tensor:
        label = _plain(batch["label"])
        return label.float() if self.task == "multilabel" else label.long().reshape(-1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        target = self._target(batch)
        loss = self.loss_fn(self.logits(batch), target)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=target.shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Any], metrics: ClassificationMetrics, prefix: str) -> torch.Tensor:
        """Log the loss, add the batch to ``metrics``; the logits."""
        target = self._target(batch)
        logits = self.logits(batch)
        self.log(f"{prefix}/loss", self.loss_fn(logits, target), batch_size=target.shape[0], sync_dist=True)
        metrics.update(logits, target)
        return logits

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self._evaluate(batch, self.test_metrics, "test")
        probabilities = self.test_metrics.scores(logits.detach().float()).cpu()
        target = self._target(batch).cpu()
        ids = batch.get("id")
        for b, p in enumerate(probabilities):
            row: dict[str, Any] = {"id": str(ids[b]) if ids is not None else f"sample_{len(self.test_cases)}"}
            if self.task == "multilabel":
                row["label"] = ";".join(n for n, t in zip(self.label_names, target[b].tolist(), strict=True) if t > 0.5)
                row["predicted"] = ";".join(n for n, q in zip(self.label_names, p.tolist(), strict=True) if q > 0.5)
            else:
                row["label"] = self.label_names[int(target[b])]
                row["predicted"] = self.label_names[int(p.argmax())]
            row.update({f"p_{name}": float(q) for name, q in zip(self.label_names, p.tolist(), strict=True)})
            self.test_cases.append(row)

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        """Class probabilities (softmax) or label probabilities (sigmoid)."""
        return self.val_metrics.scores(self.logits(batch))

    def _log_epoch(self, metrics: ClassificationMetrics, prefix: str) -> None:
        values = metrics.compute(prefix)  # syncs across ranks: called on every rank
        self.confusion_matrices[prefix] = metrics.confusion_matrix().cpu()
        metrics.reset()
        self.log(f"{prefix}/auc", values.pop(f"{prefix}/auc"), prog_bar=True)
        self.log(f"{prefix}/acc", values.pop(f"{prefix}/acc"), prog_bar=True)
        self.log_dict(values)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")
