"""Benchmark 12: predicting one real-size CT (512x512x300) within a memory budget: peak memory and time.

``medvision-predict`` (:func:`medvision.inference.predict.predict`: reading, preprocessing, sliding
window, softmax, inversion to the file's grid, arg-max, writing the mask) on the 512 x 512 x 300 int16
CT of ``realsize_data.py`` (0.8 x 0.8 x 1.5 mm), on the CPU, with ``inferer.memory_gb`` set
(``bounded``) and without (``unbounded``), each in a fresh process (sides alternate), so that each
peak is its own: the whole process's peak resident memory (Linux ``VmHWM``: Python, libraries and
weights included) and the wall time of the prediction. Both sides must write the same mask (checked).

The model: medvision-train's default U-Net (channels 16-32-64-128, strides 2-2-2, 2 residual units)
with 128^3 windows, trained one step on crops of the case (weights do not change memory or time),
with the preprocessing ``medvision-plan`` chooses for this data (``plan=auto``, the default of
``data=msd``): the case's own spacing, CT normalisation (clip to the foreground's 0.5/99.5
percentiles, z-score: ``ClipZScored``), crop to the nonzero box (the whole CT: air is
-1024 HU). ``tta=none``: mirroring (8 passes, ``tta=mirror``) multiplies the time by 8 and changes
only the per-window memory, which the budget accounts for.

``tiny`` (the CI smoke): a 64 x 64 x 40 CT of the same phantom, a small U-Net, 32^3 windows, in this
process. Run as a script it is one measurement: ``python large_predict.py --side bounded ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness

#: the row number run.py registers this module under
BENCH = "12"
#: the normalisation medvision-plan chooses for the realsize CT (CT scheme: clip to the foreground
#: 0.5/99.5 percentiles [28, 964] HU, then (x - 118.7) / 167.4), as data.transforms.load.intensity
CT_INTENSITY: dict[str, Any] = {
    "_target_": "medvision.data.intensity.ClipZScored",
    "keys": ["image"],
    "low": 28.0,
    "high": 964.0,
    "mean": 118.7,
    "std": 167.4,
}
#: the plan's foreground crop (nnU-Net's: the box of the nonzero voxels)
NONZERO_CROP: dict[str, Any] = {"_target_": "hydra.utils.get_method", "path": "medvision.data.transforms.nonzero"}
SPACING = (0.8, 0.8, 1.5)

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "shape": (64, 64, 40),
        "roi": 32,
        "net": ["model.net.channels=[8,16]", "model.net.strides=[2]", "model.net.num_res_units=0"],
        "memory_gb": 0.01,
        "rounds": 1,
        "timeout": 300,
        "sides": ("bounded", "unbounded"),
    },
    "full": {
        "shape": (512, 512, 300),
        "roi": 128,
        "net": [],
        "memory_gb": 3.0,
        "rounds": 1,
        "timeout": 3600,
        # one prediction on the whole machine, as a researcher runs it (the rest of the suite pins 1 thread)
        "threads": 2,
        # the unbounded side (2.5 min more) runs only when asked: `--only 12` with MEDVISION_BENCH_UNBOUNDED=1
        "sides": ("bounded",),
    },
}
SIDES = ("bounded", "unbounded")


# ------------------------------------------------------------------------------ data and model
def _save(array: Any, affine: Any, path: Path) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def _msd(folder: Path, cases: list[tuple[Any, Any]], affine: Any) -> None:
    """Write ``cases`` (image, label) as an MSD folder with the realsize CT's labels."""
    import realsize_data

    entries = []
    for k, (image, label) in enumerate(cases):
        _save(image, affine, folder / "imagesTr" / f"ct_{k:03d}.nii.gz")
        _save(label, affine, folder / "labelsTr" / f"ct_{k:03d}.nii.gz")
        entries.append({"image": f"./imagesTr/ct_{k:03d}.nii.gz", "label": f"./labelsTr/ct_{k:03d}.nii.gz"})
    info = {
        "name": "large_predict_train",
        "modality": {"0": "CT"},
        "labels": {str(i): n for i, n in enumerate(realsize_data.LABELS["ct"])},
        "numTraining": len(entries),
        "training": entries,
        "test": [],
    }
    (folder / "dataset.json").write_text(json.dumps(info, indent=2))


