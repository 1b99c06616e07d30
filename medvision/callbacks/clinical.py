"""What an image + clinical classifier is read beside: single-input baselines and the clinical columns' importance.

- :class:`ClinicalBaselines`: at the end of testing, baselines fit on the training split and
  scored on the test split with the network's own AUC code: scikit-learn logistic regression on
  the clinical vector (``baseline/clinical_lr/test_auc``), the fusion classifier's clinical MLP
  alone (``baseline/clinical_mlp/test_auc``) and a logistic regression on the average-pooled image
  pixels (``baseline/image_lr/test_auc``); a table beside the network's ``test/auc``.
- :class:`ClinicalImportance`: permutation importance of each clinical column on the test split
  (:func:`medvision.metrics.importance.permutation_importance`): the drop in test AUC when the
  column's features are shuffled across the test cases; a table, ``clinical_importance.json`` and
  a bar chart in the run folder, ``importance/<column>`` in the metrics.

Both read the DataModule through what it offers (``clinical_arrays``, ``deterministic_dataset``)
and the module through its attributes (``clinical_columns``, ``net.image_features``/``fuse``),
so they import nothing of ``medvision.data``. Every DDP rank computes the same numbers (the
whole split); rank zero prints and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from medvision.metrics.classification import ClassificationMetrics
from medvision.utils.names import safe_name


def auc_of(probabilities: np.ndarray, labels: np.ndarray, task: str, label_names: Sequence[str]) -> float:
    """Test AUC of class probabilities, by the network's own metric code (:mod:`medvision.metrics.classification`)."""
    metrics = ClassificationMetrics(task, label_names)
    p = torch.as_tensor(np.asarray(probabilities, dtype=np.float32))
    metrics.update(torch.log(p.clamp_min(1e-12)), torch.as_tensor(np.asarray(labels)).long())
    return float(metrics.compute("x")["x/auc"])


def _task(pl_module: pl.LightningModule) -> tuple[str, list[str]]:
    names = list(getattr(pl_module, "label_names", []))
    return str(getattr(pl_module, "task", "binary" if len(names) == 2 else "multiclass")), names


