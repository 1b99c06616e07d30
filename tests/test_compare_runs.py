"""``medvision-compare PATH...``: finished runs of any problem in one table, one row per setting.

The runs are real: a 2-seed x 2-learning-rate segmentation multirun made with ``medvision-train -m``
and a MedMNIST classifier run (``debug=fast_dev_run``: it records no best monitor value, so its
last one is shown and marked), both in one ``logs/`` folder. The expected numbers are computed
here from the runs' own ``metrics.json`` and ``csv/metrics.csv``.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest

from conftest import TINY_2D, run_cli
from medmnist_files import write_medmnist

LR = "model.optimizer.lr"
#: the sweep: 4 runs of one short epoch each (~4 s a run on 2 cores)
SWEEP = [
    "-m",
    "seed=1,2",
    f"{LR}=0.001,0.003",
    *TINY_2D,
    "debug=limit",
    "trainer.max_epochs=1",
    "print_config=false",
]
#: a MedMNIST classifier, one batch through everything (no checkpoint, no logger files)
CLASSIFIER = [
    "experiment=medmnist/resnet18_28",
    "data.flag=pneumoniamnist",
    "data.as_rgb=false",
    "model.net.depth=10",
    "data.batch_size=8",
    "callbacks.gradcam=null",
    "callbacks.classification_plots=null",
    "debug=fast_dev_run",
    "print_config=false",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder whose ``logs/`` holds the sweep (``logs/train/multiruns/sweep``) and the classifier run."""
    home = tmp_path_factory.mktemp("compare_home")
    sweep = run_cli(
        "medvision-train", [*SWEEP, f"hydra.sweep.dir={home / 'logs/train/multiruns/sweep'}"], cwd=home, timeout=300
    )
    assert sweep.returncode == 0, sweep.stdout[-4000:]
    write_medmnist(home / "data" / "medmnist", "pneumoniamnist", n=20, seed=0)
    cls = run_cli("medvision-train", [*CLASSIFIER, f"hydra.run.dir={home / 'logs/train/runs/cls'}"], cwd=home)
    assert cls.returncode == 0, cls.stdout[-4000:]
    return home


def _compare(home: Path, *args: str) -> tuple[str, dict]:
    """``medvision-compare ARGS --json``'s comparison, and the printed table of ``medvision-compare ARGS``."""
    table = run_cli("medvision-compare", list(args), cwd=home, timeout=60)
    assert table.returncode == 0, table.stdout
    as_json = run_cli("medvision-compare", [*args, "--json"], cwd=home, timeout=60)
    assert as_json.returncode == 0, as_json.stdout
    return table.stdout, json.loads(as_json.stdout)


def _best_monitor(run: Path) -> float:
    """The run's best val/dice_mean as the run itself recorded it: metrics.json, else csv/metrics.csv."""
    metrics = json.loads((run / "metrics.json").read_text())
    if "val/dice_mean_best" in metrics:
        return metrics["val/dice_mean_best"]
    with open(run / "csv" / "metrics.csv", newline="") as fh:
        return max(float(r["val/dice_mean"]) for r in csv.DictReader(fh) if r.get("val/dice_mean"))


def _table(comparison: dict, problem: str) -> dict:
    (table,) = [t for t in comparison["tables"] if t["problem"] == problem]
    return table


