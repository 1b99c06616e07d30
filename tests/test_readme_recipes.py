"""README's recipes work: every ``medvision-*`` command line of README.md, run at debug size.

The list of recipes is README itself: :func:`readme_commands` reads every line of README's code
blocks that calls a ``medvision-*`` console script (continuation lines joined, the comment
dropped). :data:`RECIPES` says, for each of those lines, how it is tried here:

``run``
    The console script's own entry point (looked up in the installed package's metadata, so a
    renamed or missing script fails), called in this process with the README line's arguments,
    the line's placeholders (``<run>``, ``/data/...``) replaced by small real files and by runs
    made here, and ``debug`` arguments appended that make it small (``debug=fast_dev_run``, a
    smaller network, tiny data). Debug arguments never set a key the line sets, except those in
    ``replaces`` (each with its reason). A multirun's jobs are counted; a training's
    ``.hydra/overrides.yaml`` must hold every override of the line; ``check`` looks at what the
    command wrote. The one line that Lightning re-launches per rank (2-process DDP) runs as a
    process of its own.
``compose``
    Lines that need a GPU, a network or a cluster are composed with ``--cfg all`` (the job config
    and Hydra's own, so group choices and ``hydra.*`` keys can be checked): exit 0, and every
    override of the line holds in the composed config; each job of a swept key is composed.
    ``medvision-data fetch`` (not a Hydra command) is parsed by its own argument parser instead.

A README line missing from :data:`RECIPES` (or an entry whose line left README) fails
:func:`test_every_readme_command_has_a_recipe`, so a new recipe cannot go untested. All runs share
one ``MEDVISION_HOME`` (data prepared once, ``logs/`` shared as in a user's folder); each command
runs in its own working folder, so relative outputs (``output=predictions``, ``model.onnx``) do
not meet.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import distribution
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import yaml

from conftest import THREADS, TINY_2D, run_cli
from medmnist_files import write_medmnist
from predict_fixtures import write_ct_series

README = Path(__file__).resolve().parents[1] / "README.md"

#: the console scripts of the installed package: name -> entry point
SCRIPTS = {ep.name: ep for ep in distribution("medvision").entry_points if ep.group == "console_scripts"}

#: the Hydra task name (``logs/<task>/...``) of each Hydra console script
TASKS = {
    "medvision-train": "train",
    "medvision-eval": "eval",
    "medvision-predict": "predict",
    "medvision-export": "export",
    "medvision-generate": "generate",
    "medvision-gan-augment": "gan_augment",
}


# ----------------------------------------------------------------------------- README's command lines
def _strip_comment(line: str) -> str:
    """``line`` without its shell comment (a ``#`` that starts a word outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def readme_commands(text: str | None = None) -> list[str]:
    """Every command line of README's code blocks that calls a ``medvision-*`` console script.

    Continuation lines (``\\``) are joined, comments dropped and runs of spaces made one; a line
    shown twice in README is one recipe.
    """
    text = README.read_text() if text is None else text
    commands = []
    for block in re.findall(r"^```[\w-]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = " ".join(_strip_comment(line).split())
            if any(re.match(r"medvision-[a-z-]+$", word) for word in command.replace(";", " ").split()):
                commands.append(command)
    return list(dict.fromkeys(commands))


def readme_block_after(marker: str) -> str:
    """The first code block of README after the text ``marker`` (e.g. a config file it shows)."""
    text = README.read_text()
    match = re.search(r"^```[\w-]*\n(.*?)^```", text[text.index(marker) :], flags=re.S | re.M)
    assert match, f"README shows no code block after {marker!r}"
    return match.group(1)


# ----------------------------------------------------------------------------- how each line is tried
@dataclass
class Outcome:
    """What one command did: its exit code, its output (stdout + stderr), its working folder and
    the run folder it was given, if any."""

    code: int
    output: str
    cwd: Path
    folder: Path | None = None


@dataclass(frozen=True)
class Recipe:
    """How one README line is tried (see the module docstring).

    Args:
        id: a short name (the test id, and the run folder's name).
        how: ``run`` or ``compose``.
        why: compose: why it is not run here; run: anything particular about its debug size.
        debug: arguments appended to the line.
        replaces: keys of the line that ``debug`` sets again (``why`` says why).
        values: placeholder of the line -> its value here.
        needs: ids of recipes that must have run first (they make what this one reads).
        jobs: a multirun: how many jobs must finish.
        run_dir: give the run its own ``hydra.run.dir`` / ``hydra.sweep.dir`` (``False``: the
            line names its folder or resumes one).
        process: run the real console script as a process (Lightning re-launches it per rank).
        check: more assertions on what the command wrote.
    """

    id: str
    how: Literal["run", "compose"]
    why: str = ""
    debug: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    values: Mapping[str, Callable[[Workspace], Any]] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    jobs: int | None = None
    run_dir: bool = True
    process: bool = False
    check: Callable[[Workspace, Outcome], None] | None = None


class Workspace:
    """One ``MEDVISION_HOME`` for every recipe, the files that stand for README's ``/data/...``,
    and the outcomes of the recipes run so far (a recipe that another needs runs once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.inputs = root / "inputs"  # README's /data/
        self.outcomes: dict[str, Outcome] = {}
        self._seg_run: Path | None = None
        self._inputs_written = False

    def write_inputs(self) -> None:
        """The files README's ``/data/...`` stand for and tiny MedMNIST files (once, before the first run)."""
        if not self._inputs_written:
            _write_inputs(self)
            self._inputs_written = True

    # -- running commands
    def cwd(self, name: str) -> Path:
        """A fresh working folder whose ``logs`` and ``my_conf`` are the home's (a user's launch folder)."""
        folder = self.root / "cwd" / name
        folder.mkdir(parents=True, exist_ok=True)
        for link in ("logs", "my_conf"):
            (self.home / link).mkdir(parents=True, exist_ok=True)
            if not (folder / link).exists():
                (folder / link).symlink_to(self.home / link, target_is_directory=True)
        return folder

    def call(self, argv: Sequence[str], cwd: Path) -> Outcome:
        """Run console script ``argv[0]`` with ``argv[1:]`` in this process, as its entry point does."""
        script, *args = argv
        assert script in SCRIPTS, f"{script} is not a console script of medvision (pyproject [project.scripts])"
        main = SCRIPTS[script].load()
        out = io.StringIO()
        root_logger = logging.getLogger()
        handlers, level = list(root_logger.handlers), root_logger.level
        previous = os.getcwd()
        saved_argv = sys.argv
        code = 0
        try:
            os.chdir(cwd)
            sys.argv = [script, *args]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = int(main() or 0)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            sys.argv = saved_argv
            os.chdir(previous)
            # Hydra configured logging for the run: give pytest its handlers back
            root_logger.handlers[:] = handlers
            root_logger.setLevel(level)
        return Outcome(code, out.getvalue(), cwd)

    def process(self, argv: Sequence[str], cwd: Path) -> Outcome:
        """Run console script ``argv[0]`` as a process of its own."""
        proc = run_cli(argv[0], list(argv[1:]), cwd=cwd, home=self.home, timeout=600)
        return Outcome(proc.returncode, proc.stdout, cwd)

    # -- what the recipes read
    def seg_run(self) -> Path:
        """``<run>`` of README's evaluation, prediction, export and resume lines: a short training of
        the default experiment (MNI152 tissue, a 3D U-Net) at debug size, with checkpoints."""
        if self._seg_run is None:
            folder = self.home / "logs" / "train" / "runs" / "seg"
            outcome = self.call(["medvision-train", *SEG_RUN, f"hydra.run.dir={folder}"], self.cwd("seg"))
            assert outcome.code == 0, outcome.output[-3000:]
            assert (folder / "checkpoints" / "best.ckpt").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
            self._seg_run = folder
        return self._seg_run

    def copy_of_seg_run(self, name: str) -> str:
        """A copy of :meth:`seg_run` under ``logs/train/runs/<name>`` (a run to resume), its name."""
        target = self.home / "logs" / "train" / "runs" / name
        if not target.exists():
            shutil.copytree(self.seg_run(), target)
        return name

    def outcome(self, recipe_id: str) -> Outcome:
        """The outcome of recipe ``recipe_id`` (run now, or the one of its earlier run)."""
        if recipe_id not in self.outcomes:
            (command,) = [c for c, r in RECIPES.items() if r.id == recipe_id]
            assert command in readme_commands(), f"recipe {recipe_id} ({command}) is no longer in README"
            self.outcomes[recipe_id] = run_recipe(self, command, RECIPES[command])
        return self.outcomes[recipe_id]

    def done(self, recipe_id: str) -> Outcome:
        """:meth:`outcome` of a recipe another one needs: it must have succeeded."""
        outcome = self.outcome(recipe_id)
        assert outcome.code == 0, f"recipe {recipe_id}, which this one needs, failed (exit {outcome.code})"
        return outcome

    def folder(self, recipe_id: str) -> Path:
        """The run folder of a recipe this one needs."""
        folder = self.done(recipe_id).folder
        assert folder is not None
        return folder


# ----------------------------------------------------------------------------- debug size
#: a default-experiment U-Net (and MSD/CSV data) at debug size: 32^3 patches, one per volume, 2 levels
UNET3D_NET = (
    "data.transforms.num_samples=1",
    "model.net.channels=[8,16]",
    "model.net.strides=[2]",
    "model.net.num_res_units=1",
)
UNET3D = ("data.patch_size=[32,32,32]", *UNET3D_NET)
#: one batch through everything, no config print
FAST = ("debug=fast_dev_run", "print_config=false")
#: the synthetic two-modality cases (experiment=multimodal_seg) at debug size: 6 cases of 24^3
MULTIMODAL = ("data.source.num_cases=6", "data.source.size=24", "data.patch_size=[16,16,16]")
#: the run of README's `<run>`: one short epoch with validation and checkpoints
SEG_RUN = (*UNET3D, "debug=limit", "trainer.max_epochs=1", "print_config=false")
#: tiny synthetic 2D data (8 cases of 64^2)
SEG2D = tuple(a for a in TINY_2D if not a.startswith("experiment="))
#: MedMNIST / DICOM classifiers: small batches, one Grad-CAM picture, no confusion/ROC figures (matplotlib
#: took half of such a run; tests/test_pictures.py draws them). The networks stay the experiments' own,
#: so medvision-compare finds the paper's numbers for them.
CLS = (
    "data.batch_size=2",
    "data.val_batch_size=4",
    "callbacks.gradcam.n_images=1",
    "callbacks.classification_plots=null",
)
#: ... and a ResNet-10 where the paper has no number to compare with anyway (224 px, 3D)
CLS10 = (*CLS, "model.net.depth=10")
#: the image + clinical demo at debug size: 40 cases of 16x16, one Grad-CAM picture, no ROC figures
CLINICAL = (
    "data.source.num_cases=40",
    "data.source.size=16",
    "data.batch_size=8",
    "callbacks.gradcam.n_images=1",
    "callbacks.classification_plots=null",
)
#: the class-conditional GAN with few channels
GAN = (
    "data.batch_size=8",
    "model.net.g_channels=4",
    "model.net.d_channels=4",
    "model.net.max_channels=16",
    "callbacks.sample_grid.n_per_class=1",
)
#: a gan_augment pipeline at debug size: one epoch per stage, few samples, one TSTR epoch
PIPELINE = ("gan.max_epochs=1", "classifier.max_epochs=1", "generate.n_per_class=16", "quality.tstr.epochs=1")

GPU_WHY = "needs a GPU (trainer=gpu/ddp: CUDA and NCCL); composed only"
NETWORK_WHY = "needs the network"
#: why the Optuna recipe with a database on SLURM is composed only
SQLITE_WHY = (
    "needs a SLURM cluster and GPUs; the same kind of search with its study in an SQLite database runs here "
    "(recipe optuna_sqlite), and tests/test_sweeps.py kills such a sweep and resumes it"
)


# ----------------------------------------------------------------------------- checks of what a command wrote
def _run_folder(ws: Workspace, name: str) -> Path:
    return ws.home / "logs" / "train" / "runs" / name


def _metrics(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    assert path.is_file(), f"{folder} holds no metrics.json: {sorted(p.name for p in folder.iterdir())}"
    return json.loads(path.read_text())


def _resumed(name: str) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, outcome: Outcome) -> None:
        folder = _run_folder(ws, name)
        assert "test/dice_mean" in _metrics(folder)
        assert list(folder.glob("metrics.before_resume_*.json")), "the first run's metrics.json was not kept"
        runs = list((ws.home / "logs" / "train" / "runs").glob(f"{name}*"))
        assert len(runs) == 1, f"it did not continue in its folder: {runs}"

    return check


def _auto_out(ws: Workspace) -> Path:
    """Where README's ``medvision-auto`` line writes with ``--folds 2`` (its default ``--out``)."""
    return ws.home / "logs" / "auto" / "Task04_Hippocampus_2fold"


def _written(*names: str, where: str = "cwd") -> Callable[[Workspace, Outcome], None]:
    """The command wrote ``names`` (relative to its working folder, its run folder, or the auto folder)."""

    def check(ws: Workspace, outcome: Outcome) -> None:
        base = {"run": outcome.folder, "auto": _auto_out(ws)}.get(where, outcome.cwd)
        assert base is not None
        for name in names:
            there = sorted(p.name for p in base.rglob("*"))[:40]
            assert (base / name).exists(), f"{name} not written in {base}: {there}"

    return check


def _predicted(*cases: str, probabilities: bool = False) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, outcome: Outcome) -> None:
        import nibabel as nib

        out = outcome.cwd / "predictions"
        for case in cases:
            mask = nib.load(out / f"{case}.nii.gz")
            source = ws.inputs / "new" / f"{case}.nii.gz"
            if source.is_file():  # a NIfTI input: the mask is in its space
                assert mask.shape == nib.load(source).shape
            assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
            assert (out / f"{case}_probabilities.nii.gz").is_file() == probabilities
        assert "case(s) written" in outcome.output, outcome.output[-2000:]

    return check


def _filled(ws: Workspace, outcome: Outcome) -> None:
    """/data/brain/new.csv: both cases written on their t1 grids; the one without t2 named as filled."""
    import nibabel as nib

    for case in ("case_000", "case_001"):
        mask = nib.load(outcome.cwd / "predictions" / f"{case}.nii.gz")
        assert mask.shape == nib.load(ws.inputs / "brain" / f"{case}_t1.nii.gz").shape
    assert outcome.folder is not None
    assert json.loads((outcome.folder / "predict_summary.json").read_text())["filled"] == {"case_001": ["t2"]}
    assert "filled" in outcome.output and "t2 missing" in " ".join(outcome.output.split()), outcome.output[-2000:]


def _clinical_run(ws: Workspace, outcome: Outcome) -> None:
    """The baselines and the permutation importance beside the fusion network."""
    assert outcome.folder is not None
    metrics = _metrics(outcome.folder)
    assert {"test/auc", "baseline/clinical_lr/test_auc", "baseline/image_lr/test_auc", "importance/age"} <= set(metrics)
    assert json.loads((outcome.folder / "clinical_importance.json").read_text())["ranking"]


def _clinical_predicted(ws: Workspace, outcome: Outcome) -> None:
    """Every new patient predicted; the missing age and the unseen site named with their cases."""
    import csv

    rows = list(csv.DictReader((outcome.cwd / "predictions" / "predictions.csv").open()))
    assert [r["case"] for r in rows] == ["case_000", "case_001", "case_002"], rows
    said = " ".join(outcome.output.split())
    assert "case case_000: clinical column 'age' is missing" in said, said[-2000:]
    assert "case case_001: clinical column 'site' has the category 'Z', unseen in training" in said, said[-2000:]


def _classified(ws: Workspace, outcome: Outcome) -> None:
    import csv

    rows = list(csv.DictReader((outcome.cwd / "predictions" / "predictions.csv").open()))
    assert sorted(r["case"] for r in rows) == sorted(p.stem for p in (ws.inputs / "pngs").glob("*.png"))
    assert {r["predicted"] for r in rows} <= {"normal", "pneumonia"}


def _compared(as_json: bool) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, outcome: Outcome) -> None:
        if as_json:
            rows = json.loads(outcome.output[outcome.output.index("[") :])
            mine = [r for r in rows if r["dataset"] == "pathmnist" and r["model"] == "ResNet-18 (28)"]
            assert mine and all(r["paper_auc"] is not None and r["diff_auc"] is not None for r in mine), rows
        else:  # the table: the run's row beside the paper's number (not "none found")
            rows = [r for r in outcome.output.splitlines() if "pathmnist" in r and "ResNet-18 (28)" in r]
            assert rows and all("none found" not in r for r in rows), outcome.output[-3000:]

    return check


