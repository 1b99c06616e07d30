"""Benchmark 4: whole-volume inference, medvision's test and predict paths vs raw MONAI calls.

Speed: both sides are built in one fresh process and their calls interleaved (A B B A ...), one
process per round. Memory: each side runs alone in its own fresh process (sides alternate), so
that peak memory is its own: the figure is the peak resident memory (Linux ``VmHWM``, its mark
reset just before the calls) during the calls minus the resident memory just before them
(imports, the net and the cached, preprocessed volumes are already loaded then). Both sides get
the same weights (``torch.manual_seed(0)`` before the U-Net is built) and the default
experiment's test split (2 MNI152 blocks).

- predict: what ``medvision-predict`` runs on each preprocessed case
  (:func:`medvision.inference.predict.segment_case`: ``SegmenterModule.predict_step``, i.e. the module's
  sliding window and softmax, under ``torch.no_grad``) + argmax, vs ``sliding_window_inference``
  + argmax over the same volumes under ``torch.no_grad``. Reading, inverting and writing files
  are left out on both sides.
- test: medvision ``Trainer.test`` (loss, Dice, HD95 in mm) vs the same MONAI calls by hand.

Run as a script it is one process: ``python inference.py --side raw-test ...`` (memory) or
``--side speed`` prints its JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import plain

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"spec": plain.SegSpec(patch=(16, 16, 16), channels=(4, 8), strides=(2,), num_res_units=0), "calls": 1},
    "full": {"spec": plain.SegSpec(), "calls": 9},
}
SIDES = ("medvision-predict", "raw-predict", "medvision-test", "raw-test")


def _medvision_calls(ctx: harness.Context, spec: plain.SegSpec) -> dict[str, Callable[[], float]]:
    """medvision's two whole-volume paths, ready to call; each call returns its checksum."""
    import torch

    from medvision.train import build
    from medvision.utils.config import resolved_container

    # identical work: the default callbacks' test-time extras (overlay pictures, the intensity
    # look-up-table baseline fit on the training blocks) are switched off; the raw side has none
    cfg = harness.compose(
        ctx, [*spec.overrides(), "logger=[]", "~callbacks.overlays", "~callbacks.intensity_baseline"], "inference"
    )
    torch.manual_seed(0)
    datamodule, model, trainer, _ = build(cfg, resolved_container(cfg))
    # identical work: the raw side scores the preprocessed volumes; medvision's test metrics on each
    # label file's own grid (the preprocessing inverted, the label file read) are switched off here
    model.original_space = None
    model.tta_axes = ()  # identical work: the raw side predicts once (medvision's tta=none)
    datamodule.setup("test")  # cache the preprocessed volumes before the clock starts
    loader = datamodule.test_dataloader()
    model.eval()  # as medvision-predict loads it

    def predict() -> float:  # medvision.inference.predict.segment_case's inference on each case
        with torch.no_grad():
            return float(sum(model.predict_step({"image": b["image"]}, 0).argmax(1).sum() for b in loader))

    def test() -> float:
        return float(trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/dice_mean"])

    return {"predict": predict, "test": test}


def _raw_calls(ctx: harness.Context, spec: plain.SegSpec) -> dict[str, Callable[[], float]]:
    """The same two paths written by hand with MONAI: sliding window + argmax; + loss, Dice, HD95."""
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric, HausdorffDistanceMetric
    from monai.networks.utils import one_hot
    from monai.transforms import Compose

    records = harness.mni_splits(ctx)["test"]
    loader = DataLoader(CacheDataset(records, Compose(plain.load_transforms(spec)), progress=False), batch_size=1)
    torch.manual_seed(0)
    net = plain.unet(spec).eval()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    def predict() -> float:
        with torch.no_grad():
            return float(sum(plain.sliding_window(net, b["image"].as_tensor(), spec).argmax(1).sum() for b in loader))

    def test() -> float:
        dice = DiceMetric(include_background=False, reduction="mean_batch")
        hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean_batch")
        with torch.no_grad():
            for batch in loader:
                image, label = batch["image"], batch["label"].as_tensor()
                logits = plain.sliding_window(net, image.as_tensor(), spec)
                loss_fn(logits, label)
                pred, target = one_hot(logits.argmax(1, keepdim=True), 3), one_hot(label.long(), 3)
                dice(pred, target)
                hd95(pred, target, spacing=[float(v) for v in image.pixdim[0].tolist()])
        per_class = dice.aggregate()
        hd95.aggregate()
        return float(per_class[torch.isfinite(per_class)].mean())

    return {"predict": predict, "test": test}


def memory_side(ctx: harness.Context, side: str, calls: int) -> dict[str, Any]:
    """One side alone in this process: peak memory above the start over ``calls`` calls (after one untimed)."""
    spec = ctx.pick(SIZES)["spec"]
    owner, path = side.split("-")
    fn = (_medvision_calls if owner == "medvision" else _raw_calls)(ctx, spec)[path]
    harness.reset_peak_rss()
    before = harness.rss_mb()
    checksum = 0.0
    for _ in range(calls + 1):
        checksum = fn()
    # the peak is never below the start: the kernel's high-water mark lags the page counters by a
    # few pages (it read 28 KiB below the start once, under a parallel test run)
    peak = max(harness.peak_rss_mb(), harness.rss_mb(), before)
    return {"rss_before_mb": before, "peak_extra_mb": peak - before, "checksum": checksum}


def speed_side(ctx: harness.Context, calls: int) -> dict[str, Any]:
    """Both sides in this process, calls interleaved (medvision, raw, raw, medvision, ...) per path.

    Interleaving in one process removes what differs between processes (allocator state, where
    the memory lies, the CPU's clock), which moved single-process timings by +-5 %.
    """
    spec = ctx.pick(SIZES)["spec"]
    sides = {"medvision": _medvision_calls(ctx, spec), "raw": _raw_calls(ctx, spec)}
    out: dict[str, Any] = {}
    for path in ("predict", "test"):
        times: dict[str, list[float]] = {"medvision": [], "raw": []}
        for name in sides:  # one untimed call each (one-time set-up)
            out[f"checksum_{name}_{path}"] = sides[name][path]()
        for k in range(calls):
            for name in ("medvision", "raw") if k % 2 == 0 else ("raw", "medvision"):
                t0 = time.perf_counter()
                sides[name][path]()
                times[name].append(time.perf_counter() - t0)
        for name, values in times.items():
            out[f"time_{name}_{path}"] = harness.median(values)
    return out


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Speed: both sides interleaved in each of ``repeats`` fresh processes (goal >= 0.98);
    memory: each side alone in a fresh process, sides alternating (goal <= 1.10)."""
    s = ctx.pick(SIZES)

    def fresh(args: list[str]) -> dict[str, Any]:
        if ctx.size == "tiny":  # smoke: in this process is enough to check the paths
            return speed_side(ctx, s["calls"]) if args[0] == "speed" else memory_side(ctx, args[0], s["calls"])
        cmd = [
            sys.executable,
            str(Path(__file__)),
            "--side",
            args[0],
            "--size",
            ctx.size,
            "--threads",
            str(ctx.threads),
            "--workdir",
            str(ctx.workdir),
            "--calls",
            str(s["calls"]),
        ]
        return harness.run_json(cmd, ctx.env(), timeout=600)

    harness.mni_splits(ctx)  # prepare the data once, before the timed processes
    speed = harness.alternate({"interleaved": lambda i: fresh(["speed"])}, ctx.repeats, ctx.log)["interleaved"]
    # a process's own peak memory does not depend on what runs beside it: two at a time
    memory = harness.alternate(
        {n: (lambda side: lambda i: fresh([side]))(n) for n in SIDES}, ctx.repeats, ctx.log, concurrent=2
    )
    note = (
        f"default experiment's test split (2 MNI152 blocks), sliding window {s['spec'].patch[0]}^3, "
        f"sw_batch_size {s['spec'].sw_batch_size}, overlap {s['spec'].overlap}, gaussian; speed: medvision and raw "
        f"in one process, {s['calls']} interleaved calls each after one untimed call, median, one process per round; "
        "memory: each side alone in a fresh process (two such processes at a time), peak RSS during the calls "
        "minus RSS before them; medvision "
        "without the test-time extras of its default callbacks (overlay pictures, the intensity LUT baseline); "
        "medvision predict: `SegmenterModule.predict_step` as `medvision-predict` calls it (file reading, inversion "
        "and writing left out on both sides), test: `Trainer.test`"
    )
    rows = []
    for path in ("predict", "test"):
        # identical work: the same weights and volumes give the same label sum (predict) or Dice (test)
        same = {
            "checksum_medvision": [r[f"checksum_medvision_{path}"] for r in speed],
            "checksum_raw": [r[f"checksum_raw_{path}"] for r in speed],
        }
        # speed = volumes / time, so that the ratio reads like the others (medvision / raw >= 0.98)
        rows.append(
            harness.compare_row(
                "4",
                f"Inference speed, {path} path",
                "volumes/s",
                [2 / r[f"time_medvision_{path}"] for r in speed],
                [2 / r[f"time_raw_{path}"] for r in speed],
                goal=0.98,
                sides=("medvision", "raw"),
                note=note,
                extra=same,
            )
        )
        rows.append(
            harness.compare_row(
                "4",
                f"Inference peak memory, {path} path",
                "MiB above start",
                harness.column(memory[f"medvision-{path}"], "peak_extra_mb"),
                harness.column(memory[f"raw-{path}"], "peak_extra_mb"),
                goal=1.10,
                higher_is_better=False,
                sides=("medvision", "raw"),
                note=note,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """One side in a fresh process: prints ``BENCH_JSON {...}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=(*SIDES, "speed"), required=True)
    p.add_argument("--size", default="full")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--calls", type=int, default=3)
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    ctx = harness.Context(size=args.size, threads=args.threads, workdir=args.workdir, log=lambda s: None)
    harness.emit(speed_side(ctx, args.calls) if args.side == "speed" else memory_side(ctx, args.side, args.calls))


if __name__ == "__main__":
    main()
