"""``medvision-auto data=msd data.root=DIR``: from a folder to an evaluated ensemble, in one command.

The stages, each through the one road and each writing into one folder ``OUT``::

    1. plan          audit + fingerprint + plan (cached; printed as the plan table)
    OUT/cv/fold_<k>/ 2. k-fold cross-validation: ``medvision-train -m data.num_folds=K data.fold=...``
                        through the configured Hydra launcher (basic, joblib, SLURM via submitit);
                        each fold a full run (plan, training, test) in its own folder
    OUT/cv_predictions/ 3. each fold's validation cases predicted by that fold's model (its TTA)
    OUT/ensemble/    4. the folds' best checkpoints as one ensemble folder, the plan and the
                        postprocessing chosen on the CV predictions (never on the test split)
    OUT/auto_report.{json,md}  5. per-fold and mean Dice, the plan, the postprocessing decision,
                        the wall time of each stage

Re-running the same command continues: finished folds (``metrics.json``) are not retrained, a
fold killed half-way resumes from its ``last.ckpt`` (``ckpt_path=last``), finished CV predictions
are kept. Another command in the same ``OUT`` is refused (``auto_config.json``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError

#: the command that made a folder (another command there is refused)
CONFIG_FILE = "auto_config.json"
REPORT_NAME = "auto_report"
#: what each stage took, kept across interrupted runs
TIMES_FILE = "auto_times.json"


def fold_dir(out: Path, fold: int) -> Path:
    """The run folder of one fold."""
    return out / "cv" / f"fold_{fold}"


def _check_folder(out: Path, overrides: Sequence[str], num_folds: int) -> None:
    wanted = {"overrides": list(overrides), "num_folds": num_folds}
    path = out / CONFIG_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            raise MedvisionError(
                f"{out} holds the medvision-auto run of another command ({found}); this one is {wanted}",
                fix="run the same command to continue it, or pass --out <another folder>",
            )
        return
    from medvision.utils.io import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, wanted)


def _times(out: Path) -> dict[str, float]:
    path = out / TIMES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _add_time(out: Path, stage: str, seconds: float) -> None:
    from medvision.utils.io import atomic_write_json

    times = _times(out)
    times[stage] = round(times.get(stage, 0.0) + seconds, 1)
    atomic_write_json(out / TIMES_FILE, times)


def plan_stage(overrides: Sequence[str], num_folds: int) -> tuple[DictConfig, Any]:
    """Compose fold 0's config and plan it (the fingerprint and step timings are cached for the folds).

    Returns:
        The composed config and its plan (``None`` when the data are not planned, e.g. ``plan=none``).
    """
    import tempfile

    from medvision.planning.apply import plan_for
    from medvision.utils.config import compose

    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose([*overrides, f"data.num_folds={num_folds}", "data.fold=0"], output_dir=scratch)
        plan = None
        if cfg.get("plan") is not None and cfg.plan.get("mode") == "auto":
            plan = plan_for(cfg)
            plan.print()
    return cfg, plan


def cross_validate(out: Path, overrides: Sequence[str], num_folds: int, launcher: str | None) -> list[int]:
    """Train the folds that have not finished, as one Hydra multirun of ``medvision-train``.

    Returns:
        The folds trained by this call.

    Raises:
        MedvisionError: the multirun failed (its log is named).
    """
    todo = [k for k in range(num_folds) if not (fold_dir(out, k) / "metrics.json").is_file()]
    if not todo:
        return []
    command = [
        str(Path(sys.executable).parent / "medvision-train"),
        "-m",
        *overrides,
        f"data.num_folds={num_folds}",
        f"data.fold={','.join(str(k) for k in todo)}",
        # a fold killed half-way continues from its last.ckpt (none yet: a fresh start)
        "ckpt_path=last",
        f"hydra.sweep.dir={out / 'cv'}",
        "hydra.sweep.subdir=fold_${data.fold}",
        "print_config=false",
    ]
    if launcher:
        command.append(f"hydra/launcher={launcher}")
    print(f"medvision-auto: training fold(s) {todo} of {num_folds}", flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise MedvisionError(
            f"the cross-validation multirun exited with {result.returncode} (folds {todo}); its output is above "
            f"and in {out / 'cv'}",
            fix="fix the problem it names and run the same command again: finished folds are kept",
        )
    return todo


def _best_checkpoint(run: Path) -> Path:
    best = run / "checkpoints" / "best.ckpt"
    if not best.is_file():
        raise MedvisionError(f"{run} has no checkpoints/best.ckpt", fix="run the same command again to retrain it")
    return best


def cv_predictions(out: Path, num_folds: int, tta: str) -> list[tuple[Path, Path]]:
    """Each fold's validation cases predicted by that fold's best checkpoint (kept when already written).

    Returns:
        ``(prediction, label file)`` of every CV case, on the label file's grid.
    """
    from hydra.utils import instantiate

    from medvision.inference.predict import Case, load_members, segment_case

    folder = out / "cv_predictions"
    folder.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[Path, Path]] = []
    for k in range(num_folds):
        ckpt = _best_checkpoint(fold_dir(out, k))
        spec = OmegaConf.create({"ckpt_path": str(ckpt), "tta": tta, "inferer": {}, "classifier_input": None})
        members, _ = load_members(spec, command="medvision-auto")
        data_cfg = members[0].run_cfg.data.copy()
        OmegaConf.set_struct(data_cfg, False)
        for key in ("audit_report", "splits_report"):  # the fold's own reports stay as they are
            if key in data_cfg:
                data_cfg[key] = None
        if "audit" in data_cfg:  # the fold's run audited every case; no file of the test split is opened here
            data_cfg.audit = False
        datamodule = instantiate(data_cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
        for sample in datamodule.samples("val"):
            image = sample["image"]
            first = Path(image[0] if isinstance(image, (list, tuple)) else image)
            case = Case(str(sample["id"]), first, [folder / f"{sample['id']}.nii.gz"], image=image)
            if not case.outputs[0].is_file():
                segment_case(members, case, next(members[0].module.parameters()).device, False)
            pairs.append((case.outputs[0], Path(str(sample["label"]))))
    return pairs


def _read_mask(path: Path) -> Any:
    import nibabel as nib
    import numpy as np

    return np.asanyarray(nib.load(str(path)).dataobj).astype(np.int64)


def choose(pairs: Sequence[tuple[Path, Path]], label_names: Sequence[str]) -> dict[str, Any]:
    """The postprocessing decision on the CV predictions (see :mod:`medvision.inference.postprocess`)."""
    from medvision.inference.postprocess import choose_postprocessing

    def loader(pred: Path, label: Path) -> Any:
        return lambda: (_read_mask(pred), _read_mask(label))

    return choose_postprocessing([loader(p, t) for p, t in pairs], label_names)


def auto(
    overrides: Sequence[str], out: Path, num_folds: int = 5, launcher: str | None = None, tta: str = "mirror"
) -> dict[str, Any]:
    """Run (or continue) the whole pipeline; the report.

    Args:
        overrides: ``medvision-train`` overrides of every fold (``data=msd data.root=DIR plan.time_budget=10min``).
        out: the pipeline folder.
        num_folds: folds of the cross-validation (``data.num_folds``).
        launcher: ``hydra/launcher`` of the folds' multirun (``None``: the configured one).
        tta: test-time augmentation of the CV predictions (``mirror`` | ``none``).
    """
    from medvision.inference.ensemble import write_ensemble
    from medvision.inference.postprocess import describe
    from medvision.inference.predict import load_module
    from medvision.workflows.cv_report import cv_report

    if num_folds < 2:
        raise MedvisionError(f"--folds {num_folds}: cross-validation needs at least 2 folds", fix="--folds 5")
    _check_folder(out, overrides, num_folds)
    t0 = time.perf_counter()
    _, plan = plan_stage(overrides, num_folds)
    _add_time(out, "plan (audit, fingerprint, plan)", time.perf_counter() - t0)

    t0 = time.perf_counter()
    trained = cross_validate(out, overrides, num_folds, launcher)
    if trained:
        _add_time(out, "cross-validation", time.perf_counter() - t0)
    report_cv = cv_report(out / "cv")
    first = _best_checkpoint(fold_dir(out, 0))

    decision = None
    t0 = time.perf_counter()
    module, _, problem = load_module(first, command="medvision-auto")
    label_names = list(module.label_names)
    del module
    if problem == "segmentation":
        pairs = cv_predictions(out, num_folds, tta)
        decision = choose(pairs, label_names)
        _add_time(out, "CV predictions + postprocessing choice", time.perf_counter() - t0)

    t0 = time.perf_counter()
    plan_file = fold_dir(out, 0) / "plan.json"
    members = {f"fold_{k}": _best_checkpoint(fold_dir(out, k)) for k in range(num_folds)}
    write_ensemble(
        out / "ensemble",
        members,
        problem,
        label_names,
        postprocessing=decision,
        plan=json.loads(plan_file.read_text()) if plan_file.is_file() else None,
        extra={"cv_mean": report_cv.get("mean", {}), "tta": tta},
    )
    _add_time(out, "ensemble folder", time.perf_counter() - t0)

    ensemble_test = None
    if problem == "segmentation":
        t0 = time.perf_counter()
        ensemble_test = test_ensemble(out, overrides, tta)
        _add_time(out, "ensemble test", time.perf_counter() - t0)

    report = {
        "out": str(out),
        "command": list(overrides),
        "num_folds": num_folds,
        "folds": report_cv["folds"],
        "mean": report_cv["mean"],
        "std": report_cv["std"],
        "plan": plan.to_dict() if plan is not None else _plan_rows(plan_file),
        "postprocessing": decision,
        "postprocessing_summary": describe(decision),
        "ensemble": str(out / "ensemble"),
        "ensemble_test": ensemble_test,
        "wall_s": _times(out),
    }
    _write_report(out, report)
    return report


def test_ensemble(out: Path, overrides: Sequence[str], tta: str) -> dict[str, float]:
    """The ensemble folder on the held-out test split (``medvision-eval ckpt_path=<ensemble>``), kept in
    ``OUT/ensemble_test/metrics.json`` (reused when it is there)."""
    from medvision.evaluate import evaluate
    from medvision.utils.config import compose
    from medvision.utils.runs import read_metrics

    folder = out / "ensemble_test"
    if (folder / "metrics.json").is_file():
        return read_metrics(folder)
    paths = [o for o in overrides if o.lstrip("+").startswith("paths.")]
    cfg = compose(
        [*paths, f"ckpt_path={out / 'ensemble'}", f"tta={tta}", "logger=[]"], config_name="eval", output_dir=folder
    )
    return evaluate(cfg, overrides=[])


def _plan_rows(plan_file: Path) -> Any:
    return json.loads(plan_file.read_text()) if plan_file.is_file() else None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _write_report(out: Path, report: dict[str, Any]) -> None:
    """``auto_report.json`` and ``auto_report.md`` (atomically)."""
    from medvision.utils.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / f"{REPORT_NAME}.json", report)
    keys = [k for k in ("val/dice_mean", "test/dice_mean", "test/hd95_mean") if k in report["mean"]]
    lines = [
        f"# medvision-auto: {' '.join(report['command'])}",
        "",
        f"## Cross-validation ({report['num_folds']} folds)",
        "",
        "| fold | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for fold in report["folds"]:
        lines.append(f"| {fold['fold']} | " + " | ".join(_fmt(fold["metrics"].get(k, "-")) for k in keys) + " |")
    lines.append(
        "| mean ± sd | "
        + " | ".join(f"{report['mean'][k]:.4f} ± {report['std'].get(k, float('nan')):.4f}" for k in keys)
        + " |"
    )
    decision = report.get("postprocessing")
    lines += [
        "",
        "## Postprocessing (chosen on the CV predictions)",
        "",
        f"Decision: {report['postprocessing_summary']}",
    ]
    if decision:
        lines += ["", "| step | mean Dice before | after | kept |", "|---|---|---|---|"]
        for step in decision["steps"]:
            lines.append(f"| {step['step']} | {step['mean_before']} | {step['mean_after']} | {step['kept']} |")
    plan = report.get("plan")
    if isinstance(plan, dict) and plan.get("choices"):
        lines += ["", "## Plan", "", "| choice | value | rule |", "|---|---|---|"]
        for choice in plan["choices"]:
            lines.append(f"| {choice.get('name')} | {choice.get('value')} | {choice.get('rule')} |")
    lines += ["", "## Wall time per stage", "", "| stage | s |", "|---|---|"]
    lines += [f"| {stage} | {seconds} |" for stage, seconds in report["wall_s"].items()]
    if report.get("ensemble_test"):
        test = report["ensemble_test"]
        lines += ["", "## The ensemble on the held-out test split", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(test.items()) if k.startswith("test/")]
    lines += ["", f"Ensemble folder: `{report['ensemble']}`", ""]
    atomic_write_text(out / f"{REPORT_NAME}.md", "\n".join(lines))
