"""Planner parity (issue 14, point 1): medvision's plan beside nnU-Net v2's own planner's, on three datasets.

    .venv/bin/python scripts/bench/plan_parity.py                     # all three datasets: tables + JSON
    .venv/bin/python scripts/bench/plan_parity.py --only synthetic_ct --work /tmp/plan_parity
    .venv/bin/python scripts/bench/plan_parity.py --rerun-nnunet      # nnU-Net's planner again (its venv)

The datasets are the three that ``nnunet_peer.py`` fed nnU-Net's planner, written again from the
same recipes into ``<work>/msd`` (and checked case by case against the shapes and spacings stored
with nnU-Net's plans):

- ``mni152``: medvision's ``MNI152Tissue(resolution=2)`` (the demo; 8 blocks, 2 mm, channel ``T1w``,
  ``T1`` in nnU-Net's copy: neither name selects a scheme);
- ``synthetic_ct``: medvision's ``SyntheticCT(num_cases=8, seed=0)`` (thick-slice HU volumes, ``CT``);
- ``dipy_b0``: dipy's ``aniso_vox.nii.gz`` cut into 8 blocks with a ``median_otsu`` brain mask, written
  by ``nnunet_peer.py``'s own ``_write_dipy`` run in a venv that has dipy (``--dipy-python``; else the
  first of ``.bench-venvs/nnunet``, ``.bench-venvs/dipy`` and this interpreter that imports dipy).
  Make one with ``python -m venv .bench-venvs/dipy && .bench-venvs/dipy/bin/pip install "dipy==1.12.*"``.

nnU-Net's side is its 3d_fullres plan as stored in ``scripts/bench/peers/nnunet_plans/<name>.json``
(``nnunet_peer.py plan``: nnU-Net 2.8's ``nnUNetv2_extract_fingerprint`` + ``nnUNetv2_plan_experiment``,
default ``ExperimentPlanner``, 8 GB target), or with ``--rerun-nnunet`` planned again by
``nnunet_peer.py prepare`` + ``plan`` (needs ``nnunet_peer.py setup``).

medvision's side: the fingerprint of all 8 cases (the set nnU-Net's planner saw; a real run
fingerprints its train and val cases only) and two plans, each with the split a default holdout
(``group_split``, val 0.2, test 0.2 of the subjects) gives:

- ``gpu-8GB``: ``make_plan(accelerator="gpu", memory_gb=8, precision="16-mixed", time_budget="24h")``,
  nnU-Net's own setting (8 GB, batch 2). On a machine without CUDA the GPU step time it would measure
  is replaced by an estimate (:data:`GPU_SECONDS_PER_VOXEL`); at 24 h the patch and net are chosen by
  memory alone, so the estimate moves the schedule row only.
- ``cpu-10min``: the default CPU plan (``accelerator="cpu"``, ``10min``, memory ``auto`` = half the RAM,
  ``32-true``); its step times are measured (a few real training steps, cached under ``<work>/cache``),
  so run it on an idle machine: with one of 2 cores taken, steps measured 3-6x slower and the plan
  shrank (the script warns when other processes keep the cores busy).

Axes: nnU-Net's ``*_file_axes`` values are in the NIfTI voxel axes (i, j, k); medvision's in the RAS
frame it trains in (``Orientationd``). Each value is mapped through the files' ``aff2axcodes``
(for these sets reorientation keeps the axis order; dipy's only flips two axes).

Exit code 0 when, on every dataset, the target spacing (1e-3 relative), the normalisation scheme
and its mask (exactly) and, for CT, the clip and the mean and std (1%) match; 1 otherwise; 2 on a
user error (a dataset that cannot be prepared).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import nnunet_peer  # noqa: E402 - this folder, after the path above

REPO = BENCH_DIR.parent.parent
STORED_PLANS = BENCH_DIR / "peers" / "nnunet_plans"
#: next to the nnU-Net plans it compares with (committed, as benchmarks.json and those plans are)
DEFAULT_JSON = BENCH_DIR / "peers" / "plan_parity.json"
DATASETS = ("mni152", "synthetic_ct", "dipy_b0")
#: the dipy file nnU-Net planned (NNUNET_FINDINGS.md: sha256 8440b636..., dipy 1.12.1)
DIPY_SHA256_PREFIX = "8440b636"
#: seconds per patch voxel of one mixed-precision GPU training step at 32 base filters: an assumed
#: order of magnitude (about 0.1 s for nnU-Net's 2 x 192x192x48 CT step), not a measurement. Used
#: only where there is no GPU to measure; it sets the 24 h plan's schedule, nothing else (any
#: figure under 0.35 s a step gives the same 250k-step cap).
GPU_SECONDS_PER_VOXEL = 3e-8
#: tolerances: target spacing (relative), CT statistics (relative; the clip ends: of the clip range)
SPACING_RTOL = 1e-3
CT_RTOL = 0.01
#: nnU-Net's names of its normalisation classes -> medvision's scheme names
NNUNET_SCHEMES = {
    "CTNormalization": "ct",
    "ZScoreNormalization": "zscore",
    "NoNormalization": "none",
    "RescaleTo01Normalization": "rescale",
    "RGBTo01Normalization": "rgb",
}
#: nnU-Net 3d_fullres facts that its plan files do not state (nnUNetTrainer defaults)
NNUNET_SCHEDULE = "1000 epochs x 250 steps"


class ParityError(RuntimeError):
    """A user-facing failure: one message, exit code 2."""


# ---------------------------------------------------------------------------------------------
# datasets


def _dipy_python(explicit: str | None) -> str:
    """An interpreter that imports dipy (to run ``nnunet_peer.py _write-dipy``)."""
    tried = [explicit] if explicit else []
    tried += [str(REPO / ".bench-venvs" / v / "bin" / "python") for v in ("nnunet", "dipy")] + [sys.executable]
    for python in tried:
        if (
            Path(python).is_file()
            and subprocess.run([python, "-c", "import dipy"], capture_output=True).returncode == 0
        ):
            return python
    raise ParityError(
        f"no python with dipy (tried {', '.join(tried)}); fix: python -m venv .bench-venvs/dipy && "
        '.bench-venvs/dipy/bin/pip install "dipy==1.12.*" (or pass --dipy-python, or leave out --only dipy_b0)'
    )


def prepare(name: str, work: Path, dipy_python: str | None = None) -> Path:
    """Write dataset ``name`` as an MSD folder under ``<work>/msd`` (once) and return it."""
    from medvision.data.sources import prepare as prepare_source

    msd = work / "msd" / nnunet_peer.DATASETS[name][3]
    if name == "mni152":
        from medvision.data.sources.mni152 import MNI152Tissue

        prepare_source(MNI152Tissue(resolution=2), msd)
    elif name == "synthetic_ct":
        from medvision.data.sources.synthetic_ct import SyntheticCT

        prepare_source(SyntheticCT(num_cases=8, seed=0), msd)
    elif not (msd / "dataset.json").is_file():
        msd.parent.mkdir(parents=True, exist_ok=True)
        python = _dipy_python(dipy_python)
        res = subprocess.run([python, str(BENCH_DIR / "nnunet_peer.py"), "_write-dipy", name, str(msd)])
        if res.returncode != 0:
            raise ParityError(f"writing {name} with {python} failed (exit {res.returncode}); see the output above")
    return msd


def check_cases(msd: Path, stored: dict[str, Any]) -> dict[str, Any]:
    """Whether ``msd`` holds the cases nnU-Net planned: ids, shapes and voxel sizes (file axes)."""
    import nibabel as nib

    manifest = json.loads((msd / "dataset.json").read_text())
    ours = {}
    axcodes = set()
    for entry in manifest["training"]:
        path = msd / entry["image"]
        shape, spacing = nnunet_peer.nifti_geometry(path)
        ours[entry.get("id") or path.name.removesuffix(".nii.gz")] = (shape, spacing)
        axcodes.add("".join(nib.aff2axcodes(nib.load(path).affine)))
    theirs = {c["case"]: (c["shape_ijk"], c["spacing_ijk"]) for c in stored.get("cases", [])}
    differ = sorted(
        c
        for c in set(ours) | set(theirs)
        if c not in ours
        or c not in theirs
        or ours[c][0] != theirs[c][0]
        or any(abs(a - b) > 1e-4 for a, b in zip(ours[c][1], theirs[c][1], strict=True))
    )
    out: dict[str, Any] = {
        "num_cases": len(ours),
        "identical_to_nnunet_input": bool(theirs) and not differ,
        "differing_cases": differ,
        "axcodes": sorted(axcodes),
    }
    provenance = msd / "peer_source.json"
    if provenance.is_file():
        source = json.loads(provenance.read_text())
        out["source_sha256"] = source["source_sha256"]
        out["dipy_version"] = source["dipy_version"]
        same_file = source["source_sha256"].startswith(DIPY_SHA256_PREFIX)
        out["identical_to_nnunet_input"] = out["identical_to_nnunet_input"] and same_file
    return out


def file_to_ras(axcodes: str) -> list[int]:
    """For each file axis, the RAS axis it becomes under ``Orientationd(axcodes="RAS")``."""
    return ["RAS".index({"L": "R", "P": "A", "I": "S"}.get(c, c)) for c in axcodes]


def to_ras(values: Sequence[Any] | None, perm: Sequence[int]) -> list[Any] | None:
    """Per-axis ``values`` in file axes -> RAS axes."""
    if values is None:
        return None
    out: list[Any] = [None] * len(values)
    for f, v in enumerate(values):
        out[perm[f]] = v
    return out


# ---------------------------------------------------------------------------------------------
# nnU-Net's side


def nnunet_plan(name: str, work: Path, msd: Path, rerun: bool) -> dict[str, Any]:
    """nnU-Net's plan summary (``nnunet_peer.summarise_plans`` + ``prepare``): stored, or planned again."""
    stored = json.loads((STORED_PLANS / f"{name}.json").read_text())
    stored.pop("raw", None)
    if not rerun:
        stored["origin"] = str((STORED_PLANS / f"{name}.json").relative_to(REPO))
        return stored
    did, nn_name, _, _ = nnunet_peer.DATASETS[name]
    raw = work / "nnunet_raw" / f"Dataset{did:03d}_{nn_name}"
    out = work / "nnunet_plans" / f"{name}.json"
    peer = [sys.executable, str(BENCH_DIR / "nnunet_peer.py")]
    prep = work / "nnunet_plans" / f"{name}.prepare.json"
    prep.parent.mkdir(parents=True, exist_ok=True)
    for cmd in (
        [*peer, "prepare", name, str(raw), "--msd", str(msd), "--json", str(prep)],
        [*peer, "plan", str(raw), "--json", str(out), "--work", str(work / "nnunet_work" / name)],
    ):
        if subprocess.run(cmd).returncode != 0:
            raise ParityError(f"nnunet_peer.py {cmd[2]} failed; see the output above")
    fresh = json.loads(out.read_text())
    fresh.pop("raw", None)
    fresh["prepare"] = json.loads(prep.read_text())
    fresh["origin"] = str(out)
    fresh["stored_matches_rerun"] = {
        key: fresh["configurations"]["3d_fullres"][key] == stored["configurations"]["3d_fullres"][key]
        for key in ("spacing", "patch_size", "normalization_schemes", "use_mask_for_norm", "pool_op_kernel_sizes")
    }
    return fresh


