"""The ``medvision-train`` console script: sweeps, user errors, ``--help``.

Each test starts the real console script in a fresh folder with ``MEDVISION_HOME`` set, as a
user would; output is captured through a pipe (what CI logs and ``| tee`` see).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import TINY_2D, run_cli

pytestmark = pytest.mark.slow


def _assert_one_user_error(proc, *names: str, code: int | None = 2) -> None:
    """A user mistake: one clear message naming the problem, non-zero exit, no traceback."""
    out = proc.stdout
    if code is None:
        assert proc.returncode != 0, out[-1500:]
    else:
        assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}:\n{out[-1500:]}"
    assert "Traceback" not in out, out[-1500:]
    for name in names:
        assert name in out, f"the message does not name {name!r}:\n{out[-1500:]}"


def test_multirun_sweeps_two_lrs_into_two_job_dirs(tmp_path: Path) -> None:
    proc = run_cli(
        "medvision-train",
        [
            "-m",
            "model.optimizer.lr=1e-3,3e-3",
            "experiment=synthetic_seg2d",
            "debug=fast_dev_run",
            "print_config=false",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-1500:]
    stamps = sorted((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(stamps) == 1, stamps
    jobs = sorted(p for p in stamps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]

    lrs = []
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert "test/dice_mean" in metrics
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        lr = [o.split("=", 1)[1] for o in overrides if o.startswith("model.optimizer.lr=")]
        assert len(lr) == 1, overrides
        resolved = yaml.safe_load((job / "config_resolved.yaml").read_text())
        assert resolved["paths"]["output_dir"] == str(job.resolve())
        assert float(lr[0]) == resolved["model"]["optimizer"]["lr"]
        lrs.append(float(lr[0]))
    assert lrs == [1e-3, 3e-3]
    # the embedded data went to MEDVISION_HOME, prepared once for both jobs
    assert len(list((tmp_path / "data").glob("synthetic_seg2d*"))) == 1


def test_each_job_of_a_multirun_is_its_own_wandb_run(tmp_path: Path) -> None:
    """In-process multirun (Hydra's basic launcher): W&B is finished between jobs, so each job
    writes one offline run of its own id (kept in its folder for a resume)."""
    proc = run_cli(
        "medvision-train",
        [
            "-m",
            "model.optimizer.lr=1e-3,3e-3",
            "experiment=synthetic_seg2d",
            "data.source.num_cases=8",
            "data.source.size=64",
            "data.patch_size=[48,48]",
            "debug=limit",
            "trainer.max_epochs=1",
            "logger=wandb",
            "print_config=false",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-1500:]
    (stamp,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    ids = []
    for job in sorted(p for p in stamp.iterdir() if p.is_dir()):
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, (job, runs)
        run_id = (job / "wandb_run_id.txt").read_text().strip()
        assert runs[0].name.endswith(f"-{run_id}") and list(runs[0].glob("run-*.wandb")), runs[0]
        ids.append(run_id)
    assert len(ids) == 2 and ids[0] != ids[1], ids


def test_missing_data_folder_is_one_clear_message(tmp_path: Path) -> None:
    # a realistic user path, longer than one 80-column line of a piped terminal
    missing = tmp_path / "projects" / "hippocampus_segmentation_study" / "raw_data" / "Task04_Hippocampus_missing"
    proc = run_cli("medvision-train", ["data=msd", f"data.root={missing}", "print_config=false"], cwd=tmp_path)
    _assert_one_user_error(proc, str(missing))
    assert proc.stdout.count("medvision error") == 1, proc.stdout


def test_dataset_json_naming_a_missing_file_is_one_clear_message(tmp_path: Path) -> None:
    root = tmp_path / "MyTask"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.eye(4)
    rng = np.random.default_rng(0)
    cases = []
    for i in range(4):
        nib.save(
            nib.Nifti1Image(rng.random((16, 16, 16)).astype(np.float32), affine), root / "imagesTr" / f"c{i}.nii.gz"
        )
        if i != 2:
            nib.save(
                nib.Nifti1Image((rng.random((16, 16, 16)) > 0.5).astype(np.uint8), affine),
                root / "labelsTr" / f"c{i}.nii.gz",
            )
        cases.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "MyTask",
                "labels": {"0": "background", "1": "thing"},
                "modality": {"0": "MR"},
                "numTraining": len(cases),
                "training": cases,
            }
        )
    )
    proc = run_cli("medvision-train", ["data=msd", f"data.root={root}", "print_config=false"], cwd=tmp_path)
    _assert_one_user_error(proc, "labelsTr/c2.nii.gz")
    assert proc.stdout.count("medvision error") == 1, proc.stdout
    assert "c1.nii.gz" not in proc.stdout, "only the missing file should be named"


def test_unknown_config_key_is_one_clear_message(tmp_path: Path) -> None:
    proc = run_cli("medvision-train", ["not_a_key=1", "print_config=false"], cwd=tmp_path)
    _assert_one_user_error(proc, "not_a_key", code=None)
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("metrics.json"))


def test_help_lists_the_config_groups(tmp_path: Path) -> None:
    proc = run_cli("medvision-train", ["--help"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-1500:]
    groups = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^([a-z_/]+): (.+)$", line)
        if match:
            groups[match.group(1)] = {o.strip() for o in match.group(2).split(",")}
    for group in ("data", "model", "model/net", "trainer", "logger", "callbacks", "debug", "experiment", "paths"):
        assert group in groups, f"--help does not list the {group} group:\n{proc.stdout[:3000]}"
    assert {"mni152_tissue", "synthetic_seg2d", "synthetic_seg3d", "msd", "csv"} <= groups["data"]
    assert {"fast_dev_run", "limit", "overfit"} <= groups["debug"]
    assert {"csv", "tensorboard", "wandb", "many"} <= groups["logger"]
    assert not (tmp_path / "logs").exists(), "--help must not start a run"


def test_a_run_prints_no_import_chatter_of_other_libraries(tmp_path: Path) -> None:
    """``import monai`` pulls in Optuna and so alembic, whose plugin registry logged seven
    "setup plugin alembic...." INFO lines at every start, and Lightning 2.6 advertises its
    cloud logger at every Trainer; medvision's and Lightning's own messages must still be there."""
    proc = run_cli(
        "medvision-train",
        [*TINY_2D, "debug=fast_dev_run", "print_config=false", "test=false"],
        cwd=tmp_path,
        fresh=True,  # a new interpreter: what the imports print is the point
    )
    assert proc.returncode == 0, proc.stdout[-1500:]
    noise = [line for line in proc.stdout.splitlines() if "alembic" in line or "litlogger" in line]
    assert not noise, "\n".join(noise)
    assert "data audit of 8 cases" in proc.stdout, proc.stdout[-1500:]  # medvision's
    assert "[lightning.pytorch.utilities.rank_zero][INFO] - GPU available" in proc.stdout, proc.stdout[
        -1500:
    ]  # Lightning's


def test_a_forked_console_script_prints_and_exits_as_a_fresh_one(tmp_path: Path) -> None:
    """The tests run console scripts through a fork server (``tests/cli_server.py``, imports done once):
    a mistake on the command line must read the same and end with the same code both ways."""
    args = ["data.batch_size=abc", "print_config=false"]
    forked = run_cli("medvision-train", args, cwd=tmp_path)
    fresh = run_cli("medvision-train", args, cwd=tmp_path, fresh=True)
    assert forked.returncode == fresh.returncode == 2, (forked.stdout[-1500:], fresh.stdout[-1500:])
    assert "data.batch_size='abc'" in fresh.stdout, fresh.stdout[-1500:]
    assert forked.stdout.strip().splitlines() == fresh.stdout.strip().splitlines()
