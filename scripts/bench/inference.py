"""Benchmark 4: whole-volume inference, medvision's test and predict paths vs raw MONAI calls.

Each side runs in its own fresh process (sides alternate), so that peak memory is its own:
the figure is the peak resident memory (Linux ``VmHWM``, its mark reset just before the calls)
during the calls minus the resident memory just before them (imports, the net and the cached, preprocessed
volumes are already loaded then). Both sides get the same weights (``torch.manual_seed(0)``
before the U-Net is built) and the default experiment's test split (2 MNI152 blocks).

- predict: what ``medvision-predict`` runs on each preprocessed case
  (:func:`medvision.predict.segment_case`: ``SegmenterModule.predict_step``, i.e. the module's
  sliding window and softmax, under ``torch.no_grad``) + argmax, vs ``sliding_window_inference``
  + argmax over the same volumes under ``torch.no_grad``. Reading, inverting and writing files
  are left out on both sides.
- test: medvision ``Trainer.test`` (loss, Dice, HD95 in mm) vs the same MONAI calls by hand.

Run as a script it is one side: ``python inference.py --side raw-test ...`` prints its JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import harness
import plain

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"spec": plain.SegSpec(patch=(16, 16, 16), channels=(4, 8), strides=(2,), num_res_units=0), "calls": 1},
    "full": {"spec": plain.SegSpec(), "calls": 7},
}
SIDES = ("medvision-predict", "raw-predict", "medvision-test", "raw-test")


def _medvision(ctx: harness.Context, spec: plain.SegSpec, side: str, calls: int) -> dict[str, Any]:
    import torch

    from medvision.train import build
    from medvision.utils.config import resolved_container

    # identical work: the default callbacks' test-time extras (overlay pictures, the intensity
    # look-up-table baseline fit on the training blocks) are switched off; the raw side has none
    cfg = harness.compose(ctx, [*spec.overrides(), "logger=[]", "~callbacks.overlays", "~callbacks.intensity_baseline"],
                          side)
    torch.manual_seed(0)
    datamodule, model, trainer, _ = build(cfg, resolved_container(cfg))
    datamodule.setup("test")  # cache the preprocessed volumes before the clock starts
    loader = datamodule.test_dataloader()
    model.eval()  # as medvision-predict loads it
    times, checksum = [], 0.0
    harness.reset_peak_rss()
    before = harness.rss_mb()
    for _ in range(calls + 1):  # the first call (one-time set-up) is not timed
        t0 = time.perf_counter()
        if side == "medvision-test":
            out = trainer.test(model, datamodule=datamodule, verbose=False)
            checksum = float(out[0]["test/dice_mean"])
        else:  # medvision.predict.segment_case's inference on each case
            with torch.no_grad():
                checksum = float(sum(model.predict_step({"image": b["image"]}, 0).argmax(1).sum() for b in loader))
        times.append(time.perf_counter() - t0)
    return {"time_s": harness.median(times[1:]), "times": times, "rss_before_mb": before,
            "peak_extra_mb": harness.peak_rss_mb() - before, "checksum": checksum}


def _raw(ctx: harness.Context, spec: plain.SegSpec, side: str, calls: int) -> dict[str, Any]:
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
    times, checksum = [], 0.0
    harness.reset_peak_rss()
    before = harness.rss_mb()
    for _ in range(calls + 1):  # the first call (one-time set-up) is not timed
        t0 = time.perf_counter()
        dice = DiceMetric(include_background=False, reduction="mean_batch")
        hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean_batch")
        total = 0.0
        with torch.no_grad():
            for batch in loader:
                image, label = batch["image"], batch["label"].as_tensor()
                logits = plain.sliding_window(net, image.as_tensor(), spec)
                if side == "raw-test":
                    loss_fn(logits, label)
                    pred, target = one_hot(logits.argmax(1, keepdim=True), 3), one_hot(label.long(), 3)
                    dice(pred, target)
                    hd95(pred, target, spacing=[float(v) for v in image.pixdim[0].tolist()])
                else:
                    total += float(logits.argmax(1).sum())
        if side == "raw-test":
            per_class = dice.aggregate()
            hd95.aggregate()
            checksum = float(per_class[torch.isfinite(per_class)].mean())
        else:
            checksum = total
        times.append(time.perf_counter() - t0)
    return {"time_s": harness.median(times[1:]), "times": times, "rss_before_mb": before,
            "peak_extra_mb": harness.peak_rss_mb() - before, "checksum": checksum}


def one_side(ctx: harness.Context, side: str, calls: int) -> dict[str, Any]:
    """Run one side in this process (what the subprocess does)."""
    spec = ctx.pick(SIZES)["spec"]
    if side.startswith("medvision"):
        return _medvision(ctx, spec, side, calls)
    return _raw(ctx, spec, side, calls)


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Fresh process per side and round; rows: time ratio (goal >= 0.98 as speed) and memory."""
    s = ctx.pick(SIZES)

    def side(name: str) -> Any:
        def go(i: int) -> dict[str, float]:
            if ctx.size == "tiny" and name != "raw-predict":  # smoke: one fresh process is enough to check the path
                r = one_side(ctx, name, s["calls"])
                return {"time_s": r["time_s"], "peak_extra_mb": r["peak_extra_mb"], "checksum": r["checksum"]}
            cmd = [sys.executable, str(Path(__file__)), "--side", name, "--size", ctx.size, "--threads",
                   str(ctx.threads), "--workdir", str(ctx.workdir), "--calls", str(s["calls"])]
            r = harness.run_json(cmd, ctx.env(), timeout=600)
            return {"time_s": r["time_s"], "peak_extra_mb": r["peak_extra_mb"], "checksum": r["checksum"]}
        return go

    harness.mni_splits(ctx)  # prepare the data once, before the timed processes
    results = harness.alternate({n: side(n) for n in SIDES}, ctx.repeats, ctx.log)
    note = (f"default experiment's test split (2 MNI152 blocks), sliding window {s['spec'].patch[0]}^3, "
            f"sw_batch_size {s['spec'].sw_batch_size}, overlap {s['spec'].overlap}, gaussian; median of {s['calls']} "
            f"calls per process after one untimed call; medvision without the test-time extras of its default callbacks (overlay pictures, the intensity LUT baseline); memory = peak RSS during the calls minus RSS before them; medvision predict: `SegmenterModule.predict_step` as `medvision-predict` calls it (file reading, inversion and writing left out on both sides), test: `Trainer.test`")
    rows = []
    for path in ("predict", "test"):
        mv, raw = results[f"medvision-{path}"], results[f"raw-{path}"]
        # identical work: the same weights and volumes give the same label sum (predict) or Dice (test)
        same = {"checksum_medvision": harness.column(mv, "checksum"), "checksum_raw": harness.column(raw, "checksum")}
        # speed = 1 / time, so that the ratio reads like the others (medvision / raw >= 0.98)
        rows.append(harness.compare_row("4", f"Inference speed, {path} path", "volumes/s",
                                        [2 / v for v in harness.column(mv, "time_s")],
                                        [2 / v for v in harness.column(raw, "time_s")], goal=0.98,
                                        sides=("medvision", "raw"), note=note, extra=same))
        rows.append(harness.compare_row("4", f"Inference peak memory, {path} path", "MiB above start",
                                        harness.column(mv, "peak_extra_mb"), harness.column(raw, "peak_extra_mb"),
                                        goal=1.10, higher_is_better=False, sides=("medvision", "raw"), note=note))
    return rows


def main(argv: list[str] | None = None) -> None:
    """One side in a fresh process: prints ``BENCH_JSON {...}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=SIDES, required=True)
    p.add_argument("--size", default="full")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--calls", type=int, default=3)
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    ctx = harness.Context(size=args.size, threads=args.threads, workdir=args.workdir, log=lambda s: None)
    harness.emit(one_side(ctx, args.side, args.calls))


if __name__ == "__main__":
    main()