def _compared_runs(printed: bool) -> Callable[[Workspace, Outcome], None]:
    """The seed x lr sweep is two rows of two seeds each, with the lr as a column: in the printed
    table (``printed``), else in ``comparison/compare.json`` beside the classification table."""

    def check(ws: Workspace, outcome: Outcome) -> None:
        if printed:
            assert "## segmentation: 4 runs, 2 settings" in outcome.output, outcome.output[-3000:]
            rows = [line for line in outcome.output.splitlines() if line.startswith("| 0.00")]
            assert len(rows) == 2 and all(row.split("|")[2].strip() == "2" for row in rows), outcome.output
            return
        comparison = json.loads((outcome.cwd / "comparison" / "compare.json").read_text())
        tables = {t["problem"]: t for t in comparison["tables"] if t["task"] == "train"}
        assert {"segmentation", "classification"} <= set(tables), list(tables)
        sweep = str(ws.folder("seed_lr_sweep").resolve())
        rows = [r for r in tables["segmentation"]["rows"] if all(run.startswith(sweep) for run in r["runs"])]
        assert [r["n"] for r in rows] == [2, 2] and "model.optimizer.lr" in tables["segmentation"]["columns"]
        assert "test/dice_disc_1" in tables["segmentation"]["metrics"]  # --all-metrics
        for name in ("compare.md", "compare.csv"):
            assert (outcome.cwd / "comparison" / name).is_file()

    return check


