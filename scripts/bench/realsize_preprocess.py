"""Benchmark 10: read + preprocess one real-size CT (512x512x300): medvision vs nnU-Net v2 vs MONAI alone.

The case is ``ct_000`` of the real-size CT set (``realsize_data.py``: int16 HU, 0.8 x 0.8 x 1.5 mm,
``.nii.gz``). Each side reads the image and its label file and applies its own preprocessing,
from file names to the arrays training reads (one call, timed after the imports, in a fresh
process per call; sides alternate A B C, C B A, ...; the files are in the page cache for all):

- medvision: the ``load`` transforms of ``plan=auto`` on this data (``data=msd``): NIfTI reader,
  orientation, the plan's spacing (the median: no resampling here), CT clipping and z-score
  from the foreground intensities, foreground crop, pad, the sampled patch-centre voxels, as
  ``medvision-train`` runs them;
- nnU-Net v2: ``DefaultPreprocessor.run_case`` with its own plans (``3d_fullres``) made by its
  planner from the same file, in the separate bench venv (``nnunet_peer.py setup``): its reader
  (SimpleITK), crop to non-zero, CT normalisation, resampling (none here) and the foreground
  location sampling it stores for its patch sampler;
- MONAI alone: the same steps as medvision's planned pipeline in MONAI's own transforms: its
  default reader, ``ScaleIntensityRanged`` for the CT clip and z-score, ``FgBgToIndicesd`` (every
  foreground and background voxel) for the patch centres.

nnU-Net's side runs only where its venv exists or can be made (``--size full``); the tiny size
(CI) compares medvision with MONAI alone on a small volume.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import harness
import realsize_data

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"shape": (64, 64, 40), "nnunet": False},
    "full": {"shape": None, "nnunet": True},
}
CASE = "ct_000"
#: one call of nnU-Net's preprocessing in its venv: argv = preprocessed folder, raw folder, case
NNUNET_WORKER = """
import json, sys, time
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
pre, raw, case = sys.argv[1:4]
plans = PlansManager(pre + "/nnUNetPlans.json")
conf = plans.get_configuration("3d_fullres")
dataset = json.load(open(raw + "/dataset.json"))
pp = DefaultPreprocessor(verbose=False)
t = time.perf_counter()
image, label = [f"{raw}/imagesTr/{case}_0000.nii.gz"], f"{raw}/labelsTr/{case}.nii.gz"
data, seg, props = pp.run_case(image, label, plans, conf, dataset)
seconds = time.perf_counter() - t
print("BENCH_JSON " + json.dumps({"seconds": seconds, "shape": list(data.shape), "mean": float(data.mean())}))
"""


def data_root(ctx: harness.Context) -> Path:
    """The real-size CT set of this size (one case), written on first use."""
    return realsize_data.bench_set(ctx.workdir, 1, ctx.pick(SIZES)["shape"], ctx.log)


def planned_overrides(root: Path) -> list[str]:
    """The overrides of a planned run on the one-case set (no validation or test split to make)."""
    return ["data=msd", f"data.root={root}", "data.val_fraction=0", "data.test_fraction=0", "plan=auto"]


def _load_steps(workdir: Path, root: Path, reader: str) -> list[Any]:
    """The planned ``load`` transforms; ``reader=monai`` swaps medvision's NIfTI reader for MONAI's default."""
    from hydra.utils import instantiate

    from medvision.planning.apply import apply_plan
    from medvision.utils.config import compose, quiet_library_loggers

    quiet_library_loggers()
    cfg = compose(
        [f"paths.root_dir={workdir}", "print_config=false", *planned_overrides(root)],
        output_dir=workdir / "runs" / "pp",
    )
    apply_plan(cfg)
    steps = list(instantiate(cfg.data.transforms.load).values())
    if reader == "monai":
        steps = [_monai_step(t) for t in steps]
        names = {type(t).__module__.split(".")[0] for t in steps}
        if names != {"monai"}:
            raise RuntimeError(f"the MONAI side must be MONAI transforms only, got modules {names}")
    return steps


def _monai_step(step: Any) -> Any:
    """MONAI's own transform for one of medvision's planned steps (itself when it is MONAI's)."""
    from monai.transforms import FgBgToIndicesd, LoadImaged, ScaleIntensityRanged

    from medvision.data.intensity import ClipZScored
    from medvision.data.patch_indices import SampledFgBgIndicesd

    if isinstance(step, LoadImaged):  # MONAI's default reader
        return LoadImaged(keys=step.keys, image_only=True)
    if isinstance(step, ClipZScored):  # the same clip then z-score as MONAI's linear map
        z = step.scaler
        low, high = (z.low - z.mean) / z.std, (z.high - z.mean) / z.std
        return ScaleIntensityRanged(step.keys, a_min=z.low, a_max=z.high, b_min=low, b_max=high, clip=True)
    if isinstance(step, SampledFgBgIndicesd):  # MONAI's way to find patch centres once: every voxel
        return FgBgToIndicesd(step.keys)
    return step


def side_main(side: str, workdir: Path, root: Path) -> None:
    """One timed call of ``side``'s read + preprocess of the case, printed as JSON."""
    from monai.transforms import Compose

    transform = Compose(_load_steps(workdir, root, side))
    sample = {"image": str(root / "imagesTr" / f"{CASE}.nii.gz"), "label": str(root / "labelsTr" / f"{CASE}.nii.gz")}
    t = time.perf_counter()
    out = transform(sample)
    seconds = time.perf_counter() - t
    harness.emit({"seconds": seconds, "shape": list(out["image"].shape), "mean": float(out["image"].mean())})


def nnunet_folders(ctx: harness.Context, root: Path) -> tuple[Path, Path, Path]:
    """nnU-Net's venv python, its raw folder of the case and its plans folder (planned on first use)."""
    import nnunet_peer

    ctx.log("    nnU-Net's venv (scripts/bench/nnunet_peer.py setup; made on first use)")
    nnunet_peer.setup()  # a no-op when the venv is ready
    python = nnunet_peer.venv_python(nnunet_peer.DEFAULT_VENV)
    raw = ctx.workdir / "nnunet" / "raw" / "Dataset901_RealsizeCT"
    work = ctx.workdir / "nnunet" / "work"
    pre = work / "nnUNet_preprocessed" / raw.name
    if not (pre / "nnUNetPlans.json").is_file():
        nnunet_peer.msd_to_nnunet(root, raw, "CT")
        nnunet_peer.plan(raw, work=work, verify=False)
    return python, raw, pre


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: seconds to read + preprocess the CT, medvision vs nnU-Net (goal <= 1.1) and vs MONAI alone."""
    s = ctx.pick(SIZES)
    root = data_root(ctx)
    env = ctx.env()

    def ours(side: str) -> dict[str, Any]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--threads", str(ctx.threads)]
        return harness.run_json([*cmd, "--workdir", str(ctx.workdir), "--root", str(root)], env, 1800)

    _load_steps(ctx.workdir, root, "medvision")  # plans the data once (cached in the workdir), untimed
    sides = {"medvision": lambda i: ours("medvision"), "MONAI alone": lambda i: ours("monai")}
    if s["nnunet"]:
        python, raw, pre = nnunet_folders(ctx, root)
        sides["nnU-Net v2"] = lambda i: harness.run_json(
            [str(python), "-c", NNUNET_WORKER, str(pre), str(raw), CASE], env, 900
        )
    # MONAI alone is a reference beside the row (its goal is nnU-Net's): one round
    results = harness.alternate(sides, ctx.repeats, ctx.log, rounds={"MONAI alone": 1})
    seconds = {name: harness.column(r, "seconds") for name, r in results.items()}
    shape = "x".join(map(str, results["medvision"][0]["shape"][1:]))
    note = (
        f"{CASE} ({shape} voxels after preprocessing), image + label .nii.gz, one call per fresh process after the "
        f"imports, {ctx.threads} thread(s); medvision: plan=auto's load transforms; MONAI alone (one round): the same "
        "transforms with MONAI's default reader; nnU-Net: DefaultPreprocessor.run_case with its 3d_fullres plans "
        "(includes its foreground location sampling)"
    )
    rows = []
    if "nnU-Net v2" in seconds:
        rows.append(
            harness.compare_row(
                "10",
                "Read + preprocess one 512x512x300 CT",
                "s",
                seconds["medvision"],
                seconds["nnU-Net v2"],
                goal=1.1,
                higher_is_better=False,
                sides=("medvision", "nnU-Net v2"),
                note=note,
            )
        )
    rows.append(
        harness.compare_row(
            "10",
            "Read + preprocess one 512x512x300 CT, vs MONAI transforms alone",
            "s",
            seconds["medvision"],
            seconds["MONAI alone"],
            goal=None,
            higher_is_better=False,
            sides=("medvision", "MONAI alone"),
            note=note,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=("medvision", "monai"), required=True)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    side_main(args.side, args.workdir, args.root)


if __name__ == "__main__":
    main()