@pytest.mark.slow
def test_a_seed_by_lr_sweep_is_one_row_per_lr(home: Path) -> None:
    sweep = home / "logs" / "train" / "multiruns" / "sweep"
    printed, comparison = _compare(home, "logs/train/multiruns/sweep", "--out", "report")
    (table,) = comparison["tables"]
    assert table["problem"] == "segmentation" and table["monitor"] == "val/dice_mean"
    assert table["columns"] == [LR], table["columns"]  # seed and the run folders are no setting
    assert table["metrics"] == ["test/dice_mean", "test/hd95_mean"]
    rows = table["rows"]
    assert len(rows) == 2 and [r["n"] for r in rows] == [2, 2]

    # each row: the two seeds of one lr, their mean and sample std, computed here from the runs' files
    for row in rows:
        runs = [Path(r) for r in row["runs"]]
        configs = [(run / "config_resolved.yaml").read_text() for run in runs]
        assert all(f"lr: {row['settings'][LR]}\n" in c for c in configs)
        assert sorted(int(c.split("\nseed: ")[1].split("\n")[0]) for c in configs) == [1, 2]
        assert {run.parent for run in runs} == {sweep.resolve()}
        for metric in table["metrics"]:
            values = [json.loads((run / "metrics.json").read_text())[metric] for run in runs]
            stats = row["metrics"][metric]
            assert stats["n"] == 2
            assert stats["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
            assert stats["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
        best = [_best_monitor(run) for run in runs]
        assert row["monitor"]["from"] == "best"
        assert row["monitor"]["mean"] == pytest.approx(statistics.fmean(best), rel=1e-12)
        assert row["monitor"]["std"] == pytest.approx(statistics.stdev(best), rel=1e-12)
    assert {r["settings"][LR] for r in rows} == {0.001, 0.003}
    # sorted by the monitor, best (highest Dice) first
    assert rows[0]["monitor"]["mean"] >= rows[1]["monitor"]["mean"]

    # the printed table: lr as a column, one line per row, in the same order, with the same numbers
    lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert LR in lines[0] and "best val/dice_mean" in lines[0] and "test/hd95_mean" in lines[0]
    body = lines[2:]
    assert len(body) == 2
    for line, row in zip(body, rows, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        dice = row["metrics"]["test/dice_mean"]
        assert cells[:2] == [f"{row['settings'][LR]:g}", "2"]
        assert cells[2] == f"{row['monitor']['mean']:.4f} ± {row['monitor']['std']:.4f}"
        assert cells[3] == f"{dice['mean']:.4f} ± {dice['std']:.4f}"

    # --out: the same numbers in compare.json and compare.csv
    written = json.loads((home / "report" / "compare.json").read_text())
    assert written["tables"][0]["rows"] == rows
    with open(home / "report" / "compare.csv", newline="") as fh:
        lines_csv = list(csv.DictReader(fh))
    assert len(lines_csv) == 2
    for line, row in zip(lines_csv, rows, strict=True):
        assert float(line[LR]) == row["settings"][LR] and int(line["n"]) == row["n"]
        assert line["runs"].split(";") == row["runs"]
        assert float(line["monitor mean"]) == row["monitor"]["mean"]
        assert float(line["monitor std"]) == row["monitor"]["std"]
        for metric, stats in row["metrics"].items():
            assert float(line[f"{metric} mean"]) == stats["mean"] and float(line[f"{metric} std"]) == stats["std"]
            assert int(line[f"{metric} n"]) == stats["n"]
    assert (home / "report" / "compare.md").read_text() in printed


@pytest.mark.slow
def test_problems_are_kept_apart_and_a_last_value_is_marked(home: Path) -> None:
    printed, comparison = _compare(home, "logs/")
    assert [t["problem"] for t in comparison["tables"]] == ["classification", "segmentation"]
    cls = _table(comparison, "classification")
    assert cls["monitor"] == "val/auc" and cls["metrics"] == ["test/acc", "test/auc"]
    (row,) = cls["rows"]
    metrics = json.loads((home / "logs" / "train" / "runs" / "cls" / "metrics.json").read_text())
    # fast_dev_run keeps no checkpoint and no CSV: the last val/auc, said so
    assert row["monitor"]["from"] == "last" and row["monitor"]["mean"] == metrics["val/auc"]
    assert row["metrics"]["test/auc"]["mean"] == metrics["test/auc"] and row["metrics"]["test/auc"]["n"] == 1
    assert "## classification: 1 run, 1 setting" in printed and "## segmentation: 4 runs, 2 settings" in printed
    assert "† the last val/auc" in printed
    assert "medvision-compare --paper medmnist" in printed  # MedMNIST runs: the paper comparison is pointed to

    # every test metric with --all-metrics, the main ones first
    _, everything = _compare(home, "logs/", "--all-metrics")
    seg = _table(everything, "segmentation")
    assert seg["metrics"][:2] == ["test/dice_mean", "test/hd95_mean"]
    assert {"test/dice_disc_1", "test/hd95_disc_2", "test/loss"} <= set(seg["metrics"])
    assert "test/f1" in _table(everything, "classification")["metrics"]


@pytest.mark.slow
def test_the_best_monitor_value_comes_from_metrics_json_then_the_csv_then_the_last(home: Path, tmp_path: Path) -> None:
    run = home / "logs" / "train" / "multiruns" / "sweep" / "0"
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("val/dice_mean_best", None)
    copies = {}
    for name in ("recorded", "csv", "last"):
        copies[name] = shutil.copytree(run, tmp_path / name)
    (copies["recorded"] / "metrics.json").write_text(json.dumps({**metrics, "val/dice_mean_best": 0.75}))
    (copies["csv"] / "metrics.json").write_text(json.dumps(metrics))
    (copies["last"] / "metrics.json").write_text(json.dumps({**metrics, "val/dice_mean": 0.25}))
    shutil.rmtree(copies["last"] / "csv")

    _, comparison = _compare(tmp_path, str(tmp_path))
    (row,) = _table(comparison, "segmentation")["rows"]  # one setting, three runs
    per_run = {Path(r["run"]).name: r for r in row["per_run"]}
    assert (per_run["recorded"]["monitor"], per_run["recorded"]["monitor_from"]) == (0.75, "best")
    assert per_run["csv"]["monitor_source"] == "csv/metrics.csv"
    assert per_run["csv"]["monitor"] == _best_monitor(copies["csv"])
    assert (per_run["last"]["monitor"], per_run["last"]["monitor_from"]) == (0.25, "last")
    assert row["monitor"]["from"] == "best+last" and row["n"] == 3


@pytest.mark.slow
def test_columns_are_the_swept_keys_of_run_info_else_the_keys_that_vary(home: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(home / "logs" / "train" / "multiruns" / "sweep", sweep)
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    # a sweep that says it varied data.num_workers and the network too (one value of each finished):
    # shown although equal, a group choice by its _target_
    for job in jobs:
        info_file = job / "run_info.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        info["swept_keys"] = ["seed", LR, "data.num_workers", "model/net"]
        info_file.write_text(json.dumps(info))
    printed, comparison = _compare(tmp_path, str(sweep))
    assert _table(comparison, "segmentation")["columns"] == [LR, "data.num_workers", "model.net._target_"]
    assert "| model.optimizer.lr | data.num_workers | model.net._target_ |" in printed
    assert printed.count("| UNet ") == 2  # monai.networks.nets.UNet, by its class name
    # no run_info.json and no .hydra/overrides.yaml: the keys whose values differ
    for job in jobs:
        (job / "run_info.json").unlink()
        shutil.rmtree(job / ".hydra", ignore_errors=True)
    _, comparison = _compare(tmp_path, str(sweep))
    table = _table(comparison, "segmentation")
    assert table["columns"] == [LR] and [r["n"] for r in table["rows"]] == [2, 2]


@pytest.mark.slow
def test_a_path_without_runs_is_named(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("medvision-compare", [str(empty), "logs/train/runs/cls"], cwd=home, timeout=60)
    assert proc.returncode == 0 and f"{empty} holds no finished run" in proc.stdout, proc.stdout


def test_nothing_to_compare_is_an_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "logs" / "train" / "runs" / "unfinished").mkdir(parents=True)
    (tmp_path / "logs" / "train" / "runs" / "unfinished" / "metrics.json").write_text("{}")  # no config
    proc = run_cli("medvision-compare", ["logs"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout
    assert "no finished run (metrics.json + config_resolved.yaml) in or below logs" in proc.stdout
    assert "Traceback" not in proc.stdout
    proc = run_cli("medvision-compare", ["logs", "lgos"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "lgos: no such file or folder" in proc.stdout, proc.stdout


def test_per_run_keys_are_no_settings() -> None:
    from medvision.workflows.compare_runs import per_run_key

    for key in ("seed", "data.fold", "ckpt_path", "paths.output_dir", "hydra.run.dir", "logger.wandb.id"):
        assert per_run_key(key), key
    for key in ("trainer.default_root_dir", "callbacks.model_checkpoint.dirpath", "data.cache_dir"):
        assert per_run_key(key), key
    for key in (LR, "data.patch_size", "data.num_folds", "data.split_seed", "model.net._target_", "plan.time_budget"):
        assert not per_run_key(key), key