def _evaluated(ws: Workspace, outcome: Outcome) -> None:
    """The test metrics of ``<run>``'s best checkpoint, in the evaluation's own folder."""
    assert outcome.folder is not None
    metrics = _metrics(outcome.folder)
    assert "test/dice_mean" in metrics and not any(k.startswith("train/") for k in metrics), metrics


def _tracked(ws: Workspace, outcome: Outcome) -> None:
    """Both jobs in one group (W&B run and MLflow tag), the swept key recorded, per-case rows written."""
    import mlflow

    assert outcome.folder is not None
    group = json.loads((outcome.folder / "sweep.json").read_text())["name"]
    infos = [json.loads(p.read_text()) for p in sorted(outcome.folder.glob("*/run_info.json"))]
    assert [i["group"] for i in infos] == [group, group] and all(
        i["swept_keys"] == ["model.optimizer.lr"] for i in infos
    )
    assert all((p.parent / "test_cases.csv").is_file() for p in outcome.folder.glob("*/run_info.json"))
    mlflow.set_tracking_uri(f"sqlite:///{ws.home / 'logs' / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["medvision"], filter_string=f"tags.group = '{group}'", output_format="list"
    )
    assert sorted(r.data.params["model/optimizer/lr"] for r in runs) == ["0.001", "0.003"]


def _optuna_study(name: str, complete: int) -> Callable[[Workspace, Outcome], None]:
    """The sweep's study is in ``optuna.db`` of the launch folder with ``complete`` complete trials,
    and the sweep folder's results name its best one."""

    def check(ws: Workspace, outcome: Outcome) -> None:
        import optuna
        from optuna.trial import TrialState

        assert outcome.folder is not None and (outcome.cwd / "optuna.db").is_file(), sorted(outcome.cwd.iterdir())
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{outcome.cwd / 'optuna.db'}")
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == complete, study.trials
        results = yaml.safe_load((outcome.folder / "optimization_results.yaml").read_text())
        assert (results["name"], results["best_trial"]) == (name, study.best_trial.number), results

    return check


def _cv_report(ws: Workspace, outcome: Outcome) -> None:
    report = json.loads((ws.folder("kfold") / "cv_report.json").read_text())
    assert len(report["folds"]) == 5, report.keys()


def _generated(ws: Workspace, outcome: Outcome) -> None:
    """500 samples of pneumonia, in a store beside the GAN's run (its default place)."""
    from medvision.augment.store import read_store

    (folder,) = (ws.folder("gan_medmnist28") / "synthetic").iterdir()
    store = read_store(folder)
    assert list(store.class_names) == ["normal", "pneumonia"] and len(store.labels) == 500
    assert set(store.labels.tolist()) == {store.class_names.index("pneumonia")}


def _pipeline(quality: bool) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, outcome: Outcome) -> None:
        assert outcome.folder is not None
        answer = json.loads((outcome.folder / "gan_augment.json").read_text())
        assert answer and (outcome.folder / "synthetic" / "manifest.json").is_file()
        assert (outcome.folder / "quality.json").is_file() == quality
        for arm in ("real", "synthetic"):
            assert (outcome.folder / "classifier" / arm / "seed_0" / "metrics.json").is_file(), arm

    return check


def _mixed(ws: Workspace, outcome: Outcome) -> None:
    """Class 0 (normal) keeps a tenth of its training images and gets 4x as many synthetic ones."""
    assert outcome.folder is not None
    counts = json.loads((outcome.folder / "data_counts.json").read_text())["train"]
    kept = counts["real"]["normal"]
    assert kept == max(1, round(0.1 * counts["original"]["normal"])), counts
    assert counts["synthetic"] == {"normal": 4 * kept, "pneumonia": 0}, counts


def _validated(report: str) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, outcome: Outcome) -> None:
        audit = json.loads((outcome.cwd / report).read_text())
        assert audit, audit
        assert "report:" in outcome.output, outcome.output[-2000:]

    return check


def _key_file(ws: Workspace) -> Path:
    """README's ``<key file>``: a key as README's line before it makes one."""
    key = ws.root / "medvision.key"
    if not key.is_file():
        key.write_text("readme-recipe-key-0123456789abcdef\n")
    return key


