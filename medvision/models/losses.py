"""Classification losses chosen by name, with the data's task filled in by the module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from medvision.metrics.classification import TASKS

Task = Literal["binary", "multiclass", "multilabel"]


class ClassificationLoss(nn.Module):
    """Cross-entropy, BCE-with-logits or focal loss for a classification task.

    Binary tasks are two-class softmax problems (as in MedMNIST: two logits, the positive
    class's probability is the score); multi-label tasks use one sigmoid per label.

    Args:
        task: ``binary``, ``multiclass`` or ``multilabel`` (from the data).
        num_classes: number of logits (classes, or labels).
        kind: ``auto`` (cross-entropy, or BCE for multi-label), ``ce``, ``bce`` or ``focal``
            (MONAI ``FocalLoss``: softmax for single-label tasks, sigmoid for multi-label).
        label_smoothing: epsilon of label smoothing (``ce``: torch's; ``bce``: targets moved
            to ``eps/2`` and ``1 - eps/2``; not used by ``focal``).
        class_weights: one weight per class/label (``None``: equal weights). For BCE they
            weight the positive term of each label (``pos_weight``).
        gamma: focusing parameter of the focal loss.
    """

    def __init__(
        self,
        task: Task,
        num_classes: int,
        kind: Literal["auto", "ce", "bce", "focal"] = "auto",
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        if kind == "auto":
            kind = "bce" if task == "multilabel" else "ce"
        if kind == "ce" and task == "multilabel":
            raise ValueError("cross-entropy needs one label per sample; use kind=bce or focal for multi-label")
        if kind == "bce" and task != "multilabel":
            raise ValueError("kind=bce is for multi-label tasks; binary tasks here are two-class softmax (kind=ce)")
        if kind not in ("ce", "bce", "focal"):
            raise ValueError(f"loss kind must be auto, ce, bce or focal, not {kind!r}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"{len(class_weights)} class weights for {num_classes} classes")
        self.task, self.kind, self.label_smoothing = task, kind, float(label_smoothing)
        weight = torch.as_tensor(list(class_weights), dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("weight", weight, persistent=False)
        if kind == "focal":
            from monai.losses import FocalLoss

            single = task != "multilabel"
            self.focal = FocalLoss(gamma=gamma, weight=weight, use_softmax=single, to_onehot_y=single)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, C) against ``target``: class indices (B,) or multi-hot (B, L)."""
        if self.kind == "ce":
            return nn.functional.cross_entropy(
                logits, target.long(), weight=self.weight, label_smoothing=self.label_smoothing
            )
        if self.kind == "bce":
            target = target.float()
            if self.label_smoothing:
                target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
            return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=self.weight)
        if self.task == "multilabel":
            return self.focal(logits, target.float())
        return self.focal(logits, target.long().reshape(-1, 1))