# ---------------------------------------------------------------------------------------------
# medvision's side


def default_split(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Cases per split of a default holdout (val 0.2, test 0.2 of the subjects, seed 0)."""
    from medvision.data.splits import group_split

    split = group_split([r["subject"] for r in records], val_fraction=0.2, test_fraction=0.2)
    return {k: len(v) for k, v in split.items()}


def _estimated_gpu_step(
    in_channels: int, out_channels: int, patch: Sequence[int], batch: int, net: dict[str, Any], *args: Any, **kw: Any
) -> float:
    base = (net.get("filters") or net.get("channels"))[0]
    return GPU_SECONDS_PER_VOXEL * batch * math.prod(patch) * base / 32


def medvision_plans(msd: Path, cache: Path) -> dict[str, Any]:
    """Fingerprint of all cases and the two plans (see module docstring)."""
    import torch

    from medvision.data.fingerprint import fingerprint
    from medvision.data.records import read_msd
    from medvision.planning.plan import make_plan

    info = read_msd(msd)
    start = time.perf_counter()
    fp = fingerprint(
        info.records, info.modalities, info.label_names, name=info.name, cache_dir=cache / "fingerprint", progress=False
    )
    fp_s = time.perf_counter() - start
    split = default_split(info.records)
    counts = {"num_train": split["train"], "num_val": split["val"], "num_test": split["test"]}
    has_gpu = torch.cuda.is_available()
    plans, seconds = {}, {}
    start = time.perf_counter()
    from medvision.planning.budget import step_seconds

    plans["gpu-8GB"] = make_plan(
        fp,
        **counts,
        time_budget="24h",
        memory_gb=8,
        accelerator="gpu",
        precision="16-mixed",
        cache_dir=cache / "plan",
        step_seconds=step_seconds if has_gpu else _estimated_gpu_step,
    )
    seconds["gpu-8GB"] = time.perf_counter() - start
    start = time.perf_counter()
    plans["cpu-10min"] = make_plan(
        fp,
        **counts,
        time_budget="10min",
        memory_gb="auto",
        accelerator="cpu",
        precision="32-true",
        cache_dir=cache / "plan",
    )
    seconds["cpu-10min"] = time.perf_counter() - start
    return {
        "fingerprint": fp,
        "fingerprint_s": fp_s,
        "split": split,
        "plans": plans,
        "plan_s": seconds,
        "gpu_step_times": "measured" if has_gpu else f"estimated ({GPU_SECONDS_PER_VOXEL:g} s per patch voxel)",
    }


def _choice(plan: Any, name: str) -> Any:
    return next(c for c in plan.choices if c.name == name)


def summarise_plan(plan: Any) -> dict[str, Any]:
    """The compared items of one medvision plan, read from its config overrides (what a run uses)."""
    over = plan.overrides()
    node = over["data.transforms.load.intensity"] or {}
    target = str(node.get("_target_", ""))
    norm: dict[str, Any] = {}
    if target.endswith("ClipZScored"):  # ct: clip to [low, high], then (x - mean) / std
        norm = {
            "scheme": "ct",
            "use_mask": False,
            "clip": [node["low"], node["high"]],
            "mean": node["mean"],
            "std": node["std"],
        }
    elif target.endswith("ScaleIntensityRanged"):  # ct, as plans before ClipZScored wrote it
        std = (node["a_max"] - node["a_min"]) / (node["b_max"] - node["b_min"])
        norm = {
            "scheme": "ct",
            "use_mask": False,
            "clip": [node["a_min"], node["a_max"]],
            "mean": node["a_min"] - node["b_min"] * std,
            "std": std,
        }
    elif target.endswith("NormalizeIntensityd"):
        norm = {"scheme": "zscore", "use_mask": bool(node.get("nonzero"))}
    else:
        norm = {"scheme": target.rsplit(".", 1)[-1] or "none", "use_mask": False}
    net = over["model.net"]
    family = str(net["_target_"]).rsplit(".", 1)[-1]
    spacing = over["data.transforms.pixdim"]
    patch = over["data.patch_size"]
    if family == "DynUNet":
        strides, kernels, features = net["strides"], net["kernel_size"], net["filters"]
    else:  # MONAI UNet: strided first convolution, 3x3x3 kernels throughout
        strides, kernels, features = [[1] * len(patch), *net["strides"]], None, net["channels"]
    return {
        "spacing": spacing,
        "spacing_rule": _choice(plan, "target spacing (mm)").rule,
        "normalisation": norm,
        "crop": _choice(plan, "foreground crop").value,
        "median_resampled_shape": plan.estimate["median_resampled_shape"],
        "patch": patch,
        "patch_rule": _choice(plan, "patch (voxels)").rule,
        "network": family + (" (res blocks)" if net.get("res_block") else ""),
        "network_rule": _choice(plan, "network").rule,
        "stages": len(strides),
        "pools": [sum(1 for s in strides if s[a] == 2) for a in range(len(patch))],
        "strides": strides,
        "kernels": kernels,
        "features": features,
        "batch_patches": over["data.batch_size"] * over["data.transforms.num_samples"],
        "batch": _choice(plan, "batch").value,
        "schedule": _choice(plan, "schedule").value,
        "step_s": plan.estimate["step_s"],
        "steps": plan.estimate["steps"],
        "budget": plan.budget,
    }


# ---------------------------------------------------------------------------------------------
# the comparison


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            return " ".join("x".join(str(v) for v in row) for row in value)
        return "x".join(_fmt(v) for v in value)
    return str(value)


def _close(a: Sequence[float], b: Sequence[float], rtol: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rtol * max(abs(x), abs(y), 1e-12) for x, y in zip(a, b, strict=True))


#: in the cpu-10min column: the value is the gpu-8GB plan's (a property of the data, not of the budget)
SAME = "(same)"


class Rows:
    """The rows of one table: item, nnU-Net's value, the two medvision plans' values, match, why."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        item: str,
        nn: Any,
        gpu: Any,
        cpu: Any,
        why: str,
        same: Any = None,
        required: bool = False,
    ) -> None:
        """Add a row; ``same(nnunet_value, medvision_value) -> bool`` (default ``==``).

        ``required`` rows are the parity criteria: a difference there is a MISMATCH (exit 1).
        """
        same = same or (lambda a, b: a == b)
        ok_gpu = bool(same(nn, gpu))
        ok_cpu = ok_gpu if cpu is SAME else bool(same(nn, cpu))
        if ok_gpu and ok_cpu:
            match = "yes"
        elif required:
            match = "MISMATCH"
        elif ok_gpu or ok_cpu:
            match = f"gpu {'yes' if ok_gpu else 'no'}, cpu {'yes' if ok_cpu else 'no'}"
        else:
            match = "no"
        self.rows.append(
            {
                "item": item,
                "nnunet": nn,
                "gpu-8GB": gpu,
                "cpu-10min": cpu,
                "match": match,
                "required": required,
                "ok": (ok_gpu and ok_cpu) if required else None,
                "why": why,
            }
        )


