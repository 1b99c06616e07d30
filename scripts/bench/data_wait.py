"""Benchmark 3: how long training waits for data, per cache mode, in the default experiment.

medvision's default experiment (validation off) with Lightning's ``SimpleProfiler``: the data
wait is the time in ``[_TrainingEpochLoop].train_dataloader_next`` (the loader's ``next``, with
its transforms) as a fraction of the training epochs' time (``run_training_epoch``). Modes
run alternately (none, memory, disk, none, ...); the disk cache is written by the first disk
run and read by the later ones (its first epoch is in the figures).
"""

from __future__ import annotations

from typing import Any

import harness
import plain

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "spec": plain.SegSpec(
            patch=(16, 16, 16), num_samples=1, batch_size=1, channels=(4, 8), strides=(2,), num_res_units=0
        ),
        "epochs": 1,
    },
    "full": {"spec": plain.SegSpec(), "epochs": 3},
}
MODES = ("none", "memory", "disk")


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: data-wait fraction per mode (goal < 5 % for memory), and epoch time per mode."""
    s = ctx.pick(SIZES)
    spec, epochs = s["spec"], s["epochs"]

    def side(mode: str) -> Any:
        def go(i: int) -> dict[str, float]:
            overrides = [
                *spec.overrides(),
                f"data.cache={mode}",
                f"trainer.max_epochs={epochs}",
                "++trainer.limit_val_batches=0",
                "++trainer.profiler=simple",
                "test=false",
            ]
            result = harness.medvision_run(ctx, overrides, f"data_wait_{mode}", warmup=0)
            fetch, epoch = sum(result["fetch_s"]), sum(result["epoch_s"])
            return {
                "wait_pct": 100 * fetch / epoch if epoch else float("nan"),
                "epoch_s": harness.median(result["epoch_s"]),
                "first_epoch_s": result["epoch_s"][0],
            }

        return go

    results = harness.alternate({m: side(m) for m in MODES}, ctx.repeats, ctx.log)
    note = (
        f"default experiment ({spec.batch_size} volumes x {spec.num_samples} patches of {spec.patch[0]}^3), "
        f"{epochs} epochs, num_workers=0, the default experiment's data.loader (thread), validation off; "
        "wait = Lightning SimpleProfiler "
        "`train_dataloader_next` / `run_training_epoch`"
    )
    rows = []
    for mode in MODES:
        waits = harness.column(results[mode], "wait_pct")
        rows.append(
            harness.value_row(
                "3",
                f"Data wait, cache={mode}",
                "% of step time",
                waits,
                goal=5.0 if mode == "memory" else None,
                note=note,
            )
        )
    for mode in MODES:
        rows.append(
            harness.value_row(
                "3",
                f"Epoch time (median epoch), cache={mode}",
                "s",
                harness.column(results[mode], "epoch_s"),
                note=note,
            )
        )
    return rows
