"""Reading finished runs, and metric values as numbers: one place for what reports, comparisons
and pipelines read back from run folders.

A finished medvision run folder holds ``metrics.json`` (written last, atomically) and
``config_resolved.yaml``; Lightning's CSV logger adds ``csv/metrics.csv``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the final metrics of a run (``medvision.train.run`` writes it when the run ends)
METRICS_FILE = "metrics.json"
#: the run's resolved config
CONFIG_FILE = "config_resolved.yaml"


def as_float(value: Any) -> float | None:
    """``value`` as a float (numbers, numeric strings, 0-d tensors), or ``None`` when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``values`` that are numbers, as floats (``"nan"`` stays NaN); the rest dropped."""
    out = {}
    for key, value in values.items():
        number = as_float(value)
        if number is not None:
            out[str(key)] = number
    return out


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as strings (JSON has none), through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def read_metrics(folder: str | os.PathLike[str]) -> dict[str, float]:
    """The numeric metrics of a finished run folder's ``metrics.json``."""
    return numbers(json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8")))


@dataclass
class FinishedRun:
    """A finished run folder: its path, its numeric metrics and its resolved config."""

    path: Path
    metrics: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)


def read_run(folder: str | os.PathLike[str]) -> FinishedRun | None:
    """The finished run in ``folder``, or ``None`` when it holds none (or a damaged or half-written one)."""
    import yaml

    path = Path(folder)
    if not ((path / METRICS_FILE).is_file() and (path / CONFIG_FILE).is_file()):
        return None
    try:
        metrics = read_metrics(path)
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return FinishedRun(path, metrics, config if isinstance(config, dict) else {})


def finished_runs(root: str | os.PathLike[str], recursive: bool = True) -> Iterator[FinishedRun]:
    """Every finished run at ``root`` or below it (``recursive=False``: its direct sub-folders), by path."""
    base = Path(root)
    found = base.rglob(METRICS_FILE) if recursive else base.glob(f"*/{METRICS_FILE}")
    for metrics_file in sorted(found):
        run = read_run(metrics_file.parent)
        if run is not None:
            yield run


def run_folders(
    paths: Iterable[str | os.PathLike[str]], marker: str | os.PathLike[str]
) -> tuple[list[Path], list[Path]]:
    """The run folders named by ``paths``: each path that holds ``marker``, else every folder below it that does.

    Args:
        paths: run folders, or folders holding runs (a multirun folder, ``logs/``).
        marker: the file that makes a folder a run (``metrics.json``, ``csv/metrics.csv``).

    Returns:
        ``(runs, empty)``: the run folders in order, without repeats, and the given paths that
        hold none.
    """
    runs: list[Path] = []
    empty: list[Path] = []
    depth = len(Path(marker).parts)
    for given in paths:
        path = Path(given)
        if (path / marker).is_file():
            runs.append(path)
            continue
        below = sorted(p.parents[depth - 1] for p in path.rglob(str(marker)))
        if not below:
            empty.append(path)
        runs.extend(below)
    return list(dict.fromkeys(runs)), empty


#: Lightning's CSV logger file in a run folder (``logger=csv``, the default, or ``logger=many``)
LOGGED_METRICS_FILE = "csv/metrics.csv"


def logged_values(folder: str | os.PathLike[str], name: str) -> list[float]:
    """Every finite value of metric ``name`` in a run folder's ``csv/metrics.csv``, in logged order.

    Returns ``[]`` when the run has no such file (another logger) or never logged ``name``.
    """
    import csv

    path = Path(folder) / LOGGED_METRICS_FILE
    if not path.is_file():
        return []
    values = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            value = as_float(row.get(name))
            if value is not None and math.isfinite(value):
                values.append(value)
    return values


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (``ddof=1``) of the finite ``values``, and their count.

    Values that are missing (``None``) or not finite are left out. The mean of none and the
    standard deviation of fewer than two are NaN.
    """
    import statistics

    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    mean = statistics.fmean(finite) if finite else math.nan
    std = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return mean, std, len(finite)