def _deidentified(ws: Workspace, outcome: Outcome) -> None:
    """The series of ``/data/dicom`` de-identified: 16 files in one pseudonymous series folder, the mapping beside."""
    out = ws.inputs / "dicom_deid"
    report = json.loads((out / "deidentification_report.json").read_text())
    assert report["files_written"] == 16 and report["series"] == 1, report
    (series,) = {p.parent for p in out.rglob("*.dcm")}
    assert series.name.startswith("SE-") and len(list(series.iterdir())) == 16
    import csv

    rows = list(csv.DictReader((ws.root / "mapping.csv").open()))
    assert len(rows) == 16 and all(r["input"].startswith("series_042/") for r in rows), rows[:2]


def _pseudonymized(ws: Workspace, outcome: Outcome) -> None:
    """Case ids in splits.json are pseudonyms; the manifest's path is hidden in the stored config."""
    assert outcome.folder is not None
    splits = json.loads((outcome.folder / "splits.json").read_text())
    ids = splits["train"] + splits["val"] + splits["test"]
    assert ids and all(re.fullmatch(r"case-[0-9a-f]{12}", i) for i in ids), ids
    stored = yaml.safe_load((outcome.folder / "config_resolved.yaml").read_text())
    assert stored["data"]["manifest"].startswith("<private:"), stored["data"]["manifest"]


def _planned(ws: Workspace, outcome: Outcome) -> None:
    written = yaml.safe_load((outcome.cwd / "my_conf" / "experiment" / "hippocampus.yaml").read_text())
    assert written["plan"]["mode"] == "fixed", written
    assert "data.transforms.pixdim" in written["plan"]["values"], written
    for choice in ("target spacing", "normalisation", "patch", "network", "schedule"):
        assert choice in outcome.output, outcome.output[-2000:]


def _help(ws: Workspace, outcome: Outcome) -> None:
    assert "== Configuration groups ==" in outcome.output and "experiment:" in outcome.output, outcome.output[-2000:]


def _ckpt(recipe_id: str, *parts: str) -> Callable[[Workspace], str]:
    return lambda ws: str(ws.folder(recipe_id).joinpath(*parts))


def _seg(ws: Workspace) -> str:
    return ws.seg_run().name


def _seg_ckpt(ws: Workspace) -> str:
    return str(ws.seg_run() / "checkpoints" / "best.ckpt")


PIPE = "gan_augment_pneumoniamnist"

