"""``medvision-compare PATH...``: one table of finished runs, for any problem.

A finished run is a folder holding ``metrics.json`` and ``config_resolved.yaml``
(:mod:`medvision.utils.runs`); a path names one run, or every run below it (a multirun folder,
``logs/``). Runs are kept apart by what makes their numbers incomparable: the problem (the
LightningModule), the task (``train``, ...) and the monitor. Within one table:

- **Rows**: runs whose configs are equal once the keys that differ between runs by nature are
  set aside (:func:`per_run_key`: ``seed``, ``data.fold``, output folders, ids, ``paths``,
  ``hydra``, the loggers) are one row, the mean ± sample standard deviation (``ddof=1``) over
  them, ``n`` runs. Rows are sorted by the monitor, best first (``monitor_mode``).
- **Setting columns**: the keys a sweep varied, as each run's ``run_info.json`` records them
  (``swept_keys``, the union over the runs), then the overrides that vary (``.hydra/overrides.yaml``),
  then any other key that still tells rows apart (shallowest key first, so ``data.patch_size``
  rather than the transform it feeds).
- **The monitor**: its best value, ``<monitor>_best`` of ``metrics.json``; without it, the best
  of its column in ``csv/metrics.csv``; without that, its last value in ``metrics.json``, marked.
- **Test metrics**: :data:`MAIN_TEST_METRICS` that the runs have (all ``test*`` metrics with
  ``all_metrics``; all of them also when a table has none of the main ones).

The same numbers go to the terminal (a markdown table) and, with an output folder, to
``compare.md``, ``compare.csv`` and ``compare.json`` (written atomically).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvision.utils.errors import MedvisionError

#: the test metrics shown by default (those of them that a table's runs have)
MAIN_TEST_METRICS = ("test/dice_mean", "test/hd95_mean", "test/acc", "test/auc", "test/fd")
#: the problem of each LightningModule (the class name of ``model._target_``)
PROBLEMS = {"SegmenterModule": "segmentation", "ClassifierModule": "classification", "GANModule": "GAN"}
#: names of the files written into the output folder
OUTPUT_NAME = "compare"

#: config keys that differ between runs by nature: what a row averages over, and how a run ran
_PER_RUN_KEYS = frozenset(
    {"seed", "data.fold", "ckpt_path", "task_name", "monitor", "monitor_mode", "optimized_metric", "print_config"}
)
#: ... every key under these (the run's folders, Hydra's own settings, where the loggers write)
_PER_RUN_PREFIXES = ("paths.", "hydra.", "logger.")
#: ... and keys of these names anywhere (folders, ids, times)
_PER_RUN_NAMES = re.compile(r"(^|_)(dir|dirpath|id|version|timestamp|start_time|end_time)$")
_MISSING = "<missing>"
#: the mark of a monitor value that is a run's last, not its best
LAST_MARK = "†"


def per_run_key(key: str) -> bool:
    """Whether config key ``key`` differs between runs by nature (not a setting to compare).

    Args:
        key: a dotted config key (``model.optimizer.lr``).
    """
    name = key.rsplit(".", 1)[-1]
    return key in _PER_RUN_KEYS or key.startswith(_PER_RUN_PREFIXES) or bool(_PER_RUN_NAMES.search(name))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Run:
    """One finished run as the comparison sees it.

    Args:
        path: the run folder (resolved).
        settings: its flat config without the per-run keys (:func:`per_run_key`), dotted keys.
        metrics: its numeric ``metrics.json``.
        swept: the keys its sweep varied (``run_info.json``), or ``None`` when it recorded none.
        typed: the keys of its command-line overrides (``.hydra/overrides.yaml``).
        table: what keeps it apart from other runs: ``(task, model target, monitor, monitor_mode)``.
    """

    path: Path
    settings: dict[str, Any]
    metrics: dict[str, float]
    swept: list[str] | None
    typed: list[str]
    table: tuple[str, str, str, str]
    monitor: float = math.nan
    monitor_from: str | None = None
    monitor_source: str | None = None


def _read_json_list(path: Path, key: str) -> list[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    values = data.get(key) if isinstance(data, dict) else None
    return [str(v) for v in values] if isinstance(values, list) else None


def _typed_keys(folder: Path) -> list[str]:
    """The keys set on the run's command line (Hydra's ``.hydra/overrides.yaml``), group choices included."""
    import yaml

    try:
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError):
        return []
    return [str(o).split("=", 1)[0].lstrip("+~") for o in overrides if "=" in str(o)]


def _relative(value: Any, homes: Sequence[tuple[str, str]]) -> Any:
    """``value`` with a leading folder of ``homes`` (``(path, "${paths.data_dir}")``, ...) written as its key."""
    if isinstance(value, list):
        return [_relative(v, homes) for v in value]
    if isinstance(value, str):
        for path, name in homes:
            if value == path or value.startswith(path.rstrip("/") + "/"):
                return name + value[len(path.rstrip("/")) :]
    return value


def _as_run(finished: Any) -> Run:
    from medvision.utils.config import flatten
    from medvision.utils.run_info import RUN_INFO_FILE

    config = finished.config
    folder = Path(finished.path)
    paths = config.get("paths") or {}
    # a value naming the run's own folder (checkpoint dir, reports) is where it wrote, not a setting
    own = {str(paths.get("output_dir") or ""), str(folder), str(folder.resolve())} - {""}
    # ... and one under the run's data or log folder is that folder's, wherever MEDVISION_HOME was
    homes = sorted(
        ((str(paths[k]), f"${{paths.{k}}}") for k in ("data_dir", "log_dir", "root_dir") if paths.get(k)),
        key=lambda item: -len(item[0]),
    )
    settings = {
        key: _relative(value, homes)
        for key, value in flatten(config).items()
        if not per_run_key(key) and not (isinstance(value, str) and any(o in value for o in own))
    }
    swept = _read_json_list(folder / RUN_INFO_FILE, "swept_keys")
    model = str((config.get("model") or {}).get("_target_") or "unknown")
    table = (
        str(config.get("task_name") or "train"),
        model,
        str(config.get("monitor") or ""),
        str(config.get("monitor_mode") or "max"),
    )
    run = Run(folder.resolve(), settings, dict(finished.metrics), swept, _typed_keys(folder), table)
    _set_monitor(run)
    return run


def _set_monitor(run: Run) -> None:
    """The run's best monitor value: ``<monitor>_best``, else the best logged in ``csv/metrics.csv``, else its last."""
    from medvision.utils.runs import LOGGED_METRICS_FILE, logged_values

    _, _, monitor, mode = run.table
    if not monitor:
        return
    best = run.metrics.get(f"{monitor}_best")
    if best is not None and math.isfinite(best):
        run.monitor, run.monitor_from, run.monitor_source = best, "best", f"metrics.json {monitor}_best"
        return
    logged = logged_values(run.path, monitor)
    if logged:
        run.monitor = min(logged) if mode == "min" else max(logged)
        run.monitor_from, run.monitor_source = "best", LOGGED_METRICS_FILE
        return
    if math.isfinite(run.metrics.get(monitor, math.nan)):
        run.monitor, run.monitor_from, run.monitor_source = run.metrics[monitor], "last", f"metrics.json {monitor}"