def _nn_batch_cap(cfg: dict[str, Any], num_training: int) -> float:
    """nnU-Net's 5%-of-dataset batch cap (before its floor of 2)."""
    return 0.05 * math.prod(cfg["median_image_size_in_voxels"]) * num_training / math.prod(cfg["patch_size"])


def compare(name: str, nn: dict[str, Any], mv: dict[str, Any], cases: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows: one item each, nnU-Net | gpu-8GB | cpu-10min | match | why."""
    from medvision.planning import plan as mvplan
    from medvision.planning import rules

    cfg = nn["configurations"]["3d_fullres"]
    fp = mv["fingerprint"]
    g, c = (summarise_plan(mv["plans"][k]) for k in ("gpu-8GB", "cpu-10min"))
    if len(cases["axcodes"]) != 1:
        raise ParityError(f"{name}: cases with different orientations {cases['axcodes']}; map each on its own")
    axcodes = cases["axcodes"][0]
    perm = file_to_ras(axcodes)

    def ras(values: Sequence[Any]) -> list[Any]:
        return to_ras(values, perm) or []

    channel, nn_channel = fp.modalities[0], nnunet_peer.DATASETS[name][2]
    rule = nn["target_spacing_rule"]
    rows = Rows()

    keeps = perm == sorted(perm)
    flips = " (flips only)" if axcodes != "RAS" else ""
    rows.add(
        "axes",
        f"file i,j,k ({','.join(axcodes)})",
        "RAS",
        "RAS",
        f"reorientation to RAS keeps the axis order{flips}: compared axis by axis"
        if keeps
        else f"file axis -> RAS axis {perm}: nnU-Net's values permuted before comparing",
        same=lambda a, b: keeps,
    )

    # the parity criteria: target spacing, normalisation scheme, its mask, and CT's statistics
    nn_spacing = ras(cfg["spacing_file_axes"])
    aniso = "anisotropic" in rule["rule"]
    spacing_rule = (
        "10th percentile on the thick axis (median > 3x the others', < 1/3 of their voxels)"
        if aniso
        else "per-axis median" + (" (the thick axis has enough voxels)" if rule.get("has_aniso_spacing") else "")
    )
    rows.add(
        "target spacing (mm)",
        nn_spacing,
        g["spacing"],
        c["spacing"],
        f"nnU-Net's rule: {spacing_rule}",
        same=lambda a, b: _close(a, b, SPACING_RTOL),
        required=True,
    )
    rows.add(
        "spacing rule",
        "10th pct" if aniso else "median",
        "10th pct" if "anisotropic" in g["spacing_rule"] else "median",
        "10th pct" if "anisotropic" in c["spacing_rule"] else "median",
        f"median spacing {_fmt(ras(to_file(rule['median_spacing'])))} mm",
    )
    nn_boxes = sorted(tuple(ras(to_file(s))) for s in nn["fingerprint"]["shapes_after_crop_kji"])
    mv_boxes = sorted(tuple(case.shape_after_crop) for case in fp.cases)
    rows.add(
        "nonzero box per case",
        f"median {_fmt(ras(to_file(rule['median_shape_after_crop'])))}",
        f"median {_fmt(fp.median_shape_after_crop)}",
        SAME,
        "box of binary_fill_holes(any channel != 0): " + ("every case's equal" if nn_boxes == mv_boxes else "DIFFER"),
        same=lambda a, b: nn_boxes == mv_boxes,
    )
    nn_rel = nn["fingerprint"]["median_relative_size_after_cropping"]
    below = nn_rel < rules.MASK_NORM_BELOW
    rows.add(
        "median relative size",
        nn_rel,
        fp.median_relative_size,
        SAME,
        f"box / image voxels: {'<' if below else '>='} {rules.MASK_NORM_BELOW} decides the z-score mask",
        same=lambda a, b: abs(a - b) < 1e-3,
    )
    nn_norm = cfg["normalization_schemes"][nn_channel]
    nn_scheme = NNUNET_SCHEMES.get(nn_norm, nn_norm)
    named = f"channel '{channel}'" + ("" if channel == nn_channel else f" (nnU-Net's: '{nn_channel}')")
    rows.add(
        "normalisation",
        f"{nn_norm} ({nn_scheme})",
        g["normalisation"]["scheme"],
        c["normalisation"]["scheme"],
        named + (": named CT (exact, any case)" if nn_scheme == "ct" else ": no scheme's name, so per-case z-score"),
        same=lambda a, b: b == nn_scheme,
        required=True,
    )
    rows.add(
        "normalise inside mask",
        cfg["use_mask_for_norm"][nn_channel],
        g["normalisation"]["use_mask"],
        c["normalisation"]["use_mask"],
        "CT is never masked"
        if nn_scheme == "ct"
        else f"median relative size {nn_rel:.3f} {'<' if below else '>='} {rules.MASK_NORM_BELOW}",
        required=True,
    )
    props = nn["fingerprint"]["foreground_intensity_properties_per_channel"][nn_channel]
    nn_clip = [props["percentile_00_5"], props["percentile_99_5"]]
    span = max(nn_clip[1] - nn_clip[0], 1e-12)
    sampling = "equal weight per case (nnU-Net 1.25e7 samples a case, medvision 1e4): sampling noise"
    if nn_scheme == "ct":
        rows.add(
            "CT clip (p0.5, p99.5)",
            nn_clip,
            g["normalisation"]["clip"],
            c["normalisation"]["clip"],
            f"foreground percentiles, within {CT_RTOL:.0%} of the clip range; {sampling}",
            same=lambda a, b: all(abs(x - y) <= CT_RTOL * span for x, y in zip(a, b, strict=True)),
            required=True,
        )
        for key in ("mean", "std"):
            rows.add(
                f"CT {key}",
                props[key],
                g["normalisation"][key],
                c["normalisation"][key],
                f"unclipped foreground {key}, within {CT_RTOL:.0%} (ScaleIntensityRanged: clip, then z-score)",
                same=lambda a, b: abs(a - b) <= CT_RTOL * abs(a),
                required=True,
            )
    else:
        mvi = fp.intensity[0]
        rows.add(
            "fg mean/std/p0.5/p99.5",
            [round(props["mean"], 4), round(props["std"], 4), *nn_clip],
            [round(v, 4) for v in (mvi.mean, mvi.std, mvi.p00_5, mvi.p99_5)],
            SAME,
            f"unused by the per-case z-score; within {CT_RTOL:.0%} of the p0.5-p99.5 range; {sampling}",
            same=lambda a, b: all(abs(x - y) <= CT_RTOL * span for x, y in zip(a, b, strict=True)),
        )

    # what the budget decides: nnU-Net's are its 8 GB GPU values
    rows.add("foreground crop", "nonzero", g["crop"], c["crop"], "both crop each case to its nonzero box")
    rows.add(
        "median resampled shape",
        ras(cfg["median_image_size_file_axes"]),
        [round(v, 2) for v in g["median_resampled_shape"]],
        SAME,
        "within 0.5 voxel: nnU-Net rounds each case's resampled shape before the median",
        same=lambda a, b: all(abs(x - y) <= 0.5 for x, y in zip(a, b, strict=True)),
    )
    nn_patch = ras(cfg["patch_size_file_axes"])
    cpu_steps = math.ceil(mvplan.MIN_PATCHES / mvplan.PATCHES_PER_STEP["cpu"])
    rows.add(
        "patch (voxels)",
        nn_patch,
        g["patch"],
        c["patch"],
        (
            "gpu: nnU-Net's (aspect 1/spacing, clipped to the median, padded to 2^pools; fits 8 GB)"
            if g["patch"] == nn_patch
            else f"gpu: {g['patch_rule']}"
        )
        + (
            f"; cpu: the same ({c['steps']} steps of {c['batch_patches']} in 10 min, aim >= {cpu_steps})"
            if c["patch"] == nn_patch
            else f"; cpu: shrunk until 10 min hold >= {cpu_steps} steps of {c['batch_patches']} patches "
            f"(planned {c['steps']} at {c['step_s']:.2f} s/step, measured)"
        ),
    )
    cpu_unet = (
        ""
        if c["network"].startswith("DynUNet")
        else ("; cpu: MONAI UNet (strided first conv, no full-resolution stage): DynUNet affords too few steps")
    )
    rows.add(
        "network",
        cfg["network_class"].rsplit(".", 1)[-1],
        g["network"],
        c["network"],
        "DynUNet is MONAI's nnU-Net net (2 convs/stage, instance norm, leaky ReLU); medvision's has residual "
        "units and no deep supervision" + cpu_unet,
        same=lambda a, b: False,
    )
    nn_strides = [ras(s) for s in cfg["pool_op_kernel_sizes_file_axes"]]
    nn_kernels = [ras(k) for k in cfg["conv_kernel_sizes_file_axes"]]
    nn_pools = [sum(1 for s in nn_strides if s[a] == 2) for a in range(len(nn_patch))]

    def topo_why(key: str, nn_value: Any, note: str = "") -> str:
        gpu = f"gpu: nnU-Net's rule, same patch and spacing{note}" if g[key] == nn_value else "gpu: DIFFERS"
        if c[key] == nn_value:
            return gpu
        if c["kernels"] is None and key == "kernels":
            return f"{gpu}; cpu: MONAI UNet, 3s throughout"
        return f"{gpu}; cpu: smaller patch, fewer pools (an axis pools while its map >= {2 * rules.BOTTLENECK})"

    rows.add("stages", cfg["n_stages"], g["stages"], c["stages"], topo_why("stages", cfg["n_stages"]))
    rows.add("pools per axis", nn_pools, g["pools"], c["pools"], topo_why("pools", nn_pools))
    rows.add("strides per stage", nn_strides, g["strides"], c["strides"], topo_why("strides", nn_strides))
    rows.add(
        "kernels per stage",
        nn_kernels,
        g["kernels"] or "3 (UNet)",
        c["kernels"] or "3 (UNet)",
        topo_why("kernels", nn_kernels, " (3 once an axis is within 2x of the finest spacing)"),
    )
    nn_feat = cfg["features_per_stage"]
    rows.add(
        "features per stage",
        nn_feat,
        g["features"],
        c["features"],
        "32*2^s capped at 320 (medvision: base*2^s capped at 10x base)"
        + ("" if c["features"] == nn_feat else f"; cpu: base {c['features'][0]}, {c['stages']} stages"),
    )
    cap = _nn_batch_cap(cfg, nn["fingerprint"]["num_cases"])
    rows.add(
        "batch (patches/step)",
        cfg["batch_size"],
        g["batch_patches"],
        c["batch_patches"],
        f"nnU-Net: its 5%-of-dataset cap ({cap:.2f}) raised to its floor of 2, not memory; medvision gpu: "
        f"nnU-Net's batch of 2 (no 5% cap); cpu: {c['batch']} (2-core throughput)",
    )
    ratio = max(nn_spacing) / min(nn_spacing)
    order = cfg.get("resampling_fn_data_kwargs") or {}
    rows.add(
        "preprocessing order",
        "crop, normalise, resample "
        + (
            f"(order {order.get('order')} in-plane, {order.get('order_z')} along z: spacing ratio {ratio:.2g} > 3)"
            if ratio > rules.ANISOTROPY
            else f"(order {order.get('order')})"
        ),
        pipeline_steps(),
        SAME,
        "pipeline, not planned (conf/data/transforms/seg3d.yaml): medvision normalises the resampled image "
        "(z-score mask: voxels != 0; nnU-Net's: the hole-filled nonzero mask); intensities differ slightly, "
        "no planned value does",
        same=lambda a, b: False,
    )
    rows.add(
        "schedule",
        NNUNET_SCHEDULE,
        g["schedule"],
        c["schedule"],
        f"nnU-Net's is fixed; medvision's fills the budget, at most nnU-Net's 250k steps (gpu step times "
        f"{mv['gpu_step_times']}; cpu measured)",
    )
    return rows.rows


def pipeline_steps() -> str:
    """medvision's deterministic preprocessing steps (``load`` of conf/data/transforms/seg3d.yaml), in order."""
    import yaml

    load = yaml.safe_load((REPO / "conf" / "data" / "transforms" / "seg3d.yaml").read_text())["load"]
    names = []
    for key, node in load.items():
        target = str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]
        if target == "Spacingd":
            names.append(f"resample ({node['mode'][0]})")
        elif key in ("orientation", "intensity", "crop_foreground"):
            names.append({"orientation": "orient", "intensity": "normalise", "crop_foreground": "crop"}[key])
    return ", ".join(names)


