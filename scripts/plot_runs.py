#!/usr/bin/env python
"""Draw the training curves of several medvision runs into one PNG.

Each run folder's ``csv/metrics.csv`` (Lightning's ``CSVLogger``: ``logger=csv``, the default, or
``logger=many``) is read; every metric logged in at least one run gets its own panel, each run is
one line in it, against the epoch (or the step, ``--x step``). A folder holding runs (a sweep's
``logs/train/multiruns/<date>_<time>/``, ``logs/``) stands for every run below it.

    python scripts/plot_runs.py logs/train/runs/<a> logs/train/runs/<b> --out curves.png
    python scripts/plot_runs.py logs/train/multiruns/<date>_<time> --metrics val/dice_mean train/loss_epoch

Exit code 2 with one message when a folder holds no run or a metric is logged by none.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

#: columns of metrics.csv that are axes, not metrics
AXES = ("epoch", "step")
#: where Lightning's CSVLogger writes in a medvision run folder
METRICS_FILE = Path("csv") / "metrics.csv"

Series = dict[str, list[tuple[float, float]]]  # metric -> [(x, value), ...]


class PlotError(Exception):
    """A user mistake (no run in a folder, an unknown metric): one message, exit code 2."""


def find_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The run folders named by ``paths``: each one itself, or every run folder below it.

    Raises:
        PlotError: a path that does not exist or holds no ``csv/metrics.csv``.
    """
    from medvision.utils.runs import run_folders

    for given in paths:
        if not Path(given).exists():
            raise PlotError(f"{given}: no such folder")
    runs, empty = run_folders(paths, METRICS_FILE)
    if empty:
        raise PlotError(
            f"{empty[0]}: no {METRICS_FILE} in it or below it\n"
            "  fix: name medvision run folders trained with the csv logger (logger=csv, the default, or logger=many)"
        )
    return runs


def read_series(run: Path, x: str = "epoch") -> Series:
    """Every metric of a run's ``csv/metrics.csv`` as ``(x, value)`` points, in logged order.

    Rows without the metric (Lightning writes one row per logging call) are left out, and so are
    non-finite values. Step-level and epoch-level values stay apart, as their names already are.

    Args:
        run: the run folder.
        x: ``epoch`` or ``step``, the horizontal axis.
    """
    series: Series = {}
    with open(run / METRICS_FILE, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row.get(x):
                continue
            where = float(row[x])
            for name, text in row.items():
                if name in AXES or not text:
                    continue
                value = float(text)
                if math.isfinite(value):
                    series.setdefault(name, []).append((where, value))
    return series


def run_labels(runs: Sequence[Path]) -> list[str]:
    """Short names of the runs: their paths below the folder they all share."""
    resolved = [r.resolve() for r in runs]
    if len(resolved) == 1:
        return [resolved[0].name]
    common = Path(os.path.commonpath(resolved))
    return [str(r.relative_to(common)) or r.name for r in resolved]


def draw(curves: dict[str, Series], metrics: Sequence[str], x: str, title: str | None = None) -> object:
    """One panel per metric, one line per run; returns the matplotlib ``Figure`` (Agg, no pyplot)."""
    from matplotlib.figure import Figure

    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows + 0.4), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        for label, series in curves.items():
            points = series.get(metric)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=label)
        ax.set_title(metric)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, max(1, len(labels))), fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_runs(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    metrics: Sequence[str] | None = None,
    x: str = "epoch",
    overwrite: bool = False,
) -> Path:
    """Draw the curves of the runs under ``paths`` into the PNG ``out`` (written atomically).

    Args:
        paths: run folders, or folders holding runs.
        out: the PNG to write; an existing file is kept unless ``overwrite``.
        metrics: the metrics to draw (default: every metric with two points or more in some run).
        x: ``epoch`` or ``step``.
        overwrite: replace an existing ``out``.

    Returns:
        The PNG's path.

    Raises:
        PlotError: no run, an unknown metric, or ``out`` exists.
    """
    from medvision.callbacks.images import figure_to_array, write_png

    out = Path(out)
    if out.exists() and not overwrite:
        raise PlotError(f"{out} exists and is kept\n  fix: give another --out, or --overwrite to replace it")
    runs = find_runs(paths)
    curves = dict(zip(run_labels(runs), (read_series(r, x) for r in runs), strict=True))
    logged = sorted({m for series in curves.values() for m in series})
    if metrics:
        unknown = [m for m in metrics if m not in logged]
        if unknown:
            raise PlotError(
                f"metric(s) {', '.join(unknown)} logged by none of the {len(runs)} run(s)\n"
                f"  fix: choose from {', '.join(logged)}"
            )
        chosen = list(metrics)
    else:
        chosen = [m for m in logged if any(len(s.get(m, ())) >= 2 for s in curves.values())] or logged
    if not chosen:
        raise PlotError(f"the {len(runs)} run(s) logged no metric yet")
    return write_png(out, figure_to_array(draw(curves, chosen, x)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("runs", nargs="+", help="run folders (or folders holding runs)")
    parser.add_argument("--out", default="curves.png", help="the PNG to write (default: curves.png)")
    parser.add_argument("--metrics", nargs="+", help="metrics to draw (default: all with 2+ points)")
    parser.add_argument("--x", choices=AXES, default="epoch", help="horizontal axis (default: epoch)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        path = plot_runs(args.runs, args.out, args.metrics, args.x, args.overwrite)
    except PlotError as err:
        print(f"plot_runs error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