def find_runs(paths: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """The finished runs named by ``paths`` and the paths that hold none.

    Args:
        paths: run folders, or folders holding runs (a multirun folder, ``logs/``).

    Returns:
        ``(runs, empty)``: the runs, each once, in path order; the given paths with no finished run.

    Raises:
        MedvisionError: a path does not exist.
    """
    from medvision.utils.runs import METRICS_FILE, read_run, run_folders

    runs: dict[Path, Run] = {}
    empty = []
    for given in paths:
        if not Path(given).exists():
            raise MedvisionError(f"{given}: no such file or folder", fix="name run folders, multirun folders or logs/")
        folders, _ = run_folders([given], METRICS_FILE)
        finished = [f for f in (read_run(folder) for folder in folders) if f is not None]
        if not finished:
            empty.append(str(given))
        for one in finished:
            run = _as_run(one)
            runs.setdefault(run.path, run)
    return list(runs.values()), empty


def _setting_columns(runs: Sequence[Run]) -> list[str]:
    """The keys that say how the rows of ``runs`` differ (see the module docstring)."""

    def value(run: Run, key: str) -> str:
        return _canonical(run.settings.get(key, _MISSING))

    keys = set().union(*(r.settings for r in runs))
    varying = [k for k in sorted(keys) if len({value(r, k) for r in runs}) > 1]

    def setting(key: str) -> str | None:
        """``key`` as a setting column: a group choice (``model/net``) by its ``_target_``."""
        dotted = key.replace("/", ".")
        for candidate in (key, f"{dotted}._target_", dotted):
            if candidate in keys and not per_run_key(candidate):
                return candidate
        return None

    columns: list[str] = []
    for run in runs:  # what the sweeps say they varied, even where only one value finished
        for key in map(setting, run.swept or []):
            if key is not None and key not in columns:
                columns.append(key)
    for run in runs:  # what the command lines set differently
        for key in map(setting, run.typed):
            if key is not None and key not in columns and key in varying:
                columns.append(key)

    def determined(key: str) -> bool:
        seen: dict[tuple[str, ...], str] = {}
        return all(seen.setdefault(tuple(value(r, c) for c in columns), value(r, key)) == value(r, key) for r in runs)

    for key in sorted(varying, key=lambda k: (k.count("."), k)):
        if key not in columns and not determined(key):
            columns.append(key)
    return columns


def _stats(values: Iterable[float | None]) -> dict[str, Any]:
    from medvision.utils.runs import mean_std

    mean, std, n = mean_std(values)
    return {"mean": mean, "std": std, "n": n}


def _metric_names(runs: Sequence[Run], all_metrics: bool) -> list[str]:
    tested = sorted({k for r in runs for k in r.metrics if k.split("/", 1)[0].startswith("test") and "/" in k})
    main = [m for m in MAIN_TEST_METRICS if m in tested]
    if all_metrics or not main:
        return main + [m for m in tested if m not in main]
    return main


def _table(key: tuple[str, str, str, str], runs: Sequence[Run], all_metrics: bool) -> dict[str, Any]:
    task, model, monitor, mode = key
    columns = _setting_columns(runs)
    metrics = _metric_names(runs, all_metrics)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_canonical(run.settings), []).append(run)
    rows = []
    for members in groups.values():
        sources = {r.monitor_from for r in members if r.monitor_from}
        rows.append(
            {
                "settings": {c: members[0].settings[c] for c in columns if c in members[0].settings},
                "n": len(members),
                "runs": [str(r.path) for r in members],
                "monitor": {**_stats(r.monitor for r in members), "from": "+".join(sorted(sources)) or None},
                "metrics": {m: _stats(r.metrics.get(m) for r in members) for m in metrics},
                "per_run": [
                    {
                        "run": str(r.path),
                        "monitor": r.monitor,
                        "monitor_from": r.monitor_from,
                        "monitor_source": r.monitor_source,
                        **{m: r.metrics.get(m) for m in metrics},
                    }
                    for r in members
                ],
            }
        )
    sign = -1.0 if mode == "max" else 1.0
    rows.sort(
        key=lambda row: (
            not math.isfinite(row["monitor"]["mean"]),
            sign * row["monitor"]["mean"] if math.isfinite(row["monitor"]["mean"]) else 0.0,
            _canonical(row["settings"]),
        )
    )
    name = model.rsplit(".", 1)[-1]
    return {
        "problem": PROBLEMS.get(name, name),
        "model": model,
        "task": task,
        "monitor": monitor,
        "monitor_mode": mode,
        "columns": columns,
        "metrics": metrics,
        "n_runs": len(runs),
        "data": sorted({str(r.settings.get("data._target_", "unknown")).rsplit(".", 1)[-1] for r in runs}),
        "rows": rows,
    }


