"""Benchmark 8: time to quality, medvision's defaults vs a plain hand-written loop.

The plain loop is what a researcher writes first with MONAI's tutorials as a guide: the same
U-Net and 48^3 patches, ``DiceCELoss``, Adam, a positive/negative patch sampler (1:1), no other
augmentation, fp32. A reference gets its best settings: the loop is trained at each learning rate
of ``LEARNING_RATES`` (1e-4 is MONAI's tutorial rate) for ``sweep`` seconds (40 s in the full
suite) and the rate whose validation Dice is then highest is its best (chosen on validation, every
rate's figure reported: a successive-halving step, as in Li et al., Hyperband, JMLR 18, 2018).
That rate is trained again from the start for ``budget`` seconds (100 s in the full suite: the
sweep and that run keep `make bench` under 30 minutes on a 2-core CPU); its Dice at the budget is
the target and its first validation at or above it is the plain loop's time. medvision then
trains with the default experiment as shipped (``medvision-train`` defaults) until its validation
Dice first reaches that target (or the budget passes: then the goal is missed), in the precision
its CPU default resolves to on this machine (``bf16-mixed`` on a CPU with AMX, else ``32-true``:
:mod:`medvision.utils.precision`; the row's note names it). Both validate on the same blocks every
``val_every`` steps; the clocks pause during validation, so the cadence costs neither side. One
round (the plain runs alone take four sweeps and a budget).
"""

from __future__ import annotations

import math
from typing import Any

import harness
import plain
import seg_train

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "spec": plain.SegSpec(
            patch=(16, 16, 16), num_samples=1, batch_size=1, channels=(4, 8), strides=(2,), num_res_units=0
        ),
        "sweep": 1.0,
        "budget": 1.0,
        "val_every": 2,
        "extra": [],
        "rates": (1e-4, 1e-3),
    },
    "full": {"spec": plain.SegSpec(), "sweep": 40.0, "budget": 100.0, "val_every": 8, "extra": []},
}
#: the plain loop's learning rates (Adam); the best on validation is its reference
LEARNING_RATES: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)


def plain_spec(spec: plain.SegSpec, lr: float = 1e-4) -> plain.SegSpec:
    """The hand-written loop's choices on the medvision spec's sizes."""
    return plain.SegSpec(
        **{
            **spec.__dict__,
            "optimizer": "adam",
            "lr": lr,
            "weight_decay": 0.0,
            "neg": 1.0,
            "augment": False,
            "precision": "32-true",
        }
    )


def first_reach(points: list[tuple[float, float]], target: float) -> float:
    """Training-clock seconds of the first validation at or above ``target`` (inf: never)."""
    return next((t for t, d in points if d >= target), math.inf)


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: the plain loop's Dice per rate and at the budget; seconds to reach it, medvision vs plain (goal <= 0.5)."""
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import Compose

    s = ctx.pick(SIZES)
    spec, budget, val_every = s["spec"], s["budget"], s["val_every"]
    rates = s.get("rates", LEARNING_RATES)
    val = DataLoader(
        CacheDataset(harness.mni_splits(ctx)["val"], Compose(plain.load_transforms(plain_spec(spec))), progress=False),
        batch_size=1,
    )

    def plain_run(lr: float, seconds: float) -> list[tuple[float, float]]:
        """The plain loop at ``lr`` for ``seconds`` of training clock: its validation curve."""
        log, _ = seg_train.plain_side(
            ctx,
            plain_spec(spec, lr),
            steps=10**9,
            warmup=0,
            scheduler=None,
            val_loader=val,
            val_every=val_every,
            time_limit=seconds,
        )
        points = list(log.val_points)
        final = points[-1][1] if points else float("nan")
        ctx.log(f"    plain, Adam {lr:g}: Dice {final:.3f} after {log.train_clock_s:.0f} s ({len(log.ends)} steps)")
        return points

    sweep = s["sweep"]
    finals: dict[float, float] = {}
    for lr in rates:
        swept = plain_run(lr, sweep)
        finals[lr] = swept[-1][1] if swept else -math.inf
    best = max(finals, key=lambda lr: finals[lr])
    points = plain_run(best, budget)
    target = points[-1][1] if points else float("nan")
    plain_time = first_reach(points, target)
    ctx.log(f"    plain: best rate {best:g} (Dice {target:.3f}), first reached at {plain_time:.0f} s")
    # the shipped defaults; only the validation cadence (every val_every steps) and the stop rule are added
    steps_per_epoch = math.ceil(len(harness.mni_splits(ctx)["train"]) / spec.batch_size)
    every = max(1, val_every // steps_per_epoch)
    overrides = [
        *(spec.overrides() if ctx.size == "tiny" else []),
        f"trainer.check_val_every_n_epoch={every}",
        "test=false",
        *s["extra"],
    ]
    result = harness.medvision_run(ctx, overrides, "time_to_quality", warmup=0, stop_dice=target, time_limit=budget)
    mv_time = first_reach([tuple(p) for p in result["val_points"]], target)
    reached = math.isfinite(mv_time)
    ctx.log(
        f"    medvision: {'reached' if reached else 'did not reach'} {target:.3f} "
        f"{f'at {mv_time:.0f} s' if reached else f'in {budget:.0f} s'} ({result['steps']} steps)"
    )
    from medvision.utils.precision import default_precision

    by_rate = ", ".join(f"{lr:g}: {d:.3f}" for lr, d in finals.items())
    note = (
        f"plain: Adam at its best rate {best:g} of {by_rate} (validation Dice after {sweep:.0f} s each), "
        f"trained again for {budget:.0f} s; DiceCE, pos:neg 1:1 patches, no augmentation, fp32; medvision: the "
        f"default experiment as shipped (trainer.precision resolved to {default_precision('cpu')} on this CPU); "
        f"validation every {val_every} steps on the val blocks, clocks exclude "
        "validation; one round"
        + (
            ""
            if reached
            else f"; medvision did NOT reach the target within {budget:.0f} s "
            "(its figure is that budget, a lower bound)"
        )
    )
    mv_time = mv_time if reached else budget
    return [
        *(
            harness.value_row(
                "8",
                f"Time to quality: plain loop at Adam {lr:g}, Dice after {sweep:.0f} s (the rate sweep)",
                "Dice",
                [d],
                name="plain",
            )
            for lr, d in finals.items()
        ),
        harness.value_row(
            "8",
            f"Time to quality: the plain loop's Dice after {budget:.0f} s at its best rate (the target)",
            "Dice",
            [target],
            note=note,
            name="plain",
        ),
        harness.compare_row(
            "8",
            "Time to quality: seconds to reach the target",
            "s",
            [mv_time],
            [plain_time],
            goal=0.5,
            higher_is_better=False,
            note=note,
        ),
    ]