# ----------------------------------------------------------------------------- the table: README line -> how
RECIPES: dict[str, Recipe] = {
    # A short tour
    "medvision-train --help": Recipe("help", "run", check=_help),
    "medvision-train experiment=synthetic_seg2d": Recipe("seg2d", "run", debug=(*SEG2D, *FAST)),
    "medvision-train model/net=segresnet model.optimizer.lr=1e-3 seed=7": Recipe(
        "segresnet",
        "run",
        debug=("data.patch_size=[32,32,32]", "data.transforms.num_samples=1", "model.net.init_filters=8", *FAST),
    ),
    "medvision-train debug=fast_dev_run": Recipe("fast_dev_run", "run", debug=(*UNET3D, "print_config=false")),
    "medvision-train trainer=ddp trainer.precision=bf16-mixed": Recipe("ddp_bf16", "compose", GPU_WHY),
    "medvision-train trainer=ddp_cpu": Recipe(
        "ddp_cpu",
        "run",
        "Lightning re-launches the command for rank 1: run as the console script, a process",
        debug=(*UNET3D, *FAST),
        process=True,
    ),
    "medvision-train -m model.optimizer.lr=1e-3,3e-3": Recipe("lr_sweep", "run", debug=(*UNET3D, *FAST), jobs=2),
    "medvision-train -m logger=[csv,wandb,mlflow] model.optimizer.lr=1e-3,3e-3": Recipe(
        "tracked_sweep", "run", debug=(*UNET3D, *FAST), jobs=2, check=_tracked
    ),
    "medvision-train --config-dir my_conf experiment=mine": Recipe(
        "own_config_dir", "run", "my_conf/experiment/mine.yaml: a small experiment of one's own", debug=FAST
    ),
    "medvision-eval ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt": Recipe(
        "eval", "run", values={"<run>": _seg}, check=_evaluated
    ),
    "medvision-train data=nnunet data.root=/data/nnUNet_raw/Dataset004_Hippocampus": Recipe(
        "nnunet", "run", debug=(*UNET3D, *FAST)
    ),
    "medvision-train data=msd data.root=/data/Task04_Hippocampus": Recipe("msd", "run", debug=(*UNET3D, *FAST)),
    "medvision-plan data=nnunet data.root=/data/nnUNet_raw/Dataset004_Hippocampus plan.time_budget=10min "
    "--write my_conf/experiment/hippocampus.yaml": Recipe("plan", "run", check=_planned),
    "medvision-train --config-dir my_conf experiment=hippocampus": Recipe(
        "planned",
        "run",
        "the experiment medvision-plan wrote, run unchanged at debug size",
        debug=FAST,
        needs=("plan",),
    ),
    "medvision-train data=csv data.manifest=/data/cases.csv data.label_names=[background,liver,tumour]": Recipe(
        "csv", "run", debug=(*UNET3D, *FAST)
    ),
    "medvision-train data=csv data.manifest=/data/brain/cases.csv data.image_columns=[t1,t2] "
    "model.modality_dropout=0.25": Recipe(
        "csv_multimodal",
        "run",
        "t1 and t2 on two grids, columns named by data.image_columns",
        debug=(*UNET3D_NET, *FAST),
    ),
    "medvision-train experiment=multimodal_seg": Recipe(
        "multimodal_seg",
        "run",
        "one short epoch with validation: the prediction line reads its best.ckpt",
        debug=(*MULTIMODAL, *UNET3D_NET, "debug=limit", "trainer.max_epochs=1", "print_config=false"),
    ),
    "medvision-train experiment=multimodal_seg model/net=late_fusion_unet": Recipe(
        "late_fusion", "run", debug=(*MULTIMODAL, "model.net.features=[8,16]", *FAST)
    ),
    "medvision-predict ckpt_path=<multimodal best.ckpt> input=/data/brain/new.csv output=predictions "
    "missing_modalities=zero": Recipe(
        "predict_missing_modality",
        "run",
        "two cases, one with its t2 cell empty",
        values={"<multimodal best.ckpt>": _ckpt("multimodal_seg", "checkpoints", "best.ckpt")},
        check=_filled,
    ),
    "medvision-data validate data=msd data.root=/data/Task04_Hippocampus": Recipe(
        "validate_msd", "run", check=_validated("data_audit.json")
    ),
    "medvision-data validate --report audit.json data=csv data.manifest=/data/cases.csv": Recipe(
        "validate_csv", "run", check=_validated("audit.json")
    ),
    # Patient privacy
    "medvision-data deidentify /data/dicom /data/dicom_deid --key <key file> --mapping <mapping.csv>": Recipe(
        "deidentify",
        "run",
        values={"<key file>": _key_file, "<mapping.csv>": lambda ws: ws.root / "mapping.csv"},
        check=_deidentified,
    ),
    "medvision-train data=csv data.manifest=/data/cases.csv privacy.log_ids=pseudonym": Recipe(
        "csv_pseudonyms", "run", debug=(*UNET3D, *FAST), check=_pseudonymized
    ),
    "medvision-data validate data=csv data.manifest=/data/cases.csv data.require_deidentified=true": Recipe(
        "validate_deidentified", "run", check=_validated("data_audit.json")
    ),
    # Classification: MedMNIST
    "medvision-data fetch medmnist pathmnist": Recipe(
        "fetch", "compose", f"{NETWORK_WHY} (Zenodo): parsed by medvision-data's own parser, the flag looked up"
    ),
    "medvision-train experiment=medmnist/resnet18_28": Recipe("medmnist_28", "run", debug=(*CLS, *FAST)),
    "medvision-train experiment=medmnist/resnet18_224 data.flag=dermamnist": Recipe(
        "medmnist_224", "run", debug=(*CLS10, *FAST)
    ),
    "medvision-train experiment=medmnist/resnet18_3d data.flag=nodulemnist3d": Recipe(
        "medmnist_3d", "run", debug=(*CLS10, *FAST)
    ),
    "medvision-compare --paper medmnist logs/": Recipe(
        "compare", "run", needs=("medmnist_28",), check=_compared(as_json=False)
    ),
    "medvision-train experiment=dicom_modality": Recipe(
        "dicom_modality", "run", "the real DICOM files that install with pydicom-data", debug=(*CLS, *FAST)
    ),
    # Images + a patient's record
    "medvision-train experiment=clinical_fusion": Recipe(
        "clinical_fusion",
        "run",
        "one short epoch on 40 cases of 16 px: medvision-predict reads its best.ckpt",
        debug=(*CLINICAL, "debug=limit", "trainer.max_epochs=1", "print_config=false"),
        check=_clinical_run,
    ),
    "medvision-train data=clinical model=fusion data.manifest=/data/clinical/cases.csv 'data.clinical={numeric: "
    "[age, psa], categorical: [sex, site]}'": Recipe(
        "clinical_csv",
        "run",
        "40 cases of 16 px, resized to 16 (not 64) px",
        debug=("data.transforms.spatial_size=[16,16]", "callbacks.classification_plots=null", *FAST),
    ),
    "medvision-predict ckpt_path=<fusion best.ckpt> input=/data/new_patients.csv output=predictions": Recipe(
        "predict_clinical",
        "run",
        "the clinical_fusion recipe's model; one case lacks its age, one has a site unseen in training",
        values={"<fusion best.ckpt>": _ckpt("clinical_fusion", "checkpoints", "best.ckpt")},
        check=_clinical_predicted,
    ),
    # the GAN
    "medvision-train experiment=gan/medmnist28": Recipe(
        "gan_medmnist28",
        "run",
        "one short epoch with validation: medvision-generate reads its best.ckpt",
        debug=(*GAN, "debug=limit", "trainer.max_epochs=1", "print_config=false"),
    ),
    "medvision-train experiment=gan/medmnist28 data.flag=organmnist3d data.spatial_dims=3": Recipe(
        "gan_3d", "run", debug=(*GAN, *FAST)
    ),
    "medvision-train model=gan data=dicom_modality model.output_range=[0.0,1.0]": Recipe(
        "gan_dicom", "run", debug=(*GAN, *FAST)
    ),
    "medvision-generate ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt n_per_class=500 "
    "classes=[pneumonia]": Recipe(
        "generate", "run", values={"<run>": lambda ws: ws.folder("gan_medmnist28").name}, check=_generated
    ),
    # Scale and trust
    "medvision-train trainer=gpu": Recipe("gpu", "compose", GPU_WHY),
    "medvision-train trainer=ddp": Recipe("ddp", "compose", GPU_WHY),
    "medvision-train trainer=ddp trainer.devices=4 trainer.sync_batchnorm=true trainer.precision=bf16-mixed": Recipe(
        "ddp_4_syncbn", "compose", GPU_WHY
    ),
    "medvision-train trainer=ddp trainer.devices=4 trainer.num_nodes=2": Recipe(
        "ddp_2_nodes", "compose", f"{GPU_WHY}; two nodes need a cluster"
    ),
    "medvision-train -m hparams_search=seg_optuna experiment=mni152_tissue": Recipe(
        "optuna_3d", "run", "2 trials (of 20)", debug=(*UNET3D_NET, *FAST, "hydra.sweeper.n_trials=2"), jobs=2
    ),
    "medvision-train -m hparams_search=seg2d_optuna experiment=synthetic_seg2d hydra.sweeper.n_trials=50": Recipe(
        "optuna_2d",
        "run",
        "2 trials, not 50: the search and its results file, at debug size",
        debug=(*[a for a in SEG2D if not a.startswith("data.patch_size")], *FAST, "hydra.sweeper.n_trials=2"),
        replaces=("hydra.sweeper.n_trials",),
        jobs=2,
    ),
    "medvision-train -m hparams_search=seg_optuna hydra/launcher=joblib hydra.launcher.n_jobs=2 "
    "hydra.sweeper.n_jobs=2": Recipe(
        "optuna_joblib",
        "run",
        "2 trials (of 20), two worker processes at once",
        debug=(*UNET3D_NET, *FAST, "hydra.sweeper.n_trials=2"),
        jobs=2,
    ),
    "medvision-train -m hparams_search=seg2d_optuna experiment=synthetic_seg2d "
    "hydra.sweeper.storage=sqlite:///optuna.db hydra.sweeper.study_name=seg2d": Recipe(
        "optuna_sqlite",
        "run",
        "2 trials (of 20), the study in optuna.db of the launch folder",
        debug=(*[a for a in SEG2D if not a.startswith("data.patch_size")], *FAST, "hydra.sweeper.n_trials=2"),
        jobs=2,
        check=_optuna_study("seg2d", complete=2),
    ),
    "medvision-train -m model.optimizer.lr=1e-4,3e-4,1e-3 hydra/launcher=joblib hydra.launcher.n_jobs=3": Recipe(
        "grid_joblib", "run", "three worker processes", debug=(*UNET3D, *FAST), jobs=3
    ),
    "medvision-train -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.account=<account> "
    "trainer=ddp trainer.devices=4 hydra.launcher.gpus_per_node=4 hydra.launcher.tasks_per_node=4 ckpt_path=last "
    "data=msd data.root=/data/Task04_Hippocampus data.num_folds=5 data.fold=0,1,2,3,4": Recipe(
        "slurm_kfold",
        "compose",
        "needs a SLURM cluster and GPUs; each of the 5 folds is composed",
        values={"<account>": lambda ws: "mylab"},
    ),
    "medvision-train -m data=msd data.root=/data/Task04_Hippocampus data.num_folds=5 data.fold=0,1,2,3,4": Recipe(
        "kfold", "run", debug=(*UNET3D, *FAST), jobs=5, check=_cv_report
    ),
    "medvision-cv-report logs/train/multiruns/<date>_<time>": Recipe(
        "cv_report", "run", values={"<date>_<time>": lambda ws: ws.folder("kfold").name}, check=_cv_report
    ),
    "medvision-train -m experiment=synthetic_seg2d seed=1,2 model.optimizer.lr=1e-3,3e-3": Recipe(
        "seed_lr_sweep",
        "run",
        "four runs of one short epoch",
        debug=(*SEG2D, "debug=limit", "trainer.max_epochs=1", "print_config=false"),
        jobs=4,
    ),
    "medvision-compare logs/train/multiruns/<date>_<time>": Recipe(
        "compare_sweep",
        "run",
        values={"<date>_<time>": lambda ws: ws.folder("seed_lr_sweep").name},
        check=_compared_runs(printed=True),
    ),
    "medvision-compare logs/ --all-metrics --out comparison": Recipe(
        "compare_all",
        "run",
        "every run the recipes before it left in the shared logs/",
        needs=("seed_lr_sweep", "medmnist_28"),
        check=_compared_runs(printed=False),
    ),
    "medvision-train ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt": Recipe(
        "resume_last",
        "run",
        "a copy of <run>, continued for a second epoch with the first launch's overrides",
        debug=(*UNET3D, "debug=limit", "trainer.max_epochs=2", "print_config=false"),
        values={"<run>": lambda ws: ws.copy_of_seg_run("seg_resume_last")},
        run_dir=False,
        check=_resumed("seg_resume_last"),
    ),
    "medvision-train ckpt_path=last hydra.run.dir=logs/train/runs/<run>": Recipe(
        "resume_newest",
        "run",
        "a copy of <run>, continued for a second epoch with the first launch's overrides",
        debug=(*UNET3D, "debug=limit", "trainer.max_epochs=2", "print_config=false"),
        values={"<run>": lambda ws: ws.copy_of_seg_run("seg_resume_newest")},
        run_dir=False,
        check=_resumed("seg_resume_newest"),
    ),
    # GAN augmentation
    "medvision-train experiment=medmnist/resnet18_28 data.flag=pneumoniamnist 'data.imbalance={class: 0, keep: 0.1, "
    "seed: 0}' 'data.synthetic={store: <store dir>, ratio: 4.0, classes: [0]}'": Recipe(
        "synthetic_mixing",
        "run",
        "the store of the pneumoniamnist pipeline (every class)",
        debug=(*CLS, *FAST),
        values={"<store dir>": lambda ws: str(ws.folder(PIPE) / "synthetic")},
        check=_mixed,
    ),
    "medvision-gan-augment workflow=gan_augment/dicom_modality": Recipe(
        "gan_augment_dicom",
        "run",
        "one epoch per stage, one seed, no quality stage (the pneumoniamnist line runs it)",
        debug=(*PIPELINE, "seeds=[0]", "quality.enabled=false"),
        check=_pipeline(quality=False),
    ),
    "medvision-gan-augment workflow=gan_augment/pneumoniamnist seeds=[0,1,2]": Recipe(
        PIPE,
        "run",
        "one epoch per stage, two of the three seeds, on a small file of PneumoniaMNIST's format",
        debug=(*PIPELINE, "seeds=[0,1]"),
        replaces=("seeds",),
        check=_pipeline(quality=True),
    ),
    "medvision-gan-report logs/gan_augment/runs/<date>_<time>": Recipe(
        "gan_report", "run", values={"<date>_<time>": lambda ws: ws.folder(PIPE).name}
    ),
    "medvision-gan-report <store dir> --classifier <classifier run>/checkpoints/best.ckpt --tstr 10 "
    "--json quality.json": Recipe(
        "gan_report_store",
        "run",
        "the pipeline's store and its seed-0 real-data classifier; one TSTR epoch, not 10",
        debug=("--tstr", "1"),
        replaces=("--tstr",),
        values={
            "<store dir>": lambda ws: str(ws.folder(PIPE) / "synthetic"),
            "<classifier run>": lambda ws: str(ws.folder(PIPE) / "classifier" / "real" / "seed_0"),
        },
        check=_written("quality.json"),
    ),
    # Use the trained model
    "medvision-predict ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt input=/data/new/case01.nii.gz "
    "output=predictions": Recipe("predict_file", "run", values={"<run>": _seg}, check=_predicted("case01")),
    "medvision-predict ckpt_path=<segmenter best.ckpt> input=/data/new output=predictions "
    "save_probabilities=true": Recipe(
        "predict_probabilities",
        "run",
        values={"<segmenter best.ckpt>": _seg_ckpt},
        check=_predicted("case01", "case02", probabilities=True),
    ),
    "medvision-predict ckpt_path=<segmenter best.ckpt> input=/data/dicom/series_042 output=predictions": Recipe(
        "predict_dicom", "run", values={"<segmenter best.ckpt>": _seg_ckpt}, check=_predicted("series_042")
    ),
    "medvision-predict ckpt_path=<classifier best.ckpt> input=/data/pngs output=predictions": Recipe(
        "predict_classifier",
        "run",
        "the pneumoniamnist pipeline's seed-0 real-data classifier",
        values={"<classifier best.ckpt>": _ckpt(PIPE, "classifier", "real", "seed_0", "checkpoints", "best.ckpt")},
        check=_classified,
    ),
    "medvision-predict ckpt_path=<segmenter best.ckpt> input=/data/new output=predictions device=cpu "
    "+inferer.sw_batch_size=8": Recipe(
        "predict_cpu", "run", values={"<segmenter best.ckpt>": _seg_ckpt}, check=_predicted("case01", "case02")
    ),
    "medvision-predict ckpt_path=[logs/train/runs/<run>/checkpoints/best.ckpt,logs/train/runs/<other run>/checkpoints/"
    "best.ckpt] input=/data/new output=predictions": Recipe(
        "predict_ensemble",
        "run",
        "<other run> is a copy of <run>: an ensemble of two equal members",
        values={"<run>": _seg, "<other run>": lambda ws: ws.copy_of_seg_run("seg_copy")},
        check=_predicted("case01", "case02"),
    ),
    "medvision-eval ckpt_path=[logs/train/runs/<run>/checkpoints/best.ckpt,logs/train/runs/<other run>/checkpoints/"
    "best.ckpt]": Recipe(
        "eval_ensemble",
        "run",
        values={"<run>": _seg, "<other run>": lambda ws: ws.copy_of_seg_run("seg_copy")},
        check=_evaluated,
    ),
    "medvision-auto data=msd data.root=/data/Task04_Hippocampus plan.time_budget=10min": Recipe(
        "auto",
        "run",
        "2 folds of one short epoch each",
        debug=(*UNET3D, "debug=limit", "trainer.max_epochs=1", "print_config=false", "--folds", "2"),
        check=_written("auto_report.md", "ensemble/ensemble.json", where="auto"),
    ),
    "medvision-predict ckpt_path=logs/auto/Task04_Hippocampus_5fold/ensemble input=/data/new "
    "output=predictions": Recipe(
        "predict_auto_ensemble",
        "run",
        "the ensemble folder of the 2-fold auto recipe",
        values={"logs/auto/Task04_Hippocampus_5fold": lambda ws: str(_auto_out(ws))},
        needs=("auto",),
        check=_predicted("case01", "case02"),
    ),
    "medvision-export ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt": Recipe(
        "export_torchscript", "run", values={"<run>": _seg}, check=_written("best.pt", "best.pt.json", where="run")
    ),
    "medvision-export ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt format=onnx output=model.onnx": Recipe(
        "export_onnx", "run", values={"<run>": _seg}, check=_written("model.onnx", "model.onnx.json")
    ),
    # Recipes
    "medvision-train data=msd data.root=/data/Task04_Hippocampus model/net=segresnet trainer=gpu": Recipe(
        "msd_gpu", "compose", GPU_WHY
    ),
    "medvision-train data=csv data.manifest=/data/cases.csv data.label_names=[background,liver,tumour] "
    "data.patch_size=[96,96,96]": Recipe("csv_patch96", "run", debug=(*UNET3D_NET, *FAST)),
    "medvision-train logger=wandb logger.wandb.offline=false logger.wandb.project=<project> "
    "+logger.wandb.entity=<team>": Recipe(
        "wandb_online",
        "compose",
        f"{NETWORK_WHY} and a W&B login (logger.wandb.offline=false)",
        values={"<project>": lambda ws: "medvision-recipes", "<team>": lambda ws: "mylab"},
    ),
    "medvision-train logger=many logger.wandb.offline=false": Recipe(
        "many_online", "compose", f"{NETWORK_WHY} and a W&B login (logger.wandb.offline=false)"
    ),
    "medvision-train experiment=mni152_tissue trainer=ddp trainer.devices=4 trainer.precision=bf16-mixed "
    "trainer.sync_batchnorm=true": Recipe("multi_gpu", "compose", GPU_WHY),
    "medvision-train --config-dir my_conf -m hparams_search=seg_optuna hydra/launcher=mycluster trainer=gpu "
    "ckpt_path=last hydra.sweeper.n_trials=40 hydra.sweeper.n_jobs=8 hydra.sweeper.storage=sqlite:///optuna.db "
    "hydra.sweeper.study_name=seg": Recipe("optuna_slurm_sqlite", "compose", SQLITE_WHY),
    "for f in pathmnist dermamnist bloodmnist; do medvision-data fetch medmnist $f; done": Recipe(
        "fetch_three", "compose", f"{NETWORK_WHY} (Zenodo): each fetch parsed by medvision-data's own parser"
    ),
    "medvision-predict ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt input=/data/new "
    "output=predictions": Recipe("predict_folder", "run", values={"<run>": _seg}, check=_predicted("case01", "case02")),
    "medvision-train -m experiment=medmnist/resnet18_28 data.flag=pathmnist,dermamnist,bloodmnist": Recipe(
        "medmnist_sweep", "run", debug=(*CLS, *FAST), jobs=3
    ),
    "medvision-compare --paper medmnist --json logs/": Recipe(
        "compare_json", "run", needs=("medmnist_28",), check=_compared(as_json=True)
    ),
}