def compare_runs(paths: Sequence[str | Path], all_metrics: bool = False) -> dict[str, Any]:
    """The comparison of the finished runs named by ``paths``: one table per problem.

    Args:
        paths: run folders, or folders holding runs (a multirun folder, ``logs/``).
        all_metrics: every test metric, not only :data:`MAIN_TEST_METRICS`.

    Returns:
        ``{"paths", "empty", "tables"}``; each table ``{"problem", "model", "task", "monitor",
        "monitor_mode", "columns", "metrics", "n_runs", "data", "rows"}`` (``data``: the
        DataModules' class names), each row
        ``{"settings", "n", "runs", "monitor": {"mean", "std", "n", "from"}, "metrics": {name:
        {"mean", "std", "n"}}, "per_run"}``.

    Raises:
        MedvisionError: a path does not exist, or no path holds a finished run.
    """
    runs, empty = find_runs(paths)
    if not runs:
        raise MedvisionError(
            f"no finished run (metrics.json + config_resolved.yaml) in or below {', '.join(map(str, paths))}",
            fix="name run folders, multirun folders or logs/ of medvision-train runs that have finished",
        )
    tables: dict[tuple[str, str, str, str], list[Run]] = {}
    for run in runs:
        tables.setdefault(run.table, []).append(run)
    ordered = sorted(tables.items(), key=lambda item: (item[0][0] != "train", item[0]))
    return {
        "paths": [str(p) for p in paths],
        "empty": empty,
        "tables": [_table(key, members, all_metrics) for key, members in ordered],
    }


