"""The test split case by case: ``test_cases.csv`` in the run folder, a W&B Table, an MLflow artifact.

A researcher looks for the cases a model gets wrong. The module keeps one row per test case
(``pl_module.test_cases``: segmentation: case id, Dice and HD95 per class, and its middle slice;
classification: sample id, label, predicted class and the probabilities); this callback gathers
them over the DDP ranks when testing ends and

- writes ``<run dir>/test_cases.csv`` (atomically; every logger or none),
- logs a W&B Table ``test_cases`` when a W&B logger is on (segmentation: the middle slice as a
  W&B image with the label and the prediction as W&B masks, togglable in the W&B UI),
- logs the CSV as an artifact of the MLflow run when an MLflow logger is on.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from medvision.utils.io import atomic_write_text

#: the file (in the run folder) and the W&B table key
TEST_CASES = "test_cases"


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's rows on every rank (one process: ``rows`` itself), ordered by ``id``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    return sorted(rows, key=lambda r: str(r.get("id")))


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The table's columns: ``id`` first, then every other key in first-seen order (no pictures)."""
    names: dict[str, None] = {"id": None}
    for row in rows:
        names.update({k: None for k in row if k != "overlay"})
    return list(names)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV text (NaN written as ``nan``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_of(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class TestCaseTable(pl.Callback):
    """Write and log the test split case by case (see the module docstring).

    Args:
        output_dir: the run folder (``test_cases.csv`` goes there).
        wandb_images: put each segmentation case's middle slice with its masks into the W&B table.
    """

    __test__ = False  # a callback, not a pytest test class

    def __init__(self, output_dir: str | Path, wandb_images: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.wandb_images = wandb_images

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = gather_rows(list(getattr(pl_module, "test_cases", []) or []))
        if not trainer.is_global_zero or not rows:
            return
        path = atomic_write_text(self.output_dir / f"{TEST_CASES}.csv", csv_text(rows))
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "WandbLogger":
                self._log_wandb(logger, rows, list(getattr(pl_module, "label_names", [])))
            elif kind == "MLFlowLogger":
                logger.experiment.log_artifact(logger.run_id, str(path))

    def _log_wandb(self, logger: Any, rows: list[dict[str, Any]], label_names: list[str]) -> None:
        import wandb

        columns = columns_of(rows)
        with_images = self.wandb_images and any("overlay" in row for row in rows)
        classes = dict(enumerate(label_names))
        data = []
        for row in rows:
            values = [_cell(row.get(c)) for c in columns]
            if with_images:
                overlay = row.get("overlay")
                values.append(
                    wandb.Image(
                        overlay["image"],
                        masks={
                            "prediction": {"mask_data": overlay["prediction"], "class_labels": classes},
                            "ground_truth": {"mask_data": overlay["label"], "class_labels": classes},
                        },
                    )
                    if overlay is not None
                    else None
                )
            data.append(values)
        logger.experiment.log(
            {TEST_CASES: wandb.Table(columns=columns + (["overlay"] if with_images else []), data=data)}
        )


def _cell(value: Any) -> Any:
    """A table cell: NaN (a class absent from both masks) as ``None``, which W&B shows as empty."""
    return None if isinstance(value, float) and math.isnan(value) else value