COMMANDS = readme_commands()
RUN = [c for c in COMMANDS if c in RECIPES and RECIPES[c].how == "run"]
COMPOSE = [c for c in COMMANDS if c in RECIPES and RECIPES[c].how == "compose"]


# ----------------------------------------------------------------------------- running one line
def _substituted(ws: Workspace, command: str, recipe: Recipe) -> str:
    """The line with README's ``/data/...`` and its placeholders replaced by what exists here."""
    line = re.sub(r"(?<![\w.])/data/", f"{ws.inputs}/", command)
    for placeholder, value in recipe.values.items():
        assert placeholder in line, f"{recipe.id}: README's line no longer holds {placeholder}"
        line = line.replace(placeholder, str(value(ws)))
    left = re.findall(r"<[^<>]+>", line)
    assert not left, f"{recipe.id}: no value for the placeholder(s) {left} of: {command}"
    return line


def _overrides(args: Sequence[str]) -> list[str]:
    """The Hydra overrides among a Hydra command's arguments (not its ``-m``, ``--config-dir DIR``, ...)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp"):
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _hidden(override: str) -> str:
    """``key=<private:...>``: how a run that hides data paths (``privacy.log_ids``) records ``key=path``."""
    from medvision.utils.privacy import Privacy

    key, _, value = override.partition("=")
    return f"{key}={Privacy(log_ids='pseudonym').token(value)}"


def run_recipe(ws: Workspace, command: str, recipe: Recipe) -> Outcome:
    """Run one README line at debug size (see the module docstring)."""
    ws.write_inputs()
    for need in recipe.needs:
        ws.done(need)
    script, *args = shlex.split(_substituted(ws, command, recipe))
    debug = list(recipe.debug)
    if script in TASKS:  # Hydra overrides
        line_keys, debug_keys = {_key(o) for o in _overrides(args)}, {_key(o) for o in debug}
    else:  # options of an argparse command
        line_keys, debug_keys = {a for a in args if a.startswith("--")}, {a for a in debug if a.startswith("--")}
    again = sorted(debug_keys & line_keys - set(recipe.replaces))
    assert not again, f"{recipe.id}: the debug arguments would change what the line sets: {again}"
    folder = None
    if script in TASKS and recipe.run_dir and "--help" not in args:
        multirun = "-m" in args or "--multirun" in args
        folder = ws.home / "logs" / TASKS[script] / ("multiruns" if multirun else "runs") / recipe.id
        debug.append(f"hydra.{'sweep' if multirun else 'run'}.dir={folder}")
    cwd = ws.cwd(recipe.id)
    argv = [script, *args, *debug]
    outcome = ws.process(argv, cwd) if recipe.process else ws.call(argv, cwd)
    outcome.folder = folder
    return outcome


# ----------------------------------------------------------------------------- composing one line
def _value_at(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        assert isinstance(node, Mapping) and part in node, f"{key} is not in the composed config"
        node = node[part]
    return node


def _compose_check(ws: Workspace, script: str, args: list[str], recipe: Recipe) -> None:
    """``script args --cfg all`` exits 0 and the composed config holds every override of ``args``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    options = [a for a in args if a not in ("-m", "--multirun")]
    overrides = _overrides(options)
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    swept = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed if o.is_sweep_override()]
    flags = [a for a in options if a not in overrides]
    for jobs in itertools.product(*swept):
        outcome = ws.call([script, *flags, *fixed, *jobs, "--cfg", "all"], ws.cwd(recipe.id))
        assert outcome.code == 0, f"{recipe.id}: does not compose (exit {outcome.code}):\n{outcome.output[-3000:]}"
        config = yaml.safe_load(outcome.output)
        choices = config["hydra"]["runtime"]["choices"]
        for override in OverridesParser.create().parse_overrides([*fixed, *jobs]):
            key, value = override.key_or_group, override.value()
            if override.is_delete():
                assert choices.get(key) is None, (key, choices.get(key))
            elif key in choices:
                assert choices[key] == value, f"{recipe.id}: {key} composed as {choices[key]}, not {value}"
            else:
                assert _value_at(config, key) == value, f"{recipe.id}: {key}={_value_at(config, key)!r}, not {value!r}"