def prepare_data(ctx: harness.Context) -> tuple[Path, Path]:
    """The CT to predict and an MSD folder of 3 crops of it to train on (made once per workdir).

    Returns:
        ``(case file, training folder)``.
    """
    import nibabel as nib
    import numpy as np

    s = ctx.pick(SIZES)
    root = ctx.workdir / "large_predict" / ctx.size
    train = root / "train"
    if ctx.size == "full":
        import realsize_data

        ct = realsize_data.bench_set(ctx.workdir, 1, None, ctx.log)
        case = ct / "imagesTr" / "ct_000.nii.gz"
        if (train / "dataset.json").is_file():
            return case, train
        image = np.asarray(nib.load(case).dataobj)
        label = np.asarray(nib.load(ct / "labelsTr" / "ct_000.nii.gz").dataobj)
        affine = nib.load(case).affine
    else:
        from medvision.data.sources.synthetic_ct import SyntheticCT

        case = root / "ct.nii.gz"
        if case.is_file() and (train / "dataset.json").is_file():
            return case, train
        nx, ny, nz = s["shape"]
        phantom = SyntheticCT(
            num_cases=1,
            inplane_size=(nx, nx),
            num_slices=(nz, nz),
            inplane_spacing=(SPACING[0], SPACING[0]),
            slice_spacing=(SPACING[2], SPACING[2]),
            seed=0,
        )
        image, label, _ = phantom.case(0)
        image, label = image[:nx, :ny, :nz], label[:nx, :ny, :nz]
        affine = np.diag([*SPACING, 1.0])
        _save(image, affine, case)
    # three different blocks around the middle, a little larger than a window
    block = [min(n - 8, s["roi"] + s["roi"] // 4) for n in image.shape]
    crops = []
    for k in range(3):
        start = [max(0, (n - b) // 2 + (k - 1) * b // 4) for n, b in zip(image.shape, block, strict=True)]
        index = tuple(slice(a, a + b) for a, b in zip(start, block, strict=True))
        crops.append((np.ascontiguousarray(image[index]), np.ascontiguousarray(label[index])))
    _msd(train, crops, affine)
    return case, train


def train_overrides(ctx: harness.Context, train: Path) -> list[str]:
    """One training step of the default U-Net on ``train``, checkpoint only (no validation, no test)."""
    s = ctx.pick(SIZES)
    roi = s["roi"]
    return [
        "data=msd",
        f"data.root={train}",
        "plan=none",
        f"data.transforms.pixdim=[{','.join(str(v) for v in SPACING)}]",
        f"data.patch_size=[{roi},{roi},{roi}]",
        "data.transforms.num_samples=1",
        "data.batch_size=1",
        "data.cache=none",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=0",
        "test=false",
        "logger=[]",
        "callbacks.overlays=null",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "seed=0",
        *s["net"],
    ]


def train_checkpoint(ctx: harness.Context, train: Path) -> Path:
    """Train (in this process) the checkpoint both sides predict with; its ``last.ckpt``."""
    from omegaconf import OmegaConf

    from medvision.train import run

    cfg = harness.compose(ctx, train_overrides(ctx, train), "large_predict_train")
    # what plan=auto sets for this data (replacing the nodes, as the planner does)
    OmegaConf.update(cfg, "data.transforms.load.intensity", CT_INTENSITY, merge=False)
    OmegaConf.update(cfg, "data.transforms.load.crop_foreground.select_fn", NONZERO_CROP, merge=False, force_add=True)
    run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RuntimeError(f"the training run wrote no {ckpt}")
    return ckpt


# ------------------------------------------------------------------------------ one measurement
def predict_side(ctx: harness.Context, side: str, ckpt: Path, case: Path) -> dict[str, Any]:
    """``medvision-predict`` of ``case`` in this process: peak resident memory (GiB), seconds, the mask's hash.

    In a fresh process the peak is the whole process's since it started; in the suite's process
    (tiny) the peak mark is reset just before the prediction.
    """
    import nibabel as nib
    import numpy as np

    from medvision.inference.predict import predict

    s = ctx.pick(SIZES)
    out = ctx.run_dir(f"large_predict-{side}")
    overrides = [
        f"paths.root_dir={ctx.workdir}",
        "print_config=false",
        f"ckpt_path={ckpt}",
        f"input={case}",
        f"output={out / 'masks'}",
        "tta=none",
        "device=cpu",
    ]
    if side == "bounded":
        overrides.append(f"inferer.memory_gb={s['memory_gb']}")
    from medvision.utils.config import compose

    cfg = compose(overrides, config_name="predict", output_dir=out / "run")
    if ctx.size == "tiny":
        harness.reset_peak_rss()
    t0 = time.perf_counter()
    summary = predict(cfg)
    seconds = time.perf_counter() - t0
    peak = max(harness.peak_rss_mb(), harness.rss_mb())
    if summary.failed:
        raise RuntimeError(f"{side}: {summary.failed}")
    mask = np.asarray(nib.load(out / "masks" / f"{case.name[: -len('.nii.gz')]}.nii.gz").dataobj)
    return {
        "peak_gib": peak / 1024,
        "seconds": seconds,
        "mask_sha1": hashlib.sha1(np.ascontiguousarray(mask).tobytes()).hexdigest(),
        "foreground": int((mask > 0).sum()),
        "sw_batch_size": window_batch(cfg, case),
    }


def window_batch(cfg: Any, case: Path) -> int:
    """The windows per batch the prediction used (after it was measured): the budget's choice, else the run's."""
    from monai.transforms import allow_missing_keys_mode

    from medvision.inference.predict import load_members

    member = load_members(cfg)[0][0]
    with allow_missing_keys_mode(member.transform):
        image = member.transform({"image": str(case)})["image"]
    settings = member.module.window_settings(image[None], tta=False)
    return int(settings.get("sw_batch_size", member.module.inferer.get("sw_batch_size", 4)))


def _batches(results: list[dict[str, Any]]) -> str:
    return "/".join(str(r.get("sw_batch_size")) for r in results)


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: the bounded side's peak memory (goal < 4 GiB) and time, and the unbounded side's beside them."""
    s = ctx.pick(SIZES)
    case, train = prepare_data(ctx)
    if ctx.size == "tiny":
        ckpt = train_checkpoint(ctx, train)
    else:  # a fresh process: the suite's own memory stays small
        cmd = [sys.executable, str(Path(__file__)), "--train", str(train), "--size", ctx.size]
        cmd += ["--threads", str(ctx.threads), "--workdir", str(ctx.workdir)]
        ckpt = Path(harness.run_json(cmd, ctx.env(), timeout=1800)["ckpt"])

    threads = s.get("threads", ctx.threads)

    def measure(side: str) -> dict[str, Any]:
        if ctx.size == "tiny":
            return predict_side(ctx, side, ckpt, case)
        cmd = [sys.executable, str(Path(__file__)), "--side", side, "--ckpt", str(ckpt), "--case", str(case)]
        cmd += ["--size", ctx.size, "--threads", str(threads), "--workdir", str(ctx.workdir)]
        try:
            env = ctx.env(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            return harness.run_json(cmd, env, timeout=s["timeout"])
        except (RuntimeError, subprocess.TimeoutExpired) as err:  # e.g. the unbounded side out of memory or time
            ctx.log(f"    {side} did not finish: {(str(err).splitlines() or [type(err).__name__])[0]}")
            return {"peak_gib": float("nan"), "seconds": float("nan"), "mask_sha1": None, "foreground": -1}

    rounds = max(1, min(ctx.repeats, s["rounds"]))
    sides = SIDES if os.environ.get("MEDVISION_BENCH_UNBOUNDED") == "1" else s["sides"]
    results = harness.alternate({side: (lambda i, side=side: measure(side)) for side in sides}, rounds, ctx.log)
    hashes = {r["mask_sha1"] for side in sides for r in results[side] if r["mask_sha1"]}
    same = len(hashes) == 1 and all(r["mask_sha1"] for side in sides for r in results[side]) and len(sides) > 1
    shape, gb = "x".join(str(v) for v in s["shape"]), s["memory_gb"]
    where = "each side in a fresh process" if ctx.size == "full" else "in this process (smoke)"
    note = (
        f"medvision-predict of one {shape} int16 CT (0.8x0.8x1.5 mm) on the CPU ({threads} thread(s)), tta=none, "
        f"{'default' if not s['net'] else 'small'} U-Net, {s['roi']}^3 windows, the planned CT preprocessing; "
        f"{where}, {rounds} round(s), sides alternating; whole-process peak resident memory (VmHWM) and the "
        f"prediction's wall time; bounded: inferer.memory_gb={gb:g} (sw_batch_size "
        f"{'/'.join(str(r.get('sw_batch_size')) for r in results['bounded'])})"
        + (
            f"; unbounded: no budget (sw_batch_size {_batches(results['unbounded'])}"
            f"); same mask on both sides: {'yes' if same else 'NO'}"
            if "unbounded" in results
            else "; the unbounded side not run (MEDVISION_BENCH_UNBOUNDED=1 runs it; tests/test_inference_memory.py "
            "checks the masks are equal)"
        )
    )
    extra = {"same_mask": same, "foreground_voxels": [r["foreground"] for side in sides for r in results[side]]}
    rows = [
        harness.value_row(
            BENCH,
            f"Predict one {shape} CT: peak resident memory, inferer.memory_gb={gb:g}",
            "GiB",
            harness.column(results["bounded"], "peak_gib"),
            goal=4.0,
            note=note,
        ),
        harness.value_row(
            BENCH,
            f"Predict one {shape} CT: time, inferer.memory_gb={gb:g}",
            "s",
            harness.column(results["bounded"], "seconds"),
            note=note,
        ),
    ]
    if "unbounded" in results:
        rows += [
            harness.value_row(
                BENCH,
                f"Predict one {shape} CT: peak resident memory, no budget",
                "GiB",
                harness.column(results["unbounded"], "peak_gib"),
                note=note,
            ),
            harness.value_row(
                BENCH,
                f"Predict one {shape} CT: time, no budget",
                "s",
                harness.column(results["unbounded"], "seconds"),
                note=note,
            ),
        ]
    for row in rows:
        row["extra"] = extra
    return rows


def main(argv: list[str] | None = None) -> None:
    """One measurement (``--side``) or the training (``--train``) in a fresh process: prints ``BENCH_JSON {...}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=SIDES)
    p.add_argument("--train", type=Path, help="train the checkpoint on this MSD folder")
    p.add_argument("--ckpt", type=Path)
    p.add_argument("--case", type=Path)
    p.add_argument("--size", default="full")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    ctx = harness.Context(size=args.size, threads=args.threads, workdir=args.workdir, log=lambda s: None)
    if args.train is not None:
        harness.emit({"ckpt": str(train_checkpoint(ctx, args.train))})
    else:
        harness.emit(predict_side(ctx, args.side, args.ckpt, args.case))


if __name__ == "__main__":
    main()
