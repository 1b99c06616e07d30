"""Benchmark 11: training at real size: host memory of DDP ranks x workers per cache mode; data wait per num_workers.

Data: the real-size CT set (``realsize_data.py``: four 512 x 512 x 300 int16 HU cases, 0.8 x 0.8 x
1.5 mm, ``.nii.gz``). Each run is a ``medvision-train`` process (``data=msd``, patches of 128^3, one
patch per step, the file's own spacing so nothing is resampled, validation and test off, one
intra-op thread per process) and differs from the others only in ``data.cache``, DDP ranks
(``trainer=ddp_cpu``), ``data.num_workers`` and the net.

- Memory runs (a small U-Net, so that the activations of 128^3 patches, which a GPU holds in real
  training, do not fill this CPU machine's host memory): the peak over the run of the summed
  proportional set size (Linux ``Pss`` of ``/proc/<pid>/smaps_rollup``) of every process of the run
  (the launcher, DDP ranks, DataLoader workers), sampled every 0.2 s. PSS splits a page shared by
  k processes (a memory-mapped cache file, copy-on-write pages after ``fork``) into k parts, so the
  sum is the memory the run takes from the machine; a plain sum of RSS counts shared pages once per
  process (in the JSON). ``data.cache=memory`` holds each case's preprocessed arrays in every rank
  (MONAI ``CacheDataset``); ``data.cache=preprocessed`` keeps them in memory-mapped files that every
  rank and worker reads (:mod:`medvision.data.preprocessed`; filled by the first speed run in its
  set-up, before the steps it times).
  The goal compares 2 ranks x 2 workers reading the preprocessed cache with what one process
  without workers takes today (``data.cache=memory``); the same-cache ratios are beside it.
- Speed runs (the default U-Net, ``data.cache=preprocessed``, one process, ``num_workers`` 0, 1,
  2): data wait = Lightning ``SimpleProfiler``'s ``train_dataloader_next`` over (that +
  ``run_training_batch``) after ``warmup`` steps; throughput in patches/s over the same steps.

One round per configuration (each is a full training start at real size).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import harness
import realsize_data

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "shape": (48, 48, 32),
        "cases": 2,
        "patch": 16,
        "steps": 3,
        "memory_steps": 3,
        "warmup": 1,
        "net": ["model.net.channels=[4,8]", "model.net.strides=[2]", "model.net.num_res_units=0"],
        "workers": (0,),
        # the smoke runs the goal's two sides only (the other memory runs differ only in their settings)
        "memory_runs": (("preprocessed", 2, 2), ("memory", 1, 0)),
    },
    "full": {
        "shape": None,
        "cases": realsize_data.BENCH_CASES,
        "patch": 128,
        "steps": 6,
        "memory_steps": 8,
        "warmup": 2,
        "net": [],
        "workers": (0, 1, 2),
        "memory_runs": (
            ("preprocessed", 1, 0),
            ("preprocessed", 2, 2),
            ("memory", 1, 0),
            ("memory", 2, 2),
        ),
    },
}
#: the memory runs' net: small, so that the activations of 128^3 patches, which a GPU holds in real
#: training, do not fill this CPU machine's host memory and hide what the data take
SMALL_NET = ["model.net.channels=[8,16,32]", "model.net.strides=[2,2]", "model.net.num_res_units=0"]


def data_root(ctx: harness.Context) -> tuple[Path, list[float]]:
    """The real-size CT set of this size (written on first use) and its voxel size."""
    s = ctx.pick(SIZES)
    shape = s["shape"]
    root = realsize_data.bench_set(ctx.workdir, s["cases"], shape, ctx.log)
    full, spacing = realsize_data.GEOMETRY["ct"]["shape"], realsize_data.GEOMETRY["ct"]["spacing"]
    shape = shape or full
    return root, [round(sp * f / n, 6) for sp, f, n in zip(spacing, full, shape, strict=True)]


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux ``/proc``)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_memory_mb(pid: int) -> tuple[float, float, int]:
    """Summed PSS and RSS (MiB) of ``pid`` and its descendants, and how many processes they are."""
    pss = rss = 0.0
    procs = 0
    for p in [pid, *_children(pid)]:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        procs += 1
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) / 1024
            elif line.startswith("Rss:"):
                rss += int(line.split()[1]) / 1024
    return pss, rss, procs


def run_sampled(cmd: list[str], env: dict[str, str], timeout: float = 1800) -> dict[str, float]:
    """Run ``cmd`` (must exit 0) while sampling its process tree's memory; the peaks and wall time."""
    import subprocess

    peak = {"pss_mb": 0.0, "rss_mb": 0.0, "procs": 0}
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, env=env, cwd=harness.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pss, rss, procs = tree_memory_mb(proc.pid)
                if pss > peak["pss_mb"]:
                    peak["pss_mb"], peak["procs"] = pss, procs
                peak["rss_mb"] = max(peak["rss_mb"], rss)
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            done.set()
            sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out.decode(errors='replace')[-3000:]}")
    return {**peak, "wall_s": time.perf_counter() - t0}