def _parse_check(args: list[str]) -> None:
    """``medvision-data fetch ...``: its own parser takes the line, and the MedMNIST flag exists."""
    from medvision.cli.data import build_parser
    from medvision.data.medmnist_info import medmnist_info

    parsed = build_parser().parse_args(args)
    assert parsed.command == "fetch" and parsed.dataset == "medmnist", parsed
    assert medmnist_info(parsed.flag).flag == parsed.flag


# ----------------------------------------------------------------------------- the workspace
def _write_inputs(ws: Workspace) -> None:
    """The files README's ``/data/...`` stand for, and tiny MedMNIST files."""
    import nibabel as nib
    from PIL import Image

    from medvision.data.sources import prepare
    from medvision.data.sources.synthetic import SyntheticSegmentation

    # /data/Task04_Hippocampus: an MSD folder of 10 small volumes with 2 foreground classes
    msd = prepare(
        SyntheticSegmentation(spatial_dims=3, num_cases=10, size=32, num_seg_classes=2, seed=4),
        ws.inputs / "Task04_Hippocampus",
    )
    training = json.loads((msd / "dataset.json").read_text())["training"]
    # /data/cases.csv: the same cases listed in a CSV file, paths relative to its folder
    rows = ["image,label"] + [
        ",".join(f"Task04_Hippocampus/{Path(c[key])}" for key in ("image", "label")) for c in training
    ]
    (ws.inputs / "cases.csv").write_text("\n".join(rows) + "\n")
    # /data/nnUNet_raw/Dataset004_Hippocampus: the same cases in nnU-Net v2's raw layout
    raw = ws.inputs / "nnUNet_raw" / "Dataset004_Hippocampus"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for case in training:
        name = Path(case["image"]).name.removesuffix(".nii.gz")
        shutil.copy(msd / case["image"], raw / "imagesTr" / f"{name}_0000.nii.gz")
        shutil.copy(msd / case["label"], raw / "labelsTr" / f"{name}.nii.gz")
    meta = json.loads((msd / "dataset.json").read_text())
    labels = {name: int(value) for value, name in meta["labels"].items()}
    (raw / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": len(training), "file_ending": ".nii.gz"}
        )
    )
    # /data/new: two new volumes (one of them /data/new/case01.nii.gz)
    (ws.inputs / "new").mkdir()
    for k, case in enumerate(training[:2], 1):
        image = nib.load(msd / case["image"])
        volume = nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine)
        nib.save(volume, ws.inputs / "new" / f"case0{k}.nii.gz")
    # /data/brain: t1 (1 mm) and t2 (2 mm grid) per case, columns t1,t2 (data.image_columns); new.csv lacks a t2
    from medvision.data.sources.synthetic_multimodal import SyntheticMultimodal

    brain = prepare(SyntheticMultimodal(spatial_dims=3, num_cases=8, size=24, seed=5), ws.inputs / "brain")
    (brain / "cases.csv").write_text((brain / "cases.csv").read_text().replace("image_t1,image_t2,", "t1,t2,", 1))
    (brain / "new.csv").write_text(
        "t1,t2,id\ncase_000_t1.nii.gz,case_000_t2.nii.gz,case_000\ncase_001_t1.nii.gz,,case_001\n"
    )
    # /data/dicom/series_042: one CT series
    write_ct_series(ws.inputs / "dicom" / "series_042")
    # MedMNIST files in the official format, where data=medmnist reads them
    for flag in ("pathmnist", "dermamnist", "bloodmnist", "pneumoniamnist", "nodulemnist3d", "organmnist3d"):
        write_medmnist(ws.home / "data" / "medmnist", flag, n=20, seed=1)
    # /data/pngs: PneumoniaMNIST-like test images as PNG files
    (ws.inputs / "pngs").mkdir()
    with np.load(ws.home / "data" / "medmnist" / "pneumoniamnist.npz") as arrays:
        for n, picture in enumerate(arrays["test_images"][:3]):
            Image.fromarray(picture).save(ws.inputs / "pngs" / f"scan{n}.png")
    # /data/clinical/cases.csv: images + clinical records; /data/new_patients.csv: three of them, one
    # without its age, one from a site unseen in training
    from medvision.data.sources.synthetic_fusion import SyntheticFusion

    clinical = prepare(SyntheticFusion(num_cases=40, size=16, seed=3), ws.inputs / "clinical")
    lines = (clinical / "cases.csv").read_text().splitlines()
    new = [lines[0]] + [line.replace("images/", "clinical/images/", 1) for line in lines[1:4]]
    header = new[0].split(",")
    cells = [line.split(",") for line in new[1:]]
    cells[0][header.index("age")] = ""
    cells[1][header.index("site")] = "Z"
    (ws.inputs / "new_patients.csv").write_text("\n".join([new[0], *(",".join(c) for c in cells)]) + "\n")


