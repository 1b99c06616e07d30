"""What must hold 1: a matrix of bad inputs, each ending in one clear message and exit code 2.

Every bad input is real (NIfTI files written with nibabel, a checkpoint of a real run cut short
or holding another model) and goes through a real console script, as a user would run it:
``medvision-data validate`` for the dataset problems (the audit alone), ``medvision-train`` and
``medvision-eval`` for the others. The scripts run two at a time in a module fixture; each test
then reads its own result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bad_data import BREAKS, LABELS, msd_with_one_bad_case, write_csv
from conftest import TINY_2D, FinishedRun, run_cli
from medvision.data.splits import SPLITS, group_split

pytestmark = pytest.mark.slow


@dataclass
class BadInput:
    """A bad input, the command that meets it, and what its one message must name."""

    script: str
    args: list[str]
    names: list[str]
    not_named: list[str] = field(default_factory=list)
    #: the bad case the JSON report of ``medvision-data validate`` must list
    report_lists: str | None = None


def _data(root: Path, how: str) -> BadInput:
    """An MSD folder with one case broken by ``how``, audited by ``medvision-data validate``."""
    _, check, file = BREAKS[how]
    msd_with_one_bad_case(root, how)
    return BadInput(
        "medvision-data",
        ["validate", "data=msd", f"data.root={root}"],
        [f"{check}:", file, "1 error(s) in 1 of 5 cases"],
        ["good_"],
        report_lists="bad",
    )


def _leakage(folder: Path) -> BadInput:
    """A CSV manifest listing a copy of one scan under a second patient id, in another split."""
    msd_with_one_bad_case(folder / "files", None, n_good=5)
    for kind in ("imagesTr", "labelsTr"):
        shutil.copy(folder / "files" / kind / "good_0.nii.gz", folder / "files" / kind / "copy.nii.gz")
    rows = [
        {
            "image": f"files/imagesTr/good_{i}.nii.gz",
            "label": f"files/labelsTr/good_{i}.nii.gz",
            "subject": f"patient_{i}",
            "id": f"good_{i}",
        }
        for i in range(5)
    ]
    rows.append(
        {
            "image": "files/imagesTr/copy.nii.gz",
            "label": "files/labelsTr/copy.nii.gz",
            "subject": "patient_99",
            "id": "copy",
        }
    )
    manifest = write_csv(folder / "cases.csv", rows)
    subjects = [r["subject"] for r in rows]
    seed = next(
        s
        for s in range(200)
        if len(
            {
                name
                for name in SPLITS
                for i in group_split(subjects, val_fraction=0.2, test_fraction=0.2, seed=s)[name]
                if subjects[i] in ("patient_0", "patient_99")
            }
        )
        == 2
    )
    return BadInput(
        "medvision-data",
        [
            "validate",
            "data=csv",
            f"data.manifest={manifest}",
            f"data.label_names=[{','.join(LABELS)}]",
            f"data.split_seed={seed}",
        ],
        ["leakage:", "same voxels as case", "1 error(s) in 1 of 6 cases"],
    )


def _user_config_with_a_typo(folder: Path) -> Path:
    """A user's own config dir: an experiment file with a misspelt key (Hydra merges it silently)."""
    (folder / "conf" / "experiment").mkdir(parents=True)
    (folder / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /data: synthetic_seg2d\n  - override /model: segmenter\n"
        "data:\n  bach_size: 4\n"
    )
    return folder / "conf"


def _checkpoint_of_another_task(best: Path, dest: Path) -> Path:
    """A real checkpoint whose stored config says it holds a classifier (another task)."""
    import torch

    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    checkpoint["medvision_config"]["model"]["_target_"] = "medvision.models.classifier.ClassifierModule"
    torch.save(checkpoint, dest)
    return dest


