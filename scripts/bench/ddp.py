"""Benchmark 6: data-parallel training on the CPU, ``trainer=ddp_cpu`` (2 processes) vs 1 process.

Both run ``medvision-train`` (the default experiment, validation and test off) as a fresh
process with one intra-op thread per process (Lightning's DDP default; the single process is
given the same), alternating. Samples/s is summed over ranks from each rank's
:class:`harness.StepTimer` (steps after ``warmup``). A second row puts the 2 processes beside one
process using every thread the suite was given, what a user of this machine would compare.
"""

from __future__ import annotations

import json
import time
from typing import Any

import harness
import plain

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "spec": plain.SegSpec(
            patch=(16, 16, 16), num_samples=1, batch_size=1, channels=(4, 8), strides=(2,), num_res_units=0
        ),
        "steps": 3,
        "warmup": 1,
    },
    "full": {"spec": plain.SegSpec(), "steps": 8, "warmup": 2},
}


def one_run(ctx: harness.Context, trainer: str, threads: int, s: dict[str, Any]) -> dict[str, float]:
    """A ``medvision-train`` process (DDP ranks included); samples/s summed over ranks."""
    out = ctx.workdir / "timers" / f"ddp-{trainer}-{threads}-{time.time_ns()}.json"
    args = [
        f"trainer={trainer}",
        *s["spec"].overrides(),
        f"++trainer.max_steps={s['steps']}",
        "++trainer.limit_val_batches=0",
        "test=false",
        "print_config=false",
        f"paths.root_dir={ctx.workdir}",
        f"hydra.run.dir={ctx.run_dir('ddp-' + trainer)}",
        *harness.timer_overrides(out, s["warmup"]),
    ]
    harness.run_json_free([str(harness.BIN / "medvision-train"), *args], ctx.env(OMP_NUM_THREADS=str(threads)))
    ranks = [json.loads(p.read_text()) for p in sorted(out.parent.glob(out.name + "*"))]
    return {"samples_per_s": sum(r["throughput"] for r in ranks), "ranks": len(ranks), "threads": ranks[0]["threads"]}


def in_process(ctx: harness.Context, s: dict[str, Any]) -> dict[str, float]:
    """The smoke's single-process side: the same run in this process (saves a start-up)."""
    args = [*s["spec"].overrides(), f"++trainer.max_steps={s['steps']}", "++trainer.limit_val_batches=0", "test=false"]
    result = harness.medvision_run(ctx, args, "ddp-cpu", s["warmup"])
    return {"samples_per_s": result["throughput"], "ranks": 1, "threads": result["threads"]}


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: 2 ranks vs 1 process with 1 thread (goal >= 1.7), and vs 1 process with all threads."""
    s = ctx.pick(SIZES)
    harness.mni_splits(ctx)  # prepare the data once, outside the timed processes
    sides = {
        "2 processes": lambda i: one_run(ctx, "ddp_cpu", 1, s),
        "1 process": lambda i: one_run(ctx, "cpu", 1, s) if ctx.size == "full" else in_process(ctx, s),
    }
    if ctx.threads > 1:
        sides[f"1 process x {ctx.threads} threads"] = lambda i: one_run(ctx, "cpu", ctx.threads, s)
    results = harness.alternate(sides, ctx.repeats, ctx.log)
    spec = s["spec"]
    note = (
        f"`medvision-train trainer=ddp_cpu` vs `trainer=cpu`, default experiment, {spec.batch_size} volumes x "
        f"{spec.num_samples} patches of {spec.patch[0]}^3 per rank and step, {s['steps']} steps (first "
        f"{s['warmup']} not timed), 1 intra-op thread per process"
    )
    two = harness.column(results["2 processes"], "samples_per_s")
    rows = [
        harness.compare_row(
            "6",
            "DDP on CPU: 2 processes vs 1 (1 thread each)",
            "patches/s",
            two,
            harness.column(results["1 process"], "samples_per_s"),
            goal=1.7,
            sides=("2 processes", "1 process"),
            note=note,
        )
    ]
    key = f"1 process x {ctx.threads} threads"
    if key in results:
        rows.append(
            harness.compare_row(
                "6",
                f"DDP on CPU: 2 processes vs 1 process x {ctx.threads} threads",
                "patches/s",
                two,
                harness.column(results[key], "samples_per_s"),
                goal=None,
                sides=("2 processes", key),
                note=note,
            )
        )
    return rows