def _write_my_conf(ws: Workspace) -> None:
    """``my_conf/``: README's own launcher file, and an experiment of one's own."""
    launcher = ws.home / "my_conf" / "hydra" / "launcher" / "mycluster.yaml"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(readme_block_after("my_conf/hydra/launcher/mycluster.yaml"))
    mine = ws.home / "my_conf" / "experiment" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text(
        "# @package _global_\n# an experiment of one's own: the synthetic 2D discs, smaller\n"
        "defaults:\n  - /experiment/synthetic_seg2d\n\n"
        "data:\n  source: {num_cases: 8, size: 64}\n  patch_size: [48, 48]\n"
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ws = Workspace(tmp_path_factory.mktemp("readme"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDVISION_HOME", str(ws.home))
        mp.setenv("OMP_NUM_THREADS", str(THREADS))
        for var in ("HYDRA_FULL_ERROR", "MEDVISION_DEBUG", "WANDB_SERVICE"):
            mp.delenv(var, raising=False)
        ws.home.mkdir()
        ws.inputs.mkdir()
        _write_my_conf(ws)
        yield ws


# ----------------------------------------------------------------------------- the tests
def _used_overrides(job: Path) -> list[str]:
    """The overrides a finished Hydra job ran with: its own and Hydra's (``hydra/launcher=...``)."""
    hydra = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["overrides"]
    return [*hydra["task"], *hydra["hydra"]]


def test_every_readme_command_has_a_recipe() -> None:
    """Each ``medvision-*`` line of README is in :data:`RECIPES`, and each entry is a README line."""
    commands = readme_commands()
    assert len(commands) >= 40, f"README's commands were not found ({len(commands)})"
    missing = [c for c in commands if c not in RECIPES]
    assert not missing, "README lines with no entry in RECIPES (say how each is tried):\n" + "\n".join(missing)
    stale = [c for c in RECIPES if c not in commands]
    assert not stale, "RECIPES entries whose line is no longer in README:\n" + "\n".join(stale)
    ids = [r.id for r in RECIPES.values()]
    assert len(ids) == len(set(ids)), "recipe ids must be unique"
    for recipe in RECIPES.values():
        assert recipe.how == "run" or recipe.why, f"{recipe.id}: a composed-only line must say why it is not run"
        assert set(recipe.needs) <= set(ids), recipe


def test_readme_commands_are_found_as_a_shell_would_read_them() -> None:
    text = (
        "x\n```bash\nmedvision-train a=1 \\\n  b='x # y'   # a comment\nmake test\n"
        "for f in a b; do medvision-data fetch medmnist $f; done\n```\n"
    )
    assert readme_commands(text) == [
        "medvision-train a=1 b='x # y'",
        "for f in a b; do medvision-data fetch medmnist $f; done",
    ]


@pytest.mark.parametrize("command", COMPOSE, ids=[RECIPES[c].id for c in COMPOSE])
def test_readme_recipe_composes(command: str, workspace: Workspace) -> None:
    recipe = RECIPES[command]
    line = _substituted(workspace, command, recipe)
    loop = re.fullmatch(r"for (\w+) in ([^;]+); do (.+); done", line)
    lines = [loop.group(3).replace(f"${loop.group(1)}", v) for v in loop.group(2).split()] if loop else [line]
    for one in lines:
        script, *args = shlex.split(one)
        assert script in SCRIPTS, f"{script} is not a console script of medvision"
        if script == "medvision-data":
            _parse_check(args)
        else:
            _compose_check(workspace, script, args, recipe)


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN, ids=[RECIPES[c].id for c in RUN])
def test_readme_recipe_runs(command: str, workspace: Workspace) -> None:
    recipe = RECIPES[command]
    outcome = workspace.outcome(recipe.id)
    assert outcome.code == 0, f"{command}\nexit {outcome.code}:\n{outcome.output[-4000:]}"
    script, *args = shlex.split(_substituted(workspace, command, recipe))
    if script == "medvision-train" and recipe.run_dir and "--help" not in args:
        assert outcome.folder is not None
        line = _overrides(args)
        if recipe.jobs:  # a multirun: every job finished
            jobs = sorted(p for p in outcome.folder.iterdir() if (p / "metrics.json").is_file())
            assert len(jobs) == recipe.jobs, (jobs, sorted(outcome.folder.iterdir()))
            # the swept keys are each job's own value
            line = [o for o in line if "," not in o.split("=", 1)[-1] or o.split("=", 1)[-1].startswith("[")]
        else:
            _metrics(outcome.folder)
            jobs = [outcome.folder]
        runs = [(job, _used_overrides(job)) for job in jobs]
        for job, used in runs:
            for override in line:
                if _key(override) not in recipe.replaces:
                    shown = {override, _hidden(override)}  # privacy.log_ids hides data paths in .hydra/
                    assert shown & set(used), f"{job}: the run did not use {override!r} of the line: {used}"
    if recipe.check is not None:
        recipe.check(workspace, outcome)