def _truncated(best: Path, dest: Path) -> Path:
    data = best.read_bytes()
    dest.write_bytes(data[: len(data) // 3])
    return dest


#: name -> builder(work folder, finished short run) of the bad input
BUILDERS: dict[str, Callable[[Path, FinishedRun], BadInput]] = {
    "truncated_nii_gz": lambda d, _: _data(d / "Task", "truncated"),
    "shape_mismatch": lambda d, _: _data(d / "Task", "shape_mismatch"),
    "affine_mismatch": lambda d, _: _data(d / "Task", "affine_mismatch"),
    "label_out_of_range": lambda d, _: _data(d / "Task", "label_out_of_range"),
    "nan_image": lambda d, _: BadInput(  # through the training command: the audit stops the run
        "medvision-train",
        ["data=msd", f"data.root={msd_with_one_bad_case(d / 'Task', 'nan_image')}", "print_config=false"],
        ["finite:", "NaN/Inf", "imagesTr/bad.nii.gz", "data.on_invalid=skip"],
        ["good_"],
    ),
    "missing_file": lambda d, _: _data(d / "Task", "missing_file"),
    "duplicate_subject_across_splits": lambda d, _: _leakage(d),
    "empty_dataset_folder": lambda d, _: BadInput(
        "medvision-train",
        ["data=msd", f"data.root={(d / 'EmptyTask').resolve()}", "print_config=false"],
        ["no dataset.json in", "EmptyTask"],
    ),
    "unknown_config_key": lambda d, _: BadInput(
        "medvision-train",
        ["--config-dir", str(_user_config_with_a_typo(d)), "experiment=mine", "print_config=false"],
        ["data.bach_size", "did you mean batch_size?"],
    ),
    "wrong_type": lambda d, _: BadInput(
        "medvision-train", ["data.batch_size=abc", "print_config=false"], ["data.batch_size='abc'", "expected int"]
    ),
    "corrupt_checkpoint": lambda d, run: BadInput(
        "medvision-eval", [f"ckpt_path={_truncated(run.best_ckpt, d / 'cut.ckpt')}"], ["cut.ckpt", "could not be read"]
    ),
    "wrong_task_checkpoint": lambda d, run: BadInput(
        "medvision-train",
        [*TINY_2D, "print_config=false", f"ckpt_path={_checkpoint_of_another_task(run.best_ckpt, d / 'cls.ckpt')}"],
        [
            "cls.ckpt",
            "holds a medvision.models.classifier.ClassifierModule model",
            "builds a medvision.models.segmenter.SegmenterModule",
        ],
    ),
    "wrong_network_checkpoint": lambda d, run: BadInput(
        "medvision-train",
        [*TINY_2D, "print_config=false", "model/net=segresnet", f"ckpt_path={run.best_ckpt}"],
        ["holds a monai.networks.nets.UNet network", "builds a monai.networks.nets.SegResNet", "model/net=unet"],
    ),
}


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, short_run: FinishedRun, medvision_home: Path
) -> dict[str, tuple[BadInput, Path, subprocess.CompletedProcess[str]]]:
    """Build every bad input, run its command (two at a time), keep input, folder and result."""
    jobs = {}
    for name, build in BUILDERS.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "EmptyTask").mkdir()
        jobs[name] = (build(folder, short_run), folder)
    # the checkpoint commands find the short run's data in the session's home; the others use their own folder
    home = {n: medvision_home if "checkpoint" in n else None for n in jobs}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            n: pool.submit(run_cli, bad.script, bad.args, folder, home[n], 240) for n, (bad, folder) in jobs.items()
        }
        return {n: (jobs[n][0], jobs[n][1], f.result()) for n, f in futures.items()}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_bad_input_ends_in_one_clear_message_and_exit_2(outcomes, name: str) -> None:
    bad, folder, proc = outcomes[name]
    out = proc.stdout
    assert proc.returncode == 2, f"{name}: exit {proc.returncode}, wanted 2:\n{out[-2500:]}"
    assert "Traceback" not in out, out[-2500:]
    assert out.count("medvision error:") == 1, out[-2500:]
    message = out[out.index("medvision error:") :]
    for text in bad.names:
        assert text in message, f"{name}: the message does not name {text!r}:\n{message}"
    for text in bad.not_named:
        assert text not in message, f"{name}: the message names {text!r}, which is fine:\n{message}"
    assert "fix:" in message, message
    assert not list(folder.rglob("metrics.json")), "a refused run must not produce results"
    if bad.report_lists is not None:
        report = json.loads((folder / "data_audit.json").read_text())
        assert report["ok"] is False and report["bad_cases"] == [bad.report_lists]
        assert f"report: {folder / 'data_audit.json'}" in out


def test_a_clean_dataset_validates_with_exit_0(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None)
    proc = run_cli(
        "medvision-data",
        ["validate", "--report", str(tmp_path / "audit.json"), "data=msd", f"data.root={root}"],
        tmp_path,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2500:]
    assert "data audit of 4 cases (8 files): no problems" in proc.stdout
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["ok"] is True and report["problems"] == [] and report["num_cases"] == 4


def test_evaluating_with_an_override_that_changes_the_network_is_refused(short_run: FinishedRun, compose_run) -> None:
    """In-process: ``medvision-eval ckpt_path=... +model.net.channels=[...]`` names the setting that differs."""
    from medvision.evaluate import evaluate
    from medvision.utils.errors import MedvisionError

    cfg = compose_run([f"ckpt_path={short_run.best_ckpt}"], config_name="eval", name="eval")
    with pytest.raises(MedvisionError) as err:
        evaluate(cfg, overrides=["+model.net.channels=[8,16,32,64]"])
    message = str(err.value)
    assert "does not fit the model this config builds" in message
    assert "model.net.channels: [16, 32, 64, 128] in the checkpoint, [8, 16, 32, 64] here" in message
    assert "state_dict" not in message
