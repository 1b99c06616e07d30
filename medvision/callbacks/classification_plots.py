"""Confusion matrix and ROC curves of a classifier, during validation and at test.

Both pictures are drawn from what the classifier's metrics already hold, nothing is recomputed
another way:

- the confusion matrix is ``ClassifierModule.confusion_matrices[stage]``, the torchmetrics
  matrix of the epoch (rows: true class, columns: predicted class; multi-label: one 2x2 matrix
  per label);
- the ROC curves come from the scores and targets accumulated by the metric that logs
  ``<stage>/auc_<label>`` (``ClassificationMetrics.per_class_auc``), gathered across DDP ranks,
  through torchmetrics' ``multiclass_roc`` / ``multilabel_roc``; the area printed beside each
  curve is the trapezoid area under it, which is how that metric computes ``auc_<label>``.
  Multi-class: one-vs-rest per class; binary: the positive class; multi-label: per label.

Outputs (global rank 0 only), always: PNG files ``confusion_<tag>.png`` and ``roc_<tag>.png``
in ``<output_dir>/<folder>/`` (tag: ``val_epoch0009`` (0-based, as in ``metrics.csv``) or
``test``); with ``logger=tensorboard``: images ``confusion/<stage>/00`` and ``roc/<stage>/00``;
with ``logger=wandb``: images under the keys ``confusion/<stage>`` and ``roc/<stage>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from medvision.callbacks.images import EpochSchedule, figure_to_array, save_pictures

#: one ROC curve: (name, false-positive rates, true-positive rates, area under the curve)
Curve = tuple[str, np.ndarray, np.ndarray, float]


def roc_curves(metrics: Any) -> list[Curve]:
    """ROC curves from a :class:`medvision.metrics.classification.ClassificationMetrics` mid-epoch.

    Reads the scores and targets its per-class AUROC metric has accumulated (synced across
    DDP ranks: call it on every rank). Binary tasks give the positive class's curve only.

    Args:
        metrics: the module's ``val_metrics`` or ``test_metrics`` before they are reset.

    Returns:
        One :data:`Curve` per class or label; empty when the epoch saw no sample.
    """
    from torchmetrics.functional.classification import multiclass_roc, multilabel_roc
    from torchmetrics.utilities import dim_zero_cat

    metric = metrics.per_class_auc
    names = list(metrics.label_names)
    with metric.sync_context():
        if isinstance(metric.preds, list) and not metric.preds:
            return []
        preds, target = dim_zero_cat(metric.preds).float(), dim_zero_cat(metric.target).long()
    if metrics.task == "multilabel":
        fprs, tprs, _ = multilabel_roc(preds, target, num_labels=len(names))
    else:
        fprs, tprs, _ = multiclass_roc(preds, target, num_classes=len(names))
    curves = [
        (name, fpr.cpu().numpy(), tpr.cpu().numpy(), float(torch.trapezoid(tpr, fpr)))
        for name, fpr, tpr in zip(names, fprs, tprs, strict=True)
    ]
    return curves[-1:] if metrics.task == "binary" else curves


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def confusion_picture(matrix: np.ndarray, label_names: Sequence[str], title: str) -> np.ndarray:
    """Draw a confusion matrix: counts in each cell, colour = fraction of the true class's row.

    Args:
        matrix: (C, C) counts, rows = true class, columns = predicted class; or (L, 2, 2) per
            label of a multi-label task (rows/columns: 0 = absent, 1 = present).
        label_names: the class (or label) names.
        title: the figure's title.

    Returns:
        RGB ``uint8`` array.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim == 3:  # multi-label: one 2x2 matrix per label
        cols = min(4, len(matrix))
        rows = -(-len(matrix) // cols)
        fig = _figure(2.4 * cols + 0.4, 2.4 * rows + 0.6)
        axes = fig.subplots(rows, cols, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k < len(matrix):
                _matrix_axes(ax, matrix[k], ["absent", "present"], str(label_names[k]), small=True)
            else:
                ax.axis("off")
    else:
        side = 2.2 + 0.55 * len(matrix)
        fig = _figure(side + 0.8, side)
        _matrix_axes(fig.subplots(), matrix, [str(n) for n in label_names], None, small=False)
    fig.suptitle(title)
    return figure_to_array(fig)


def _matrix_axes(ax: Any, matrix: np.ndarray, names: list[str], title: str | None, small: bool) -> None:
    counts = matrix.astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(names))
    ax.set_xticks(
        ticks,
        names,
        rotation=45 if not small and len(names) > 3 else 0,
        ha="right" if not small and len(names) > 3 else "center",
    )
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            fontsize=8 if small or len(names) > 8 else 10,
            color="white" if fraction[i, j] > 0.5 else "black",
        )


