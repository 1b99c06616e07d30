"""The shared part of the benchmark suite: context, A-B-A-B alternation, medians, report.

Every benchmark module (``seg_train.py``, ``cls_train.py``, ...) exposes
``run(ctx: Context) -> list[dict]``: rows made by :func:`compare_row` or :func:`value_row`.
:func:`write_report` turns them, with the machine facts, into JSON and a markdown table
(``BENCHMARKS.md``). :class:`StepTimer` is the Lightning callback that times the medvision
side (it writes JSON, so it also works inside ``medvision-train`` subprocesses and DDP ranks).

Rules every benchmark follows: both sides do identical work, run alternately (A B, B A, A B ...)
in one process or in alternating fresh processes, ``repeats`` times, with a fixed, printed thread
count; the table shows medians, the ratio of the medians and every single figure.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the repository root and this folder
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
#: console scripts of the interpreter running the suite
BIN = Path(sys.executable).parent
#: subprocesses print their result on one line starting with this marker
MARKER = "BENCH_JSON "


@dataclass
class Context:
    """What every benchmark gets.

    Args:
        size: ``tiny`` (the CI smoke: every code path once, seconds) or ``full``.
        repeats: A-B pairs per comparison.
        threads: torch intra-op threads of every process (``torch.set_num_threads``).
        workdir: ``paths.root_dir`` of the medvision runs (``MEDVISION_HOME`` of subprocesses; data are prepared
            here once) and scratch space of the plain side.
        log: where progress lines go.
    """

    size: str = "full"
    repeats: int = 3
    threads: int = 1
    workdir: Path = field(default_factory=lambda: Path("bench-work"))
    log: Callable[[str], None] = print
    _runs: int = 0

    def pick(self, sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The settings of this size from a benchmark's ``SIZES`` table."""
        return sizes[self.size]

    def run_dir(self, name: str) -> Path:
        """A fresh output folder for one run (never reused: finished runs are not overwritten)."""
        self._runs += 1
        path = self.workdir / "runs" / f"{self._runs:03d}-{name}-{os.getpid()}"
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a subprocess: fixed threads, offline W&B, this suite on PYTHONPATH."""
        env = dict(os.environ)
        for var in ("HYDRA_FULL_ERROR", "MEDVISION_DEBUG"):
            env.pop(var, None)
        paths = [str(BENCH_DIR), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            OMP_NUM_THREADS=str(self.threads),
            MKL_NUM_THREADS=str(self.threads),
            MEDVISION_HOME=str(self.workdir),
            WANDB_MODE="offline",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(paths),
        )
        env.update(extra)
        return env


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads of this process (and OpenMP's for what starts later)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def machine_facts(threads: int) -> dict[str, Any]:
    """CPU, cores, memory, load, library versions and the thread setting of this run."""
    import lightning
    import monai
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "bf16_hardware": "amx_bf16" in flags or "avx512_bf16" in flags,
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "lightning": lightning.__version__,
        "torch_threads": threads,
    }


# ------------------------------------------------------------------------------ measuring
def alternate(
    sides: dict[str, Callable[[int], dict[str, float]]],
    repeats: int,
    log: Callable[[str], None] = print,
    rounds: dict[str, int] | None = None,
    concurrent: int = 1,
) -> dict[str, list[dict[str, float]]]:
    """Run the sides in alternating rounds, each call getting its round number.

    Odd rounds run the sides in reverse order (A B, B A, A B, ...), so that neither side
    always runs first in a process (first runs pay one-time costs such as kernel caches).

    Args:
        rounds: sides that run fewer than ``repeats`` rounds (a reference only reported beside a row).
        concurrent: calls of a round run this many at once. Only for figures that do not depend on
            time or on what else runs (a fresh process's own peak memory), never for a clock.

    Returns:
        ``{side: [result of round 0, round 1, ...]}``.
    """
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    rounds = rounds or {}
    for i in range(repeats):
        order = list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]
        order = [(name, fn) for name, fn in order if i < rounds.get(name, repeats)]
        if concurrent > 1:  # fresh processes started from threads
            with ThreadPoolExecutor(concurrent) as pool:
                futures = [(name, pool.submit(fn, i)) for name, fn in order]
                results = [(name, future.result()) for name, future in futures]
        else:  # in this thread: an in-process side keeps the main thread's torch settings and signal handlers
            results = [(name, fn(i)) for name, fn in order]
        for name, result in results:
            log(
                f"    {name} #{i}: "
                + ", ".join(f"{k}={_fmt(v)}" for k, v in result.items() if isinstance(v, (int, float)))
            )
            out[name].append(result)
    return out


def median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN when there is none)."""
    finite = [float(v) for v in values if v is not None and _finite(v)]
    return statistics.median(finite) if finite else float("nan")


def column(results: Sequence[dict[str, float]], key: str) -> list[float]:
    """One figure of every round."""
    return [float(r[key]) for r in results]


def _finite(v: Any) -> bool:
    try:
        return abs(float(v)) != float("inf") and float(v) == float(v)
    except (TypeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not _finite(v):
        return str(v)
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.01:
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:.2f}"
    return f"{v:.2e}"


def compare_row(
    bench: str,
    title: str,
    unit: str,
    medvision: Sequence[float],
    plain: Sequence[float],
    goal: float | None,
    *,
    higher_is_better: bool = True,
    sides: tuple[str, str] = ("medvision", "plain"),
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A row comparing two sides: medians, the ratio ``a / b`` of the medians, the goal on it.

    Args:
        bench: the benchmark's number in the issue ("1" ... "8").
        title: what is measured.
        unit: unit of the figures.
        medvision: every round's figure of side A.
        plain: every round's figure of side B.
        goal: the ratio ``a / b`` must be ``>= goal`` (``higher_is_better``) or ``<= goal``.
        sides: names of side A and side B.
        note: one line on how it was measured.
        extra: other facts of the comparison (JSON only), e.g. checks that both sides did the same work.
    """
    a, b = median(medvision), median(plain)
    ratio = a / b if _finite(a) and _finite(b) and b != 0 else float("nan")
    met = None
    goal_text = ""
    if goal is not None:
        met = bool(ratio >= goal) if higher_is_better else bool(ratio <= goal)
        goal_text = f"{sides[0]}/{sides[1]} {'>=' if higher_is_better else '<='} {goal:g}"
    return {
        "bench": bench,
        "title": title,
        "unit": unit,
        "a_name": sides[0],
        "b_name": sides[1],
        "a": a,
        "b": b,
        "ratio": ratio,
        "goal": goal_text,
        "met": met,
        "a_runs": [float(v) for v in medvision],
        "b_runs": [float(v) for v in plain],
        "note": note,
        "extra": extra or {},
    }


def value_row(
    bench: str,
    title: str,
    unit: str,
    values: Sequence[float],
    goal: float | None = None,
    *,
    higher_is_better: bool = False,
    inclusive: bool = False,
    note: str = "",
    name: str = "medvision",
) -> dict[str, Any]:
    """A row of one figure (median of ``values``) with an optional bound ``goal`` on it.

    Args:
        name: whose figure it is (the A column).
        goal: the median must be ``>= goal`` (``higher_is_better``), else ``< goal``
            (``<= goal`` when ``inclusive``).
    """
    value = median(values)
    met = None
    goal_text = ""
    if goal is not None:
        if higher_is_better:
            met, sign = bool(value >= goal), ">="
        else:
            met, sign = (bool(value <= goal), "<=") if inclusive else (bool(value < goal), "<")
        goal_text = f"{sign} {goal:g} {unit}"
    return {
        "bench": bench,
        "title": title,
        "unit": unit,
        "a_name": name,
        "b_name": "",
        "a": value,
        "b": None,
        "ratio": None,
        "goal": goal_text,
        "met": met,
        "a_runs": [float(v) for v in values],
        "b_runs": [],
        "note": note,
    }


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB) since start or :func:`reset_peak_rss`.

    Linux ``VmHWM`` of ``/proc/self/status``; elsewhere ``getrusage`` maxrss. (``ru_maxrss`` is not
    used on Linux: it survives ``fork``+``exec``, so a child started by a big parent reports
    the parent's peak.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def rss_mb() -> float:
    """Resident memory of this process now, MiB (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_json(cmd: Sequence[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> dict[str, Any]:
    """Run a subprocess that prints ``BENCH_JSON {...}``; return that object (and its wall time).

    Raises:
        RuntimeError: the process failed or printed no result (its output tail is in the message).
    """
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        env=env,
        cwd=cwd or REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    result = json.loads(lines[-1][len(MARKER) :])
    result["process_wall_s"] = wall
    return result


def run_json_free(cmd: Sequence[str], env: dict[str, str], timeout: float = 900, cwd: Path | None = None) -> float:
    """Run a subprocess that must exit 0 (its results go to files); return its wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        env=env,
        cwd=cwd or REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return time.perf_counter() - t0


def emit(result: dict[str, Any]) -> None:
    """Print a subprocess's result for :func:`run_json`."""
    print(MARKER + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ medvision side
def compose(ctx: Context, overrides: Sequence[str], name: str) -> Any:
    """Compose the real config tree as ``medvision-train`` would, into a fresh run folder."""
    from medvision.utils.config import compose as _compose

    return _compose([f"paths.root_dir={ctx.workdir}", "print_config=false", *overrides], output_dir=ctx.run_dir(name))


def timer_overrides(out: Path, warmup: int, **kwargs: Any) -> list[str]:
    """Hydra overrides adding :class:`StepTimer` (writing ``out``) to a run's callbacks."""
    items = [
        "+callbacks.bench_timer._target_=harness.StepTimer",
        f"+callbacks.bench_timer.out={out}",
        f"+callbacks.bench_timer.warmup={warmup}",
    ]
    items += [f"+callbacks.bench_timer.{k}={v}" for k, v in kwargs.items() if v is not None]
    return items


def medvision_run(ctx: Context, overrides: Sequence[str], name: str, warmup: int, **timer: Any) -> dict[str, Any]:
    """One ``medvision.train.run`` in this process, timed by :class:`StepTimer`; its JSON."""
    from medvision.train import run

    out = ctx.workdir / "timers" / f"{name}-{time.time_ns()}.json"
    cfg = compose(ctx, [*overrides, *timer_overrides(out, warmup, **timer)], name)
    metrics = run(cfg)
    result = json.loads(out.read_text())
    result["metrics"] = metrics
    return result


_SPLITS: dict[str, dict[str, list[dict[str, Any]]]] = {}


def mni_splits(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """File records of the default experiment's train/val/test splits (data prepared on first use).

    The plain side gets the same file lists as medvision; how it loads them is its own.
    """
    key = str(ctx.workdir)
    if key not in _SPLITS:
        from hydra.utils import instantiate

        cfg = compose(ctx, [], "splits")
        datamodule = instantiate(cfg.data, audit=False)
        _SPLITS[key] = {
            name: [{"image": r["image"], "label": r["label"]} for r in records]
            for name, records in datamodule.splits.items()
        }
    return _SPLITS[key]


def throughput(starts: Sequence[float], ends: Sequence[float], sizes: Sequence[int], warmup: int) -> float:
    """Samples per second from the start of step ``warmup`` to the end of the last step."""
    if len(starts) <= warmup:
        return float("nan")
    return sum(sizes[warmup:]) / max(ends[-1] - starts[warmup], 1e-9)


try:  # the callback needs Lightning; the rest of the harness does not
    from lightning.pytorch.callbacks import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]


class StepTimer(_Callback):  # type: ignore[misc,valid-type]
    """Times training steps, validation and data waiting of a Lightning run; writes JSON.

    The training clock runs from ``on_train_start`` and pauses during validation. With
    ``stop_dice`` it stops training once ``val/dice_mean`` reaches it; with ``time_limit`` once
    the training clock passes it. Each rank writes ``out`` (rank 0) or ``out.rank<r>``.

    Args:
        out: JSON file written at the end of training.
        warmup: steps left out of the throughput (the first steps allocate memory).
        stop_dice: stop when the validation Dice first reaches this value.
        time_limit: stop when the training clock passes this many seconds.
        monitor: the validation metric recorded (and compared with ``stop_dice``).
    """

    def __init__(
        self,
        out: str,
        warmup: int = 1,
        stop_dice: float | None = None,
        time_limit: float | None = None,
        monitor: str = "val/dice_mean",
    ) -> None:
        super().__init__()
        self.out, self.warmup, self.stop_dice, self.time_limit, self.monitor = (
            out,
            warmup,
            stop_dice,
            time_limit,
            monitor,
        )
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.sizes: list[int] = []
        self.val_time = 0.0
        self.val_points: list[tuple[float, float]] = []
        self.t0 = 0.0
        self._val_start = 0.0

    def clock(self) -> float:
        """Seconds of training so far, validation excluded."""
        return time.perf_counter() - self.t0 - self.val_time

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.starts.append(time.perf_counter())
        image = batch["image"] if isinstance(batch, dict) else batch[0]
        self.sizes.append(int(image.shape[0]))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ends.append(time.perf_counter())
        if self.time_limit is not None and self.clock() > self.time_limit:
            trainer.should_stop = True

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self.val_time += time.perf_counter() - self._val_start
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            dice = float(value)
            self.val_points.append((self.clock(), dice))
            if self.stop_dice is not None and dice >= self.stop_dice:
                trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        profiler = getattr(trainer, "profiler", None)
        durations = getattr(profiler, "recorded_durations", {}) or {}
        result = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "threads": _torch_threads(),
            "steps": len(self.ends),
            "samples": sum(self.sizes),
            "throughput": throughput(self.starts, self.ends, self.sizes, self.warmup),
            "train_clock_s": self.clock(),
            "val_time_s": self.val_time,
            "val_points": self.val_points,
            "step_s": [e - b for b, e in zip(self.starts, self.ends, strict=False)],
            "gap_s": [b - e for e, b in zip(self.ends, self.starts[1:], strict=False)],
            "fetch_s": list(durations.get("[_TrainingEpochLoop].train_dataloader_next", [])),
            "epoch_s": list(durations.get("run_training_epoch", [])),
            "batch_s": list(durations.get("run_training_batch", [])),
        }
        path = Path(self.out if trainer.global_rank == 0 else f"{self.out}.rank{trainer.global_rank}")
        from medvision.utils.io import atomic_write_json

        atomic_write_json(path, result)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# ------------------------------------------------------------------------------ report
def _cell(v: Any) -> str:
    return "" if v is None else _fmt(v)


def markdown(facts: dict[str, Any], rows: Sequence[dict[str, Any]], command: str, elapsed_s: float) -> str:
    """The ``BENCHMARKS.md`` text: header with machine facts, one table, notes per row."""
    lines = [
        "# Benchmarks: medvision vs a plain MONAI + PyTorch loop",
        "",
        "Generated by `make bench` (`scripts/bench/run.py`); do not edit by hand. Each comparison runs",
        "both sides alternately (A B, B A, A B ...) with identical work and fixed threads; figures are medians,",
        "the ratio is median(A) / median(B), every single figure is in the last column.",
        "",
        f"- command: `{command}`",
        f"- size: {facts.get('size')}, repeats: {facts.get('repeats')}, "
        f"torch threads per process: {facts['torch_threads']}",
        f"- machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gb']} GiB, bf16 hardware: "
        f"{facts['bf16_hardware']}; load average (1 min) at start {facts['load_average_1min']:.2f}, "
        f"at end {facts.get('load_average_end', float('nan')):.2f}",
        f"- software: Python {facts['python']}, torch {facts['torch']}, MONAI {facts['monai']}, "
        f"Lightning {facts['lightning']}",
        f"- date (UTC): {facts['date_utc']}; suite wall time {elapsed_s / 60:.1f} min"
        + (f"; {facts['merged']}" if facts.get("merged") else ""),
        "",
        "| # | benchmark | unit | A | A (median) | B | B (median) | A/B | goal | met | runs A / B |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        runs = " ".join(_fmt(v) for v in r["a_runs"])
        if r["b_runs"]:
            runs += " / " + " ".join(_fmt(v) for v in r["b_runs"])
        lines.append(
            f"| {r['bench']} | {r['title']} | {r['unit']} | {r['a_name']} | {_cell(r['a'])} | {r['b_name']} | "
            f"{_cell(r['b'])} | {_cell(r['ratio'])} | {r['goal']} | {met} | {runs} |"
        )
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "## How each row was measured", ""]
        seen: set[str] = set()
        for r in notes:
            key = f"{r['bench']}: {r['note']}"
            if key not in seen:
                seen.add(key)
                lines.append(f"- **{r['bench']}. {r['title']}**: {r['note']}")
    return "\n".join(lines) + "\n"


def write_report(
    facts: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    json_path: Path,
    md_path: Path,
    command: str,
    elapsed_s: float,
) -> None:
    """Write the JSON (facts + rows) and the markdown table, each atomically."""
    from medvision.utils.io import atomic_write_json, atomic_write_text

    clean = [{k: (None if isinstance(v, float) and not _finite(v) else v) for k, v in r.items()} for r in rows]
    atomic_write_json(json_path, {"machine": facts, "command": command, "elapsed_s": elapsed_s, "rows": clean})
    atomic_write_text(md_path, markdown(facts, rows, command, elapsed_s))
