"""Benchmark 1: training throughput of 3D segmentation, medvision vs a plain MONAI loop.

medvision: the default experiment (MNI152 tissue blocks, ``SegmenterModule`` through
``medvision.train.run`` with its default callbacks and logger), validation off, ``steps``
steps. Plain: the same U-Net, ``DiceCELoss``, AdamW, cosine schedule, cached preprocessing,
patch sampler, augmentation, batch size and number of steps in a ``for`` loop
(:mod:`plain`). Patches per second from the start of step ``warmup`` to the end of the last.
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
        "steps": 3,
        "warmup": 1,
    },
    "full": {"spec": plain.SegSpec(), "steps": 14, "warmup": 2},
}


def medvision_side(
    ctx: harness.Context, spec: plain.SegSpec, steps: int, warmup: int, seed: int = 42, extra: list[str] | None = None
) -> dict[str, Any]:
    """One medvision training run of ``steps`` steps without validation; its timer JSON."""
    overrides = [
        *spec.overrides(),
        f"++trainer.max_steps={steps}",
        "++trainer.limit_val_batches=0",
        "test=false",
        f"seed={seed}",
        *(extra or []),
    ]
    return harness.medvision_run(ctx, overrides, "seg_train", warmup)


def plain_side(
    ctx: harness.Context,
    spec: plain.SegSpec,
    steps: int,
    warmup: int,
    seed: int = 42,
    scheduler: str | None = "cosine",
    val_loader: Any = None,
    **loop: Any,
) -> tuple[plain.LoopLog, Any]:
    """The plain loop on the same training blocks; returns its log and the trained net.

    Args:
        scheduler: ``cosine`` (medvision's default schedule) or ``None``.
        val_loader: whole validation volumes; with ``loop["val_every"]`` the loop validates on them.
        loop: the rest of :func:`plain.train_loop`'s keywords (``val_every``, ``stop_dice``, ``time_limit``).
    """
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.transforms import Compose
    from monai.utils import set_determinism

    set_determinism(seed)
    splits = harness.mni_splits(ctx)
    dataset = CacheDataset(
        splits["train"], Compose(plain.load_transforms(spec) + plain.augment_transforms(spec)), progress=False
    )
    loader = DataLoader(dataset, batch_size=spec.batch_size, shuffle=True, num_workers=0)
    net = plain.unet(spec)
    opt = plain.optimiser(spec, net.parameters())
    sched = torch_cosine(opt) if scheduler == "cosine" else None
    validate = (lambda: plain.dice_of(net, val_loader, spec)) if val_loader is not None else None
    log = plain.train_loop(
        net,
        DiceCELoss(to_onehot_y=True, softmax=True),
        opt,
        loader,
        steps=steps,
        precision=spec.precision,
        scheduler=sched,
        validate=validate,
        **loop,
    )
    return log, net


def torch_cosine(opt: Any, t_max: int = 60) -> Any:
    """The default experiment's schedule: cosine over its 60 epochs down to 1e-5, stepped per epoch."""
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=1e-5)


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """A B A B rounds of both sides; one row: patches/s and the ratio (goal >= 0.97)."""
    s = ctx.pick(SIZES)
    spec, steps, warmup = s["spec"], s["steps"], s["warmup"]

    def medvision(i: int) -> dict[str, float]:
        result = medvision_side(ctx, spec, steps, warmup)
        return {"patches_per_s": result["throughput"], "steps": result["steps"]}

    def plain_loop(i: int) -> dict[str, float]:
        log, _ = plain_side(ctx, spec, steps, warmup)
        return {"patches_per_s": harness.throughput(log.starts, log.ends, log.sizes, warmup), "steps": len(log.ends)}

    results = harness.alternate({"medvision": medvision, "plain": plain_loop}, ctx.repeats, ctx.log)
    note = (
        f"MNI152 default experiment, U-Net {list(spec.channels)}, {spec.batch_size} volumes x {spec.num_samples} "
        f"patches of {spec.patch[0]}^3 per step, {steps} steps, the first {warmup} not timed; medvision through "
        "`run()` with its default callbacks and CSV logger (the checkpoint callback saves after validation only, "
        "so not in the timed steps), validation off"
    )
    return [
        harness.compare_row(
            "1",
            "Training throughput, 3D segmentation",
            "patches/s",
            harness.column(results["medvision"], "patches_per_s"),
            harness.column(results["plain"], "patches_per_s"),
            goal=0.97,
            note=note,
        )
    ]