def _rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for k, column in enumerate(columns):
        table.add_column(column, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


class _OnClinical(torch.nn.Module):
    """A clinical-only :class:`~medvision.models.nets.fusion.FusionNet` called as ``net(x)``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(None, x)


class ClinicalBaselines(pl.Callback):
    """Single-input baselines fit on the training split, scored on the test split beside the network.

    Args:
        clinical_lr: the logistic regression on the clinical vector.
        clinical_mlp: the fusion classifier's clinical MLP and head alone, full-batch Adam.
        image_lr: the logistic regression on average-pooled image pixels.
        mlp_steps: optimiser steps of the clinical MLP (the step best on validation is kept).
        image_side: the image baseline pools each image to at most this many pixels per axis.
        seed: seed of the baselines (their randomness never touches the run's).
    """

    def __init__(
        self,
        clinical_lr: bool = True,
        clinical_mlp: bool = True,
        image_lr: bool = True,
        mlp_steps: int = 300,
        image_side: int = 16,
        seed: int = 0,
    ) -> None:
        self.clinical_lr, self.clinical_mlp, self.image_lr = clinical_lr, clinical_mlp, image_lr
        self.mlp_steps = mlp_steps
        self.image_side = image_side
        self.seed = seed
        #: baseline name -> test AUC of the last test
        self.results: dict[str, float] = {}

    def _clinical_mlp(self, pl_module: pl.LightningModule, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
        """Test probabilities of the fusion classifier's clinical MLP and head, trained alone."""
        from medvision.baselines.tabular import probabilities, train_full_batch
        from medvision.models.nets.fusion import FusionNet

        hp = pl_module.hparams

        def make() -> torch.nn.Module:
            return _OnClinical(
                FusionNet(
                    None,
                    in_channels=1,
                    out_channels=len(pl_module.label_names),
                    clinical_features=arrays["train"][0].shape[1],
                    inputs="clinical",
                    clinical_hidden=int(hp.get("clinical_hidden", 32)),
                    head_hidden=int(hp.get("head_hidden", 64)),
                    dropout=float(hp.get("dropout", 0.1)),
                )
            )

        net = train_full_batch(make, *arrays["train"], *arrays["val"], steps=self.mlp_steps, seed=self.seed)
        return probabilities(net, arrays["test"][0])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from medvision.baselines.tabular import logistic_regression, pooled_pixels

        dm = trainer.datamodule
        task, names = _task(pl_module)
        self.results = {}
        n = len(names)
        if hasattr(dm, "clinical_arrays") and (self.clinical_lr or self.clinical_mlp):
            arrays = {split: dm.clinical_arrays(split) for split in ("train", "val", "test")}
            (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
            if x_train.shape[1] and len(y_test):
                if self.clinical_lr:
                    scores = logistic_regression(x_train, y_train, x_test, n, seed=self.seed)
                    self.results["clinical_lr"] = auc_of(scores, y_test, task, names)
                if self.clinical_mlp:
                    self.results["clinical_mlp"] = auc_of(self._clinical_mlp(pl_module, arrays), y_test, task, names)
        if self.image_lr:
            data = {}
            for split in ("train", "test"):
                samples = list(dm.deterministic_dataset(split))
                images = [np.asarray(s["image"]) for s in samples]
                labels = np.array([int(np.asarray(s["label"]).reshape(-1)[0]) for s in samples])
                data[split] = (pooled_pixels(images, self.image_side), labels)
            if len(data["test"][1]):
                scores = logistic_regression(*data["train"], data["test"][0], n, seed=self.seed)
                self.results["image_lr"] = auc_of(scores, data["test"][1], task, names)
        if self.results:
            pl_module.log_dict({f"baseline/{name}/test_auc": value for name, value in self.results.items()})

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.results:
            return
        network = trainer.callback_metrics.get("test/auc")
        inputs = getattr(pl_module, "hparams", {}).get("inputs", "image")
        described = {
            "clinical_lr": "logistic regression, clinical vector (scikit-learn)",
            "clinical_mlp": "clinical MLP alone",
            "image_lr": f"logistic regression, image pixels pooled to <= {self.image_side}/axis",
        }
        rows = [[f"network (model.inputs={inputs})", "" if network is None else f"{float(network):.4f}"]]
        rows += [[described[name], f"{value:.4f}"] for name, value in self.results.items()]
        _rich_table(
            "test AUC: network vs baselines (fit on the training split, same test split)", ["model", "AUC"], rows
        )


class ClinicalImportance(pl.Callback):
    """Permutation importance of each clinical column on the test split (drop in test AUC).

    Args:
        output_dir: the run folder (``clinical_importance.json`` and ``clinical_importance.png`` go there).
        repeats: shuffles per column.
        seed: seed of the shuffles.
        plot: also draw the bar chart (matplotlib).
        batch_size: test cases per forward pass of the image encoder.
    """

    def __init__(
        self, output_dir: str, repeats: int = 5, seed: int = 0, plot: bool = True, batch_size: int = 64
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, not {repeats}")
        self.output_dir = Path(output_dir)
        self.repeats, self.seed, self.plot, self.batch_size = repeats, seed, plot, batch_size
        #: the last result: ``{"test_auc", "repeats", "seed", "columns": {column: {mean, std, drops}}}``
        self.result: dict[str, Any] | None = None

    def _cached(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Any, np.ndarray, np.ndarray]:
        """Image features (computed once), clinical vectors and labels of every test case."""
        from monai.data import DataLoader

        from medvision.models.base import plain

        net = pl_module.net
        features, clinical, labels = [], [], []
        loader = DataLoader(trainer.datamodule.deterministic_dataset("test"), batch_size=self.batch_size)
        with torch.no_grad():
            for batch in loader:
                image = plain(batch["image"]).to(pl_module.device).float()
                found = net.image_features(image)
                if found is not None:
                    features.append(found)
                clinical.append(np.asarray(plain(torch.as_tensor(batch["clinical"])).cpu(), dtype=np.float32))
                labels.append(np.asarray(plain(torch.as_tensor(batch["label"])).cpu()).reshape(-1))
        cached = torch.cat(features) if features else None
        return cached, np.concatenate(clinical), np.concatenate(labels).astype(np.int64)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from medvision.metrics.importance import permutation_importance

        net = getattr(pl_module, "net", None)
        columns = getattr(pl_module, "clinical_columns", None)
        self.result = None
        if not columns or not getattr(net, "uses_clinical", False):
            return  # no clinical branch: nothing to permute
        task, names = _task(pl_module)
        was_training = net.training
        net.eval()
        features, x, y = self._cached(trainer, pl_module)
        if not len(y):
            return

        def score(clinical: np.ndarray) -> float:
            with torch.no_grad():
                logits = net.fuse(features, torch.as_tensor(clinical).to(pl_module.device))
            return auc_of(torch.softmax(logits.float(), 1).cpu().numpy(), y, task, names)

        baseline, drops = permutation_importance(score, x, columns, self.repeats, self.seed)
        net.train(was_training)
        self.result = {"test_auc": baseline, "repeats": self.repeats, "seed": self.seed, "columns": drops}
        pl_module.log_dict({f"importance/{safe_name(c)}": float(v["mean"]) for c, v in drops.items()})

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self.result is None:
            return
        from medvision.utils.io import atomic_write_json

        columns = self.result["columns"]
        order = sorted(columns, key=lambda c: -float(columns[c]["mean"]))
        self.result["ranking"] = order
        atomic_write_json(self.output_dir / "clinical_importance.json", self.result)
        rows = [[c, f"{columns[c]['mean']:+.4f}", f"{columns[c]['std']:.4f}"] for c in order]
        _rich_table(
            f"clinical columns: drop in test AUC when shuffled (test AUC {self.result['test_auc']:.4f}, "
            f"{self.repeats} shuffles, seed {self.seed})",
            ["column", "AUC drop", "std"],
            rows,
        )
        if self.plot:
            self._bar_chart(order, columns)

    def _bar_chart(self, order: list[str], columns: dict[str, Any]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from medvision.utils.io import atomic_output

        fig, ax = plt.subplots(figsize=(5, 0.5 + 0.4 * len(order)))
        means = [float(columns[c]["mean"]) for c in order][::-1]
        stds = [float(columns[c]["std"]) for c in order][::-1]
        ax.barh(order[::-1], means, xerr=stds, color="tab:blue")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("drop in test AUC when shuffled")
        ax.set_title("clinical permutation importance")
        fig.tight_layout()
        with atomic_output(self.output_dir / "clinical_importance.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
