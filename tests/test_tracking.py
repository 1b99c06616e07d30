"""Comparing runs as researchers do: one real 2-job sweep (``medvision-train -m``, the learning rate
swept) logged to W&B (offline) and MLflow (local SQLite store) at once, read back with W&B's record
format and MLflow's own API; and the per-case test table of a classifier."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import TINY_2D, run_cli, train_in
from medmnist_files import write_medmnist
from test_loggers import wandb_records

LRS = ("0.003", "0.03")
SWEEP = [
    "-m",
    *TINY_2D,
    "debug=limit",
    # four validations: at lr=0.03 the Dice peaks at the second and falls after (best != last)
    "trainer.max_epochs=4",
    "trainer.limit_test_batches=1.0",
    "logger=[csv,wandb,mlflow]",
    f"model.optimizer.lr={','.join(LRS)}",
    "print_config=false",
]


def _decode(log: Path) -> dict[str, object]:
    """The run record, config, summary, val/dice_mean history and files of a W&B ``run-*.wandb`` log."""
    out: dict[str, object] = {"config": {}, "summary": {}, "val": [], "files": []}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "summary":
            out["summary"].update(
                {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in record.summary.update}
            )
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            if "val/dice_mean" in items:
                out["val"].append(items["val/dice_mean"])
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep folder of a real 2-job multirun (lr 0.003 and 0.03), logged to CSV, W&B and MLflow."""
    home = tmp_path_factory.mktemp("tracking")
    proc = run_cli("medvision-train", SWEEP, cwd=home, timeout=500)
    assert proc.returncode == 0, proc.stdout[-4000:]
    (folder,) = (home / "logs" / "train" / "multiruns").iterdir()
    return folder


def _jobs(sweep: Path) -> list[Path]:
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert [p.name for p in jobs] == ["0", "1"], jobs
    return jobs


@pytest.mark.slow
def test_sweep_jobs_are_one_wandb_group_with_the_swept_key_and_best_monitor(sweep: Path) -> None:
    name = json.loads((sweep / "sweep.json").read_text())["name"]
    assert name == f"train/{sweep.name}"
    decoded = []
    for job in _jobs(sweep):
        (log,) = job.glob("wandb/offline-run-*/run-*.wandb")
        decoded.append(_decode(log))
    # one group named after the sweep, job_type train
    assert {d["run"].run_group for d in decoded} == {name}
    assert {d["run"].job_type for d in decoded} == {"train"}
    # the swept key, its two values, and what the run is
    assert sorted(str(d["config"]["model"]["optimizer"]["lr"]) for d in decoded) == sorted(LRS)
    for d in decoded:
        run = d["config"]["run"]
        assert run["swept_keys"] == ["model.optimizer.lr"]
        assert run["group"] == name and run["seed"] == 42 and run["fold"] == 0
        assert f"model.optimizer.lr={d['config']['model']['optimizer']['lr']}" in run["overrides"]
        assert run["versions"]["torch"] and run["versions"]["lightning"]
        assert run["data_hash"] and run["data_hash"] == decoded[0]["config"]["run"]["data_hash"]
        assert run["git"].get("commit"), "the code's git commit is recorded (medvision's checkout)"
    # the summary holds the best validation Dice (define_metric max), not the last one
    differ = 0
    for d in decoded:
        assert d["summary"]["val/dice_mean"] == {"max": pytest.approx(max(d["val"]))}, (d["summary"], d["val"])
        differ += max(d["val"]) > d["val"][-1] + 1e-3
    assert differ >= 1, "no run's last validation Dice fell below its best: the summary test proves nothing"


@pytest.mark.slow
def test_test_cases_are_a_wandb_table_and_a_csv_with_one_row_per_test_case(sweep: Path) -> None:
    for job in _jobs(sweep):
        test_ids = json.loads((job / "splits.json").read_text())["test"]
        with (job / "test_cases.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert sorted(r["id"] for r in rows) == sorted(test_ids)
        assert {"dice_disc_1", "dice_disc_2", "hd95_disc_1", "hd95_disc_2"} <= set(rows[0])
        # the per-case Dice average to the run's test Dice (classes present in every case)
        metrics = json.loads((job / "metrics.json").read_text())
        for label in ("disc_1", "disc_2"):
            mean = sum(float(r[f"dice_{label}"]) for r in rows) / len(rows)
            assert mean == pytest.approx(metrics[f"test/dice_{label}"], abs=1e-5)
        (log,) = job.glob("wandb/offline-run-*/run-*.wandb")
        summary = _decode(log)["summary"]
        assert summary["test_cases/_type"] == "table-file" and summary["test_cases/nrows"] == len(test_ids)
        (table,) = job.glob("wandb/offline-run-*/files/media/table/test_cases_*.table.json")
        content = json.loads(table.read_text())
        assert content["columns"][0] == "id" and "overlay" in content["columns"]
        assert sorted(row[0] for row in content["data"]) == sorted(test_ids)


@pytest.mark.slow
def test_mlflow_reads_back_the_sweep_with_its_own_api(sweep: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{sweep.parents[2] / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["medvision"], output_format="list")
    assert len(runs) == 2
    assert sorted(r.data.params["model/optimizer/lr"] for r in runs) == sorted(LRS)
    client = MlflowClient(uri)
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.tags["group"] == f"train/{sweep.name}" and r.data.tags["swept_keys"] == "model.optimizer.lr"
        job = sweep / str(json.loads(r.data.params["run/job_num"]))
        metrics = json.loads((job / "metrics.json").read_text())
        assert r.data.metrics["test/dice_mean"] == pytest.approx(metrics["test/dice_mean"], rel=1e-6)
        assert r.data.metrics["val/dice_mean_best"] == pytest.approx(metrics["val/dice_mean_best"], rel=1e-6)
        history = [m.value for m in client.get_metric_history(r.info.run_id, "val/dice_mean")]
        assert len(history) == 4 and max(history) == pytest.approx(metrics["val/dice_mean_best"], rel=1e-6)
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["test_cases.csv"]
        local = Path(client.download_artifacts(r.info.run_id, "test_cases.csv", str(job.parent / f"dl_{job.name}")))
        assert local.read_text() == (job / "test_cases.csv").read_text()


def test_classifier_test_cases_hold_label_prediction_and_probabilities(medvision_home: Path, tmp_path: Path) -> None:
    from predict_fixtures import CLASSIFIER

    write_medmnist(medvision_home / "data" / "medmnist", "octmnist", n=16, seed=0)
    overrides = [o for o in CLASSIFIER if o != "test=false"] + ["+trainer.limit_test_batches=1"]
    run = train_in(medvision_home, tmp_path / "cls", overrides)
    with (run.output_dir / "test_cases.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"]
    assert sorted(int(r["id"].split("/")[1]) for r in rows) == list(range(16))  # the 16 test samples, once each
    assert list(rows[0]) == ["id", "label", "predicted", *(f"p_{n}" for n in names)]
    for row in rows:
        probabilities = [float(row[f"p_{n}"]) for n in names]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] == names[probabilities.index(max(probabilities))]
        assert row["label"] in names
    accuracy = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(run.metrics["test/acc"], abs=1e-6)