# ----------------------------------------------------------------------------- formatting
def _show(value: Any, limit: int = 40) -> str:
    """A setting's value, short: class paths by their class name, numbers as typed."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str):
        text = value.rsplit(".", 1)[-1] if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", value) else value
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v, limit) for v in value) + "]"
    else:
        text = json.dumps(value, default=str)
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(stats: Mapping[str, Any], n: int) -> str:
    if not stats["n"]:
        return "-"
    text = f"{stats['mean']:.4f}" if stats["n"] < 2 else f"{stats['mean']:.4f} ± {stats['std']:.4f}"
    return text if stats["n"] == n else f"{text} (n={stats['n']})"


def _markdown_table(header: list[str], rows: list[list[str]], numeric_from: int) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i >= numeric_from else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 1) + ":" if i >= numeric_from else "-" * (w + 2) for i, w in enumerate(widths)]
    return [line(header), "|" + "|".join(rule) + "|", *(line(r) for r in rows)]


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def to_markdown(comparison: Mapping[str, Any]) -> str:
    """The comparison as markdown: per table a heading, the rows, and what the numbers are."""
    lines = []
    for table in comparison["tables"]:
        rows, monitor = table["rows"], table["monitor"]
        task = "" if table["task"] == "train" else f" ({table['task']})"
        runs, settings = _count(table["n_runs"], "run"), _count(len(rows), "setting")
        lines += [f"## {table['problem']}{task}: {runs}, {settings}", ""]
        header = [*table["columns"], "n", f"best {monitor}" if monitor else "monitor", *table["metrics"]]
        body = []
        for row in rows:
            best = _cell(row["monitor"], row["n"])
            if row["monitor"]["from"] and "last" in row["monitor"]["from"]:
                best += f" {LAST_MARK}"
            settings = [_show(row["settings"][c]) if c in row["settings"] else "-" for c in table["columns"]]
            body.append(
                [*settings, str(row["n"]), best, *(_cell(row["metrics"][m], row["n"]) for m in table["metrics"])]
            )
        lines += _markdown_table(header, body, numeric_from=len(table["columns"]))
        direction = "higher" if table["monitor_mode"] == "max" else "lower"
        lines += [
            "",
            f"mean ± std (sample, ddof=1) over the n runs of a setting (they differ only in seed or fold); "
            f"sorted by best {monitor} ({direction} is better).",
        ]
        if any(row["monitor"]["from"] and "last" in row["monitor"]["from"] for row in rows):
            lines.append(
                f"{LAST_MARK} the last {monitor} of a run that recorded no best "
                f"(no {monitor}_best in its metrics.json, no {monitor} in a csv/metrics.csv)."
            )
        lines.append("")
    return "\n".join(lines)


def _csv_text(comparison: Mapping[str, Any]) -> str:
    """One line per row of every table: its settings, n, the monitor and the metrics (mean, std, n), its runs."""
    import csv
    import io

    settings = list(dict.fromkeys(c for t in comparison["tables"] for c in t["columns"]))
    metrics = list(dict.fromkeys(m for t in comparison["tables"] for m in t["metrics"]))
    header = ["problem", "task", "monitor", "monitor_mode", *settings, "n"]
    header += ["monitor mean", "monitor std", "monitor n", "monitor from"]
    header += [f"{m} {s}" for m in metrics for s in ("mean", "std", "n")] + ["runs"]
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    for table in comparison["tables"]:
        for row in table["rows"]:
            line: dict[str, Any] = {k: table[k] for k in ("problem", "task", "monitor", "monitor_mode")}
            for key, value in row["settings"].items():
                line[key] = value if isinstance(value, str) else json.dumps(value)
            line["n"] = row["n"]
            for s in ("mean", "std", "n", "from"):
                line[f"monitor {s}"] = _csv_number(row["monitor"][s])
            for m, stats in row["metrics"].items():
                for s in ("mean", "std", "n"):
                    line[f"{m} {s}"] = _csv_number(stats[s])
            line["runs"] = ";".join(row["runs"])
            writer.writerow(line)
    return out.getvalue()


def _csv_number(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value


def write_comparison(comparison: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``compare.md``, ``compare.csv`` and ``compare.json`` into ``out_dir`` (atomically).

    Returns:
        The files written.
    """
    from medvision.utils.io import atomic_write_json, atomic_write_text
    from medvision.utils.runs import json_safe

    out = Path(out_dir)
    return [
        atomic_write_text(out / f"{OUTPUT_NAME}.md", to_markdown(comparison)),
        atomic_write_text(out / f"{OUTPUT_NAME}.csv", _csv_text(comparison)),
        atomic_write_json(out / f"{OUTPUT_NAME}.json", json_safe(comparison)),
    ]