def one_run(
    ctx: harness.Context, root: Path, spacing: list[float], cache: str, ranks: int, workers: int, speed: bool
) -> dict[str, Any]:
    """One ``medvision-train`` run: memory peaks, data wait and throughput (``speed``: the default
    net and warm-up steps; else the small net of the memory runs)."""
    s = ctx.pick(SIZES)
    name = f"realsize-{'speed' if speed else 'memory'}-{cache}-{ranks}x{workers}"
    out = ctx.workdir / "timers" / f"{name}-{time.time_ns()}.json"
    patch = s["patch"]
    args = [
        "trainer=ddp_cpu" if ranks > 1 else "trainer=cpu",
        "data=msd",
        f"data.root={root}",
        "data.test_fraction=0",  # one case validates (a split must have one); validation is off
        "plan=none",
        f"data.transforms.pixdim=[{','.join(map(str, spacing))}]",
        f"data.patch_size=[{patch},{patch},{patch}]",
        "data.batch_size=1",
        "data.transforms.num_samples=1",
        f"data.cache={cache}",
        f"data.num_workers={workers}",
        "data.loader=torch",
        *(s["net"] if speed or ctx.size == "tiny" else SMALL_NET),
        f"++trainer.max_steps={s['steps'] if speed else s['memory_steps']}",
        "++trainer.limit_val_batches=0",
        "++trainer.profiler=simple",
        "test=false",
        "print_config=false",
        f"paths.root_dir={ctx.workdir}",
        f"hydra.run.dir={ctx.run_dir(name)}",
        *harness.timer_overrides(out, s["warmup"] if speed else 0),
    ]
    memory = run_sampled([str(harness.BIN / "medvision-train"), *args], ctx.env())
    rank0 = json.loads(out.read_text())
    w = s["warmup"] if speed else 0
    fetch, batch = sum(rank0["fetch_s"][w:]), sum(rank0["batch_s"][w:])
    return {
        **memory,
        "pss_gib": memory["pss_mb"] / 1024,
        "wait_pct": 100 * fetch / (fetch + batch) if fetch + batch else float("nan"),
        "patches_per_s": rank0["throughput"],
        "step_s": harness.median(rank0["step_s"][w:]),
    }


def _side(cache: str, ranks: int, workers: int) -> str:
    """A memory run's name in the report: ``2x2 preprocessed``, ``1 process memory``."""
    return f"{ranks}x{workers} {cache}" if ranks > 1 else f"1 process {cache}"


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: host memory of 2 ranks x 2 workers vs 1 process (goal <= 1.3 with the preprocessed cache);
    data wait and throughput per num_workers (goal < 5 % for the best)."""
    s = ctx.pick(SIZES)
    root, spacing = data_root(ctx)
    # the speed runs go first: the first fills the preprocessed cache in its set-up, before the steps it
    # times, so the memory runs all find it filled (filling is a one-off, not what training holds)
    speed: dict[int, dict[str, Any]] = {}
    for workers in s["workers"]:
        speed[workers] = r = one_run(ctx, root, spacing, "preprocessed", 1, workers, speed=True)
        ctx.log(
            f"    speed run, workers={workers}: data wait {r['wait_pct']:.1f} %, {r['patches_per_s']:.3f} patches/s, "
            f"step {r['step_s']:.2f} s, {r['wall_s']:.0f} s"
        )
    mem: dict[tuple[str, int, int], dict[str, Any]] = {}
    for cache, ranks, workers in s["memory_runs"]:
        mem[(cache, ranks, workers)] = r = one_run(ctx, root, spacing, cache, ranks, workers, speed=False)
        ctx.log(
            f"    memory run, cache={cache} ranks={ranks} workers={workers}: peak PSS {r['pss_gib']:.2f} GiB "
            f"({r['procs']} processes, RSS sum {r['rss_mb'] / 1024:.2f} GiB), {r['wall_s']:.0f} s"
        )
    edge = s["patch"]
    shape = "x".join(map(str, s["shape"] or realsize_data.GEOMETRY["ct"]["shape"]))
    what = f"{s['cases']} cases of {shape} ({s['cases'] - 1} train, 1 val), patches {edge}^3, batch 1"
    memory_note = (
        f"{what}, {s['memory_steps']} steps, small U-Net (8-16-32: activations, which a GPU holds, left out of "
        "host memory); peak over the run of the summed PSS of all its processes (launcher, ranks, workers); "
        "one round"
    )
    # (title, run A, run B, goal, note's addition) of the memory rows whose two runs this size made
    pairs = (
        ("with cache=preprocessed vs 1 process, cache=memory", ("preprocessed", 2, 2), ("memory", 1, 0), 1.3, ""),
        ("with cache=memory vs 1 process, cache=memory", ("memory", 2, 2), ("memory", 1, 0), None, ""),
        (
            "vs 1 process, both cache=preprocessed",
            ("preprocessed", 2, 2),
            ("preprocessed", 1, 0),
            None,
            "; the extra is each process's own Python, torch and net (not data)",
        ),
    )
    rows = [
        harness.compare_row(
            "11",
            f"Training host memory: 2 DDP ranks x 2 workers {title}",
            "GiB (PSS sum)",
            [mem[a]["pss_gib"]],
            [mem[b]["pss_gib"]],
            goal=goal,
            higher_is_better=False,
            sides=(_side(*a), _side(*b)),
            note=memory_note + extra,
        )
        for title, a, b, goal, extra in pairs
        if a in mem and b in mem
    ]
    waits = {w: r["wait_pct"] for w, r in speed.items()}
    best = min(waits, key=lambda w: waits[w])
    speed_note = (
        f"{what}, {s['steps']} steps (first {s['warmup']} not counted), the default U-Net (16-32-64-128), "
        "cache=preprocessed, 1 process, 1 thread; wait = SimpleProfiler train_dataloader_next / "
        "(that + run_training_batch)"
    )
    for w in s["workers"]:
        rows.append(
            harness.value_row(
                "11",
                f"Data wait at real size, num_workers={w}" + (" (the best)" if w == best else ""),
                "% of step time",
                [speed[w]["wait_pct"]],
                goal=5.0 if w == best else None,
                note=speed_note,
            )
        )
        rows.append(
            harness.value_row(
                "11", f"Training throughput at real size, num_workers={w}", "patches/s", [speed[w]["patches_per_s"]]
            )
        )
    return rows
