"""``medvision-auto``: plan, k-fold CV, CV predictions, postprocessing choice, ensemble folder, report.

At debug size on MONAI's synthetic 3D spheres (8 cases of 32^3; 2 folds of 3 short epochs) so
that it runs in CI. The pipeline is killed (SIGKILL of its whole process group) once its first
fold has finished; the same command then trains only the second fold. The postprocessing
decision is checked to read no file of the test split (Python's audit hook sees every ``open``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import BIN, run_cli, script_env
from predict_fixtures import SEG3D, spheres

FOLDS = 2
#: the tiny sphere U-Net of the prediction tests, 8 cases, 3 epochs with validation each, tested per fold
_DROPPED = ("data.source.num_cases", "trainer.max_epochs", "trainer.check_val_every_n_epoch", "test=", "seed=")
DATA = [
    *(o for o in SEG3D if not o.startswith(_DROPPED)),
    "data.source.num_cases=8",
    "trainer.max_epochs=3",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.overlays=null",
]


def _command(home: Path, out: Path) -> list[str]:
    return [str(BIN / "medvision-auto"), *DATA, f"paths.root_dir={home}", "--folds", str(FOLDS), "--out", str(out)]


@pytest.fixture(scope="module")
def auto_run(medvision_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The pipeline killed after fold 0, then run again to the end; what each attempt left."""
    work = tmp_path_factory.mktemp("auto")
    out = work / "out"
    proc = subprocess.Popen(
        _command(medvision_home, out),
        cwd=work,
        env=script_env(medvision_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first = out / "cv" / "fold_0" / "metrics.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not first.is_file():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.is_file(), "fold 0 did not finish before the deadline"
    killed_state = {
        "fold0_ckpt_mtime": (out / "cv" / "fold_0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns,
        "fold1_finished": (out / "cv" / "fold_1" / "metrics.json").is_file(),
        "report": (out / "auto_report.json").is_file(),
    }
    command = _command(medvision_home, out)
    res = run_cli(Path(command[0]).name, command[1:], work, home=medvision_home, timeout=900)
    return {"out": out, "killed": killed_state, "rerun": res, "home": medvision_home}


def test_killed_after_first_fold_only_the_rest_is_trained(auto_run: dict) -> None:
    res, killed, out = auto_run["rerun"], auto_run["killed"], auto_run["out"]
    assert res.returncode == 0, res.stdout[-4000:]
    assert killed["fold1_finished"] is False and killed["report"] is False
    assert "training fold(s) [1] of 2" in res.stdout
    assert "training fold(s) [0" not in res.stdout
    # fold 0 was not retrained: its checkpoint is the one the killed run wrote
    assert (out / "cv" / "fold_0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == killed["fold0_ckpt_mtime"]
    assert (out / "cv" / "fold_1" / "metrics.json").is_file()


def test_the_pipeline_writes_report_splits_plan_and_ensemble(auto_run: dict, tmp_path: Path) -> None:
    out = auto_run["out"]
    report = json.loads((out / "auto_report.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [0, 1]
    assert report["mean"]["val/dice_mean"] > 0.2  # learnt something in 3 short epochs (chance ~0.1)
    assert set(report["wall_s"]) >= {"plan (audit, fingerprint, plan)", "cross-validation", "ensemble folder"}
    assert report["postprocessing"]["cases"] >= 2
    md = (out / "auto_report.md").read_text()
    assert "Cross-validation (2 folds)" in md and "Postprocessing" in md and "Wall time per stage" in md
    for k in range(FOLDS):
        splits = json.loads((out / "cv" / f"fold_{k}" / "splits.json").read_text())
        assert splits["fold"] == k and splits["num_folds"] == FOLDS
    ensemble = json.loads((out / "ensemble" / "ensemble.json").read_text())
    assert ensemble["members"] == ["fold_0.ckpt", "fold_1.ckpt"]
    assert (out / "ensemble" / "postprocessing.json").is_file()

    # the ensemble folder predicts as one model, with its postprocessing
    points = np.stack(np.meshgrid(*[np.arange(32.0)] * 3, indexing="ij"), -1)
    image, _ = spheres(points, np.random.default_rng(5), np.array([32.0] * 3))
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), tmp_path / "in" / "new.nii.gz")
    res = run_cli(
        "medvision-predict",
        [
            f"ckpt_path={out / 'ensemble'}",
            f"input={tmp_path / 'in'}",
            f"output={tmp_path / 'pred'}",
            f"summary={tmp_path / 'summary.json'}",
        ],
        cwd=tmp_path,
        home=auto_run["home"],
    )
    assert res.returncode == 0, res.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["members"]) == 2 and summary["postprocessing"] is not None
    mask = np.asanyarray(nib.load(tmp_path / "pred" / "new.nii.gz").dataobj)
    assert mask.shape == (32, 32, 32) and set(np.unique(mask)) <= {0, 1}


def test_postprocessing_reads_no_test_case(auto_run: dict) -> None:
    """CV predictions and the decision, recomputed: every file opened belongs to a training or validation case."""
    out = auto_run["out"]
    splits = json.loads((out / "cv" / "fold_0" / "splits.json").read_text())
    test_ids = set(splits["test"])
    assert test_ids
    prediction_dir = out / "cv_predictions"
    for p in prediction_dir.glob("*.nii.gz"):
        p.unlink()
    label_names = json.loads((out / "ensemble" / "ensemble.json").read_text())["label_names"]
    opened: list[str] = []
    recording = [True]

    def hook(event: str, args: tuple) -> None:  # audit hooks cannot be removed: it stops recording instead
        if recording[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    from medvision.workflows.auto import choose, cv_predictions

    sys.addaudithook(hook)
    try:
        pairs = cv_predictions(out, FOLDS, "none")
        decision = choose(pairs, label_names)
    finally:
        recording[0] = False
    hook_done = list(opened)
    val_ids = {i for fold in splits["folds"] for i in fold["val"]}
    assert {Path(p).name.removesuffix(".nii.gz") for p, _ in pairs} == val_ids
    assert decision["cases"] == len(val_ids)
    data_files = [f for f in hook_done if f.endswith((".nii.gz", ".nii"))]
    assert data_files, "the hook saw no image file"
    for f in data_files:
        name = Path(f).name
        assert not any(name.startswith((f"{t}.", f"{t}_")) for t in test_ids), f