def roc_picture(curves: Sequence[Curve], title: str) -> np.ndarray:
    """Draw ROC curves (one per class or label) with their areas in the legend.

    Returns:
        RGB ``uint8`` array.
    """
    fig = _figure(5.6, 4.8)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, linewidth=1.6, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7 if len(curves) > 6 else 8)
    ax.grid(alpha=0.3)
    return figure_to_array(fig)


class ClassificationPlots(pl.Callback):
    """Confusion matrix and ROC curves of the validation epochs and of the test.

    Applies to :class:`medvision.models.classifier.ClassifierModule` runs; does nothing for
    other modules (it is on by default in ``conf/callbacks/default.yaml``). Cost: two matplotlib
    figures per drawing (a fraction of a second).

    Args:
        output_dir: the run's folder (``${paths.output_dir}``).
        every_n_epochs: draw at the first validation at or after every multiple of this many
            epochs, and at the last epoch's validation; ``null``/``0``: never during validation.
        at_test: also draw the test's pictures.
        confusion: draw the confusion matrix.
        roc: draw the ROC curves.
        folder: sub-folder of ``output_dir`` for the PNGs.
    """

    def __init__(
        self,
        output_dir: str,
        every_n_epochs: int | None = 10,
        at_test: bool = True,
        confusion: bool = True,
        roc: bool = True,
        folder: str = "images",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.schedule = EpochSchedule(every_n_epochs)
        self.at_test = at_test
        self.confusion = confusion
        self.roc = roc
        self.folder = folder
        self._active = False
        self._curves: list[Curve] = []
        #: the PNGs written so far
        self.written: list[Path] = []

    @staticmethod
    def applies_to(pl_module: pl.LightningModule) -> bool:
        """Whether ``pl_module`` is a classifier (the only module this callback draws for)."""
        from medvision.models.classifier import ClassifierModule

        return isinstance(pl_module, ClassifierModule)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = self.applies_to(pl_module) and self.schedule.due(trainer)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = self.at_test and self.applies_to(pl_module)

    # Callbacks' epoch-end hooks run before the module's, which computes and resets the metrics:
    # the scores are read here (on every rank: gathering them is a collective), drawn at *_end.
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active:
            self._curves = roc_curves(pl_module.val_metrics) if self.roc else []
            self.schedule.drawn(trainer)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active:
            self._curves = roc_curves(pl_module.test_metrics) if self.roc else []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active and trainer.is_global_zero:
            self._draw(trainer, pl_module, "val", f"val_epoch{trainer.current_epoch:04d}")
        self._active = False

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active and trainer.is_global_zero:
            self._draw(trainer, pl_module, "test", "test")
        self._active = False

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, tag: str) -> None:
        names = list(pl_module.label_names)
        when = f"epoch {trainer.current_epoch}" if stage == "val" else "best checkpoint" if trainer.ckpt_path else ""
        heading = f"{stage} {when}".strip()
        folder = self.output_dir / self.folder
        matrix = pl_module.confusion_matrices.get(stage)
        if self.confusion and matrix is not None:
            picture = confusion_picture(matrix.numpy(), names, f"{heading}: confusion matrix")
            self.written += save_pictures(
                trainer, f"confusion/{stage}", [picture], [folder / f"confusion_{tag}.png"], captions=[heading]
            )
        if self.roc and self._curves:
            picture = roc_picture(self._curves, f"{heading}: ROC")
            self.written += save_pictures(
                trainer, f"roc/{stage}", [picture], [folder / f"roc_{tag}.png"], captions=[heading]
            )
        self._curves = []
