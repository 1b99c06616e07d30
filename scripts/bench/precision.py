"""Benchmark 7: ``trainer.precision=bf16-mixed`` vs ``32-true`` on the CPU.

medvision's default experiment, the same seed and number of steps for both; throughput
(patches/s after ``warmup`` steps) and the validation Dice after the last step. Alternating
runs in one process.
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
        "warmup": 1,
    },
    "full": {"spec": plain.SegSpec(), "epochs": 8, "warmup": 2},
}


def one_run(ctx: harness.Context, precision: str, s: dict[str, Any]) -> dict[str, float]:
    """Train ``epochs`` epochs at ``precision``, validate once at the end; throughput and Dice."""
    spec = plain.SegSpec(**{**s["spec"].__dict__, "precision": precision})
    overrides = [
        *spec.overrides(),
        f"trainer.max_epochs={s['epochs']}",
        f"trainer.check_val_every_n_epoch={s['epochs']}",
        "test=false",
    ]
    result = harness.medvision_run(ctx, overrides, f"precision-{precision}", s["warmup"])
    dice = result["val_points"][-1][1] if result["val_points"] else float("nan")
    return {"patches_per_s": result["throughput"], "dice": dice, "steps": result["steps"]}


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: throughput bf16/fp32 (reported), Dice of each, |Dice difference| (goal <= 0.01)."""
    s = ctx.pick(SIZES)
    results = harness.alternate(
        {"bf16-mixed": lambda i: one_run(ctx, "bf16-mixed", s), "32-true": lambda i: one_run(ctx, "32-true", s)},
        ctx.repeats,
        ctx.log,
    )
    spec = s["spec"]
    note = (
        f"default experiment, {s['epochs']} epochs ({spec.batch_size} volumes x {spec.num_samples} patches of "
        f"{spec.patch[0]}^3 per step), seed 42, validation Dice (mean GM/WM, whole val blocks) after the last step"
    )
    bf16, fp32 = results["bf16-mixed"], results["32-true"]
    diffs = [abs(a - b) for a, b in zip(harness.column(bf16, "dice"), harness.column(fp32, "dice"), strict=True)]
    return [
        harness.compare_row(
            "7",
            "Precision: training throughput",
            "patches/s",
            harness.column(bf16, "patches_per_s"),
            harness.column(fp32, "patches_per_s"),
            goal=None,
            sides=("bf16-mixed", "32-true"),
            note=note,
        ),
        harness.compare_row(
            "7",
            "Precision: validation Dice after the same steps",
            "Dice",
            harness.column(bf16, "dice"),
            harness.column(fp32, "dice"),
            goal=None,
            sides=("bf16-mixed", "32-true"),
            note=note,
        ),
        harness.value_row(
            "7", "Precision: abs(Dice bf16 - Dice fp32)", "Dice", diffs, goal=0.01, inclusive=True, note=note
        ),
    ]
