"""Classification metrics (torchmetrics), named by the dataset's labels.

``acc`` and ``auc`` are MedMNIST's ACC and AUC exactly as the benchmark defines them in its
evaluator (``medmnist/evaluator.py``, functions ``getACC`` and ``getAUC``, github.com/MedMNIST/
MedMNIST; MedMNIST v2, Yang et al., Scientific Data 10:41, 2023):

- binary: the score is the positive (last) class's probability; ACC = accuracy of
  ``score > 0.5``; AUC = ROC AUC of the score.
- multi-class (and RetinaMNIST's ordinal regression): ACC = accuracy of the arg-max;
  AUC = unweighted mean over classes of the one-vs-rest ROC AUC of each class's probability.
- multi-label: ACC = mean over labels of the accuracy of ``sigmoid >= 0.5``; AUC = unweighted
  mean over labels of each label's ROC AUC.

The torchmetrics objects below compute exactly these (``tests/test_classification_units.py``
checks them against a direct transcription of the definitions with scikit-learn). One corner
differs: torchmetrics thresholds multi-label scores with ``>`` where MedMNIST uses ``>=``, which
matters only for a probability of exactly 0.5.

The other metrics: F1, precision, recall (sensitivity) and specificity (binary: of the
positive class; otherwise macro averages), balanced accuracy (macro recall), per-class recall
(``recall_<label>``, single-label tasks) and AUROC (``auc_<label>``), and the confusion matrix
(kept, not logged as a scalar).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics import classification as tmc

from medvision.utils.names import safe_name

#: the classification tasks medvision knows (the DataModules' ``task``)
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")


def _collection(task: str, n: int) -> dict[str, Metric]:
    if task == "binary":
        return {
            "acc": tmc.BinaryAccuracy(threshold=0.5),
            "auc": tmc.BinaryAUROC(),
            "f1": tmc.BinaryF1Score(),
            "precision": tmc.BinaryPrecision(),
            "recall": tmc.BinaryRecall(),
            "specificity": tmc.BinarySpecificity(),
        }
    if task == "multiclass":
        return {
            "acc": tmc.MulticlassAccuracy(n, average="micro"),
            "auc": tmc.MulticlassAUROC(n, average="macro"),
            "f1": tmc.MulticlassF1Score(n, average="macro"),
            "precision": tmc.MulticlassPrecision(n, average="macro"),
            "recall": tmc.MulticlassRecall(n, average="macro"),
            "specificity": tmc.MulticlassSpecificity(n, average="macro"),
        }
    return {
        "acc": tmc.MultilabelAccuracy(n, average="macro", threshold=0.5),
        "auc": tmc.MultilabelAUROC(n, average="macro"),
        "f1": tmc.MultilabelF1Score(n, average="macro"),
        "precision": tmc.MultilabelPrecision(n, average="macro"),
        "recall": tmc.MultilabelRecall(n, average="macro"),
        "specificity": tmc.MultilabelSpecificity(n, average="macro"),
    }


class ClassificationMetrics(torch.nn.Module):
    """Accumulates scores and targets over an epoch; torchmetrics syncs them across DDP ranks.

    Args:
        task: ``binary``, ``multiclass`` or ``multilabel``.
        label_names: one name per class (binary: negative first) or per label.
    """

    def __init__(self, task: str, label_names: Sequence[str]) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        self.task = task
        self.label_names = list(label_names)
        n = len(self.label_names)
        if task == "binary" and n != 2:
            raise ValueError(f"a binary task has two classes (negative, positive), got {self.label_names}")
        self.scalars = MetricCollection(_collection(task, n))
        if task == "multilabel":
            self.per_class_auc = tmc.MultilabelAUROC(n, average=None)
            self.confusion = tmc.MultilabelConfusionMatrix(n)
        else:
            self.per_class_auc = tmc.MulticlassAUROC(n, average=None)
            self.confusion = tmc.MulticlassConfusionMatrix(n)
        if task != "multilabel":
            # balanced accuracy = mean of per-class recall (binary: (sensitivity + specificity) / 2)
            self.balanced_acc = tmc.MulticlassRecall(n, average="macro")
            # recall of each class (e.g. the minority class of an imbalanced task)
            self.per_class_recall = tmc.MulticlassRecall(n, average=None)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities: softmax over classes, or a sigmoid per label (multi-label)."""
        return torch.sigmoid(logits) if self.task == "multilabel" else torch.softmax(logits, dim=1)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, C), ``target`` class indices (B,) or multi-hot (B, L)."""
        probs = self.scores(logits.detach().float())
        if self.task == "multilabel":
            target = target.long()
            self.scalars.update(probs, target)
            self.per_class_auc.update(probs, target)
            self.confusion.update(probs, target)
            return
        target = target.long().reshape(-1)
        self.scalars.update(probs[:, 1] if self.task == "binary" else probs, target)
        self.per_class_auc.update(probs, target)
        self.confusion.update(probs, target)
        self.balanced_acc.update(probs, target)
        self.per_class_recall.update(probs, target)

    def compute(self, prefix: str) -> dict[str, float]:
        """``{prefix}/acc``, ``/auc``, ``/f1``, ``/precision``, ``/recall``, ``/specificity``,
        ``/balanced_acc`` and ``{prefix}/recall_<label>`` per class (single-label tasks), and
        ``{prefix}/auc_<label>`` per class."""
        out = {f"{prefix}/{k}": float(v) for k, v in self.scalars.compute().items()}
        if self.task != "multilabel":
            out[f"{prefix}/balanced_acc"] = float(self.balanced_acc.compute())
            for name, value in zip(self.label_names, self.per_class_recall.compute().tolist(), strict=True):
                out[f"{prefix}/recall_{safe_name(name)}"] = float(value)
        for name, value in zip(self.label_names, self.per_class_auc.compute().tolist(), strict=True):
            out[f"{prefix}/auc_{safe_name(name)}"] = float(value)
        return out

    def confusion_matrix(self) -> torch.Tensor:
        """The epoch's confusion matrix: (C, C) rows = truth, or (L, 2, 2) per label."""
        return self.confusion.compute()

    def reset(self) -> None:
        """Forget the epoch (once per epoch)."""
        self.scalars.reset()
        self.per_class_auc.reset()
        self.confusion.reset()
        if self.task != "multilabel":
            self.balanced_acc.reset()
            self.per_class_recall.reset()
