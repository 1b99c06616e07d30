"""k-fold cross-validation: a 2-fold multirun (two joblib worker processes) writes the aggregate
report whose numbers are the per-job metrics; no subject is in two splits of any fold."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from bad_data import LABELS, write_case, write_csv
from conftest import TINY_2D, run_cli


@pytest.mark.slow
def test_two_fold_cv_multirun_writes_the_aggregate_report(tmp_path: Path) -> None:
    args = [
        "-m",
        *TINY_2D,
        "debug=limit",
        "trainer.max_epochs=1",
        "print_config=false",
        "data.num_folds=2",
        "data.fold=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ]
    proc = run_cli("medvision-train", args, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = {json.loads((sweep / j / "metrics.json").read_text())["test/dice_mean"]: j for j in ("0", "1")}
    assert len(jobs) == 2, "the two folds trained different models"

    # written by the end-of-multirun callback
    report = json.loads((sweep / "cv_report.json").read_text())
    assert report["num_folds"] == 2 and [f["fold"] for f in report["folds"]] == [0, 1] and not report["missing_folds"]
    per_job = {f["fold"]: json.loads((sweep / f["job"] / "metrics.json").read_text()) for f in report["folds"]}
    for fold in report["folds"]:
        assert fold["metrics"] == per_job[fold["fold"]]
    for key in ("test/dice_mean", "val/dice_mean", "test/hd95_mean", "val/loss"):
        values = [per_job[0][key], per_job[1][key]]
        assert report["mean"][key] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert report["std"][key] == pytest.approx(statistics.stdev(values), rel=1e-12)
        assert report["n"][key] == 2
    markdown = (sweep / "cv_report.md").read_text()
    assert "# 2-fold cross-validation" in markdown
    assert (
        f"| test/dice_mean | {report['mean']['test/dice_mean']:.4f} | {report['std']['test/dice_mean']:.4f} | 2 |"
        in markdown
    )

    # the command writes the same report again, elsewhere
    again = run_cli("medvision-cv-report", [str(sweep), "--output-dir", str(tmp_path / "again")], cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert json.loads((tmp_path / "again" / "cv_report.json").read_text()) == report


def test_cv_report_of_a_folder_without_folds_is_a_user_error(tmp_path: Path) -> None:
    proc = run_cli("medvision-cv-report", [str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 2
    assert "holds no finished cross-validation job" in proc.stdout and "fix:" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_no_subject_in_training_and_validation_of_any_fold(tmp_path: Path) -> None:
    from medvision.data.datamodule import VolumeDataModule

    # 15 real NIfTI cases of 6 subjects (2-3 scans each), in a CSV manifest with a subject column
    rows = []
    for i in range(15):
        case = write_case(tmp_path / "msd", f"case_{i:02d}", seed=i)
        rows.append(
            {"image": case["image"], "label": case["label"], "subject": f"subject_{i % 6}", "id": f"case_{i:02d}"}
        )
    manifest = write_csv(
        tmp_path / "manifest.csv",
        [{**r, "image": str(tmp_path / "msd" / r["image"]), "label": str(tmp_path / "msd" / r["label"])} for r in rows],
    )

    num_folds, val_subjects = 3, []
    for fold in range(num_folds):
        dm = VolumeDataModule(
            manifest=str(manifest),
            label_names=LABELS,
            num_folds=num_folds,
            fold=fold,
            test_fraction=0.2,
            cache="none",
            audit=False,
        )
        subjects = {split: {r["subject"] for r in records} for split, records in dm.splits.items()}
        assert subjects["train"] and subjects["val"] and subjects["test"]
        assert not subjects["train"] & subjects["val"], f"fold {fold}: {subjects}"
        assert not (subjects["train"] | subjects["val"]) & subjects["test"], f"fold {fold}: {subjects}"
        # every scan of a subject goes where the subject goes
        assert sum(len(records) for records in dm.splits.values()) == 15
        val_subjects.append(subjects["val"])
    # the folds' validation subjects partition the subjects outside the test split
    assert sum(len(v) for v in val_subjects) == len(set().union(*val_subjects)) == 6 - len(subjects["test"])
