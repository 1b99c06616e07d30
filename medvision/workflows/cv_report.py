"""``medvision-cv-report <sweep dir>``: the k-fold cross-validation report of a multirun.

``medvision-train -m data.num_folds=5 data.fold=0,1,2,3,4 ...`` runs one job per fold, each
writing ``metrics.json`` and ``config_resolved.yaml`` into its folder of the sweep dir. The
report gathers them: one row per fold, and the mean and standard deviation (sample, ``ddof=1``)
of every metric over the folds. It is written as ``cv_report.json`` and ``cv_report.md`` into
the sweep dir (atomically). The Hydra callback :class:`CVReport` (on in ``conf/hydra/default.yaml``)
writes it at the end of every such multirun; the command writes it again for a sweep dir.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from medvision.utils.errors import MedvisionError

REPORT_NAME = "cv_report"


def _folds(sweep_dir: Path) -> list[dict[str, Any]]:
    """``{"job", "fold", "num_folds", "metrics"}`` of each finished fold job of the sweep, by fold."""
    from medvision.utils.runs import finished_runs

    jobs = []
    for run in finished_runs(sweep_dir, recursive=False):
        data = run.config.get("data") or {}
        if data.get("num_folds") is None:
            continue
        jobs.append(
            {
                "job": run.path.name,
                "fold": int(data.get("fold", 0)),
                "num_folds": int(data["num_folds"]),
                "metrics": run.metrics,
            }
        )
    return sorted(jobs, key=lambda j: j["fold"])


def cv_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Gather the fold jobs of ``sweep_dir`` into the cross-validation report.

    Args:
        sweep_dir: a multirun folder whose jobs trained with ``data.num_folds`` set.

    Returns:
        ``{"sweep_dir", "num_folds", "folds": [{"fold", "job", "metrics"}], "missing_folds",
        "mean": {metric: value}, "std": {metric: value}, "n": {metric: folds counted}}``;
        a metric missing or not finite in a fold is left out of that metric's mean and std.

    Raises:
        MedvisionError: no fold job has finished there, or folds disagree (two jobs of one
            fold, different ``num_folds``).
    """
    sweep = Path(sweep_dir)
    jobs = _folds(sweep)
    if not jobs:
        raise MedvisionError(
            f"{sweep} holds no finished cross-validation job (<job>/metrics.json of a run with data.num_folds set)",
            fix="pass the sweep dir of `medvision-train -m data.num_folds=5 data.fold=0,1,2,3,4 ...`",
        )
    ks = {j["num_folds"] for j in jobs}
    if len(ks) > 1:
        raise MedvisionError(
            f"the jobs of {sweep} use different data.num_folds ({sorted(ks)})",
            fix="report one k-fold sweep at a time (one sweep dir per num_folds)",
        )
    seen: dict[int, str] = {}
    for j in jobs:
        if j["fold"] in seen:
            raise MedvisionError(
                f"jobs {seen[j['fold']]} and {j['job']} of {sweep} both trained fold {j['fold']}",
                fix="report a sweep whose only swept key is data.fold (sweep other settings in separate multiruns)",
            )
        seen[j["fold"]] = j["job"]
    num_folds = ks.pop()
    from medvision.utils.runs import mean_std

    names = sorted({k for j in jobs for k in j["metrics"]})
    mean, std, n = {}, {}, {}
    for name in names:
        mean[name], std[name], n[name] = mean_std(j["metrics"].get(name) for j in jobs)
    return {
        "sweep_dir": str(sweep.resolve()),
        "num_folds": num_folds,
        "folds": [{"fold": j["fold"], "job": j["job"], "metrics": j["metrics"]} for j in jobs],
        "missing_folds": sorted(set(range(num_folds)) - set(seen)),
        "mean": mean,
        "std": std,
        "n": n,
    }


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: mean ± std per metric, then one row per fold."""
    names = list(report["mean"])
    lines = [f"# {report['num_folds']}-fold cross-validation", "", f"Sweep: `{report['sweep_dir']}`", ""]
    if report["missing_folds"]:
        lines += [f"**Missing folds** (no finished job): {', '.join(map(str, report['missing_folds']))}", ""]
    lines += ["| metric | mean | std | folds |", "|---|---|---|---|"]
    lines += [f"| {k} | {_fmt(report['mean'][k])} | {_fmt(report['std'][k])} | {report['n'][k]} |" for k in names]
    lines += ["", "| fold | job | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for fold in report["folds"]:
        cells = [_fmt(fold["metrics"].get(k, math.nan)) for k in names]
        lines.append(f"| {fold['fold']} | {fold['job']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``cv_report.json`` and ``cv_report.md`` (atomically) and return the report.

    Args:
        sweep_dir: the multirun folder.
        output_dir: where to write (default: ``sweep_dir``).
    """
    from medvision.utils.io import atomic_write_json, atomic_write_text
    from medvision.utils.runs import json_safe

    report = cv_report(sweep_dir)
    out = Path(output_dir or sweep_dir)
    atomic_write_json(out / f"{REPORT_NAME}.json", json_safe(report))
    atomic_write_text(out / f"{REPORT_NAME}.md", to_markdown(report))
    return report


class CVReport(Callback):
    """Hydra callback: at the end of a multirun whose jobs are k-fold jobs, write the CV report."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir() or not _folds(sweep_dir):
            return
        try:
            report = write_report(sweep_dir)
        except MedvisionError as err:  # e.g. lr x fold in one sweep: the jobs' own results stand
            print(f"no cross-validation report for {sweep_dir}: {err}")
            return
        print(
            f"cross-validation report ({len(report['folds'])} of {report['num_folds']} folds): "
            f"{sweep_dir / (REPORT_NAME + '.md')}"
        )