def to_file(kji: Sequence[Any]) -> list[Any]:
    """nnU-Net's fingerprint (SimpleITK k, j, i) order -> file axes (i, j, k)."""
    return list(reversed(kji))


def print_table(name: str, rows: list[dict[str, Any]], header: str, width: int) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{name}: nnU-Net v2 3d_fullres vs medvision", caption=header, show_lines=True)
    for col, style in (
        ("item", "bold"),
        ("nnU-Net 3d_fullres", None),
        ("medvision gpu-8GB", None),
        ("medvision cpu-10min", None),
        ("match?", None),
        ("why", None),
    ):
        table.add_column(col, style=style, overflow="fold")
    for r in rows:
        match = r["match"]
        style = "red bold" if match == "MISMATCH" else ("green" if match == "yes" else "yellow")
        cells = [escape(str(r["item"])), *(escape(_fmt(r[k])) for k in ("nnunet", "gpu-8GB", "cpu-10min"))]
        table.add_row(*cells, f"[{style}]{match}[/]", escape(r["why"]))
    Console(width=width).print(table)


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all cores busy over ``seconds`` (``/proc/stat``; 0 where it cannot be read)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--work", type=Path, default=Path("/tmp/plan_parity"), help="datasets and caches (default %(default)s)"
    )
    p.add_argument("--only", nargs="*", choices=DATASETS, default=None, help="these datasets only")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the results go (default %(default)s)")
    p.add_argument("--rerun-nnunet", action="store_true", help="plan with nnU-Net again (needs its peer venv)")
    p.add_argument("--dipy-python", default=None, help="a python that imports dipy (writes dipy_b0)")
    p.add_argument("--width", type=int, default=200, help="table width in characters")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    import harness

    start = time.perf_counter()
    busy = cpu_busy()
    if busy > 0.2:
        print(
            f"warning: other processes keep {busy:.0%} of the {os.cpu_count()} cores busy: the cpu-10min plan's "
            "measured step times (cached in <work>/cache/plan) come out slower than on an idle machine (here 3-6x "
            "with one core taken), and so its patch and net smaller; rerun with an empty <work>/cache/plan when idle"
        )
    results: dict[str, Any] = {}
    ok = True
    try:
        if args.rerun_nnunet:
            nnunet_peer.require_venv(nnunet_peer.DEFAULT_VENV)  # fail before any work
        for name in args.only or DATASETS:
            msd = prepare(name, args.work, args.dipy_python)
            nn = nnunet_plan(name, args.work, msd, args.rerun_nnunet)
            cases = check_cases(msd, nn.get("prepare", {}))
            if not cases["identical_to_nnunet_input"]:
                print(f"warning: {name}: {msd} differs from what nnU-Net planned: {cases['differing_cases']}")
            mv = medvision_plans(msd, args.work / "cache")
            rows = compare(name, nn, mv, cases)
            header = (
                f"{cases['num_cases']} cases (all: the set nnU-Net planned), split {mv['split']}; "
                f"input identical to nnU-Net's: {_fmt(cases['identical_to_nnunet_input'])}; "
                f"nnU-Net's plan: {nn['origin']}"
            )
            print_table(name, rows, header, args.width)
            required_ok = all(r["ok"] for r in rows if r["required"])
            ok = ok and required_ok
            results[name] = {
                "ok": required_ok,
                "cases": cases,
                "split": mv["split"],
                "rows": rows,
                "nnunet": {k: nn[k] for k in ("origin", "target_spacing_rule", "fingerprint") if k in nn}
                | {"3d_fullres": nn["configurations"]["3d_fullres"]},
                "medvision": {
                    "fingerprint": {k: v for k, v in mv["fingerprint"].to_dict().items() if k != "cases"},
                    "fingerprint_s": round(mv["fingerprint_s"], 2),
                    "plan_s": {k: round(v, 2) for k, v in mv["plan_s"].items()},
                    "gpu_step_times": mv["gpu_step_times"],
                    "plans": {k: v.to_dict() for k, v in mv["plans"].items()},
                },
            }
    except (ParityError, nnunet_peer.PeerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "ok": ok,
        "criteria": f"target spacing within {SPACING_RTOL:g} relative, normalisation scheme and mask exactly, CT clip "
        f"(of its range), mean and std within {CT_RTOL:.0%}",
        "machine": harness.machine_facts(torch.get_num_threads()) | {"cpu_busy_at_start": round(busy, 3)},
        "elapsed_s": round(time.perf_counter() - start, 1),
        "datasets": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    verdict = "match" if ok else "DO NOT match"
    print(f"target spacing and normalisation {verdict} on {', '.join(results)}; wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
