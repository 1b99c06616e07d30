"""``medvision-compare --paper medmnist PATH...``: finished MedMNIST runs beside the published MedMNIST v2 numbers.

A finished run is a folder holding ``metrics.json`` and ``config_resolved.yaml`` (what
``medvision-train`` writes; runs logged to W&B offline keep both beside their ``wandb/``
folder). The run's set and size come from its data config; its paper model from the network
(MONAI ResNet depth), the input size (28, or 224 by file or by upsampling) and 2D/3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """One finished run: where it is, what it trained, what it scored on the test split."""

    path: Path
    flag: str
    model: str
    acc: float | None
    auc: float | None


def _model_key(config: dict[str, Any]) -> str:
    data, net = config.get("data", {}), config.get("model", {}).get("net", {})
    target = str(net.get("_target_", ""))
    name = f"resnet{net.get('depth')}" if target.endswith(".resnet") else target.rsplit(".", 1)[-1].lower() or "net"
    if int(data.get("spatial_dims", 2)) == 3:
        return f"{name}_3d"
    resize = ((data.get("transforms") or {}).get("load") or {}).get("resize") or {}
    size = resize.get("spatial_size", [data.get("size", 28)])[0] if resize else data.get("size", 28)
    return f"{name}_{size}"


def find_runs(log_dir: str | Path) -> list[RunResult]:
    """Finished MedMNIST runs under ``log_dir`` (searched recursively), sorted by path."""
    from medvision.utils.runs import finished_runs

    runs = []
    for run in finished_runs(log_dir):
        data = run.config.get("data") or {}
        if not str(data.get("_target_", "")).endswith("MedMNISTDataModule"):
            continue
        runs.append(
            RunResult(
                run.path,
                str(data.get("flag")),
                _model_key(run.config),
                run.metrics.get("test/acc"),
                run.metrics.get("test/auc"),
            )
        )
    return runs


def comparison_rows(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per run: its ACC/AUC, the paper's for the same set and model, the differences."""
    from medvision.baselines.medmnist import MODELS, published

    rows = []
    for run in runs:
        paper = published(run.flag, run.model)
        row = {
            "run": str(run.path),
            "dataset": run.flag,
            "model": MODELS.get(run.model, run.model),
            "acc": run.acc,
            "auc": run.auc,
            "paper_acc": None,
            "paper_auc": None,
            "verified": None,
        }
        if paper is not None:
            row.update(paper_acc=paper.acc, paper_auc=paper.auc, verified=paper.verified)
        for metric in ("acc", "auc"):
            mine, theirs = row[metric], row[f"paper_{metric}"]
            row[f"diff_{metric}"] = None if mine is None or theirs is None else mine - theirs
        rows.append(row)
    return rows


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def print_table(rows: Sequence[dict[str, Any]], log_dir: str | Path) -> None:
    """The rich table: run vs paper per dataset."""
    from rich.console import Console
    from rich.table import Table

    from medvision.baselines.medmnist import PAPER

    table = Table(title=f"MedMNIST runs under {log_dir} vs {PAPER} (test split)")
    for column in ("dataset", "model", "run", "ACC", "paper ACC", "Δ ACC", "AUC", "paper AUC", "Δ AUC", "paper number"):
        table.add_column(column, justify="left" if column in ("dataset", "model", "run", "paper number") else "right")
    for row in sorted(rows, key=lambda r: (r["dataset"], r["model"], r["run"])):
        status = "none found" if row["verified"] is None else ("verified" if row["verified"] else "unverified")
        table.add_row(
            row["dataset"],
            row["model"],
            Path(row["run"]).name,
            _fmt(row["acc"]),
            _fmt(row["paper_acc"]),
            _fmt(row["diff_acc"], True),
            _fmt(row["auc"]),
            _fmt(row["paper_auc"]),
            _fmt(row["diff_auc"], True),
            status,
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a pipe or a file: keep every column whole
    console.print(table)
    console.print("'unverified': quoted from a secondary source, see medvision/baselines/medmnist.py", style="dim")