@dataclass
class Report:
    """What :func:`report` did: the comparison and the files it wrote."""

    comparison: dict[str, Any]
    written: list[Path] = field(default_factory=list)


def report(
    paths: Sequence[str | Path], all_metrics: bool = False, out: str | Path | None = None, as_json: bool = False
) -> Report:
    """Compare the runs named by ``paths``, print the tables (or the JSON) and write the files.

    Args:
        paths: run folders, or folders holding runs.
        all_metrics: every test metric, not only the main ones.
        out: a folder to write ``compare.md``/``.csv``/``.json`` into (``None``: none written).
        as_json: print the comparison as JSON instead of the markdown tables.

    Raises:
        MedvisionError: ``out`` is a file; see also :func:`compare_runs`.
    """
    from medvision.utils.runs import json_safe

    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise MedvisionError(f"--out {out} is a file", fix="name a folder (it is created if missing)")
    comparison = compare_runs(paths, all_metrics=all_metrics)
    for given in comparison["empty"]:
        print(f"note: {given} holds no finished run (metrics.json + config_resolved.yaml)", file=sys.stderr)
    written = write_comparison(comparison, out) if out is not None else []
    if as_json:
        print(json.dumps(json_safe(comparison), indent=2))
    else:
        print(to_markdown(comparison), end="")
        if any("MedMNISTDataModule" in t["data"] for t in comparison["tables"]):
            print("MedMNIST runs: `medvision-compare --paper medmnist PATH...` puts them beside the published numbers.")
        for path in written:
            print(f"written: {path}")
    return Report(comparison, written)
