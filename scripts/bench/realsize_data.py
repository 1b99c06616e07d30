"""Benchmark data at real sizes, written as real NIfTI files (issue #19).

    python scripts/bench/realsize_data.py OUT --kind ct --cases 40 --jobs 2   # 512x512x300 CT, 0.8x0.8x1.5 mm
    python scripts/bench/realsize_data.py OUT --kind mri --cases 10    # 256x256x180 MRI-like, 1 mm

Each kind is an MSD folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``) that medvision
(``data=msd data.root=OUT``) and nnU-Net (after its conversion) read as they read real data.

- ``ct``: int16 Hounsfield units, 512 x 512 x 300 voxels of 0.8 x 0.8 x 1.5 mm (the size of a
  routine abdominal CT), labels 1 = bone, 2 = an organ a few HU above soft tissue. The anatomy
  is medvision's synthetic CT phantom (:mod:`medvision.data.sources.synthetic_ct`: body, fat,
  spine, ribs, organ, decoy organ, gas) drawn at a quarter of the resolution in each axis and
  resampled to full size (trilinear image, nearest label), then full-resolution noise is added.
  Drawing the phantom at full size takes ~55 s a case on one core; this takes a few seconds.
- ``mri``: float32 T1-like volumes, 256 x 256 x 180 voxels of 1 mm (a typical 3D brain MRI),
  labels 1 = grey matter, 2 = white matter: the 1 mm MNI152 template that ships inside nilearn,
  padded to 256 x 256 x 180, with a smooth multiplicative bias field and Rician-like noise drawn
  per case.

At 512x512x300, a case preprocessed to float32 (image and label) takes ~630 MB, so ``--cases``
beyond RAM / 0.63 GB is a set the memory cache (``data.cache=memory``) cannot hold.
Cases are written atomically (a temporary name, then renamed), and an existing complete folder
is reused; a folder holding other files is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: the geometry of each kind: array shape (x, y, z) and voxel size in mm
GEOMETRY: dict[str, dict[str, Any]] = {
    "ct": {"shape": (512, 512, 300), "spacing": (0.8, 0.8, 1.5)},
    "mri": {"shape": (256, 256, 180), "spacing": (1.0, 1.0, 1.0)},
}
LABELS: dict[str, list[str]] = {
    "ct": ["background", "bone", "organ"],
    "mri": ["background", "grey_matter", "white_matter"],
}
MODALITY = {"ct": "CT", "mri": "T1"}
#: the CT phantom is drawn at 1/DOWN of the resolution in each axis, then resampled
DOWN = 4


def _upsample(volume: np.ndarray, shape: tuple[int, ...], mode: str) -> np.ndarray:
    """``volume`` resampled to ``shape`` (``trilinear`` or ``nearest``), with torch."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return torch.nn.functional.interpolate(t, size=shape, mode=mode, **kwargs)[0, 0].numpy()


def ct_case(
    index: int, seed: int = 0, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (HU, int16, axes x y z), label (uint8) and RAS affine of CT case ``index``.

    ``shape`` (default 512 x 512 x 300) keeps the field of view: a smaller one has larger voxels.
    """
    from medvision.data.sources.synthetic_ct import SyntheticCT

    full, spacing = GEOMETRY["ct"]["shape"], GEOMETRY["ct"]["spacing"]
    shape = tuple(shape or full)
    spacing = tuple(s * f / n for s, f, n in zip(spacing, full, shape, strict=True))
    low = SyntheticCT(
        num_cases=1,
        inplane_size=(shape[0] // DOWN, shape[0] // DOWN),
        num_slices=(shape[2] // DOWN, shape[2] // DOWN),
        inplane_spacing=(spacing[0] * DOWN, spacing[0] * DOWN),
        slice_spacing=(spacing[2] * DOWN, spacing[2] * DOWN),
        noise_hu=(1.0, 2.0),
        seed=seed,
    )
    hu, label, _ = low.case(index)
    image = _upsample(hu, shape, "trilinear")
    rng = np.random.default_rng([seed, index, 1])
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= float(rng.uniform(8.0, 15.0))
    image += noise
    del noise
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    lab = _upsample(label, shape, "nearest").astype(np.uint8)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-shape[i] * spacing[i] / 2 for i in range(3)]
    return image, lab, affine


def mri_case(
    index: int, seed: int = 0, shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (float32, axes x y z), tissue label (uint8) and RAS affine of MRI case ``index``.

    ``shape`` (default 256 x 256 x 180) crops or pads the 1 mm template to another size.
    """
    from medvision.data.sources.mni152 import MNI152Tissue

    t1, label, _ = MNI152Tissue(resolution=1).volumes()
    shape = tuple(shape or GEOMETRY["mri"]["shape"])
    image = np.zeros(shape, np.float32)
    lab = np.zeros(shape, np.uint8)
    src = [slice(max(0, (s - d) // 2), max(0, (s - d) // 2) + min(s, d)) for s, d in zip(t1.shape, shape, strict=True)]
    dst = [slice(max(0, (d - s) // 2), max(0, (d - s) // 2) + min(s, d)) for s, d in zip(t1.shape, shape, strict=True)]
    image[tuple(dst)] = t1[tuple(src)]
    lab[tuple(dst)] = label[tuple(src)]
    rng = np.random.default_rng([seed, index, 2])
    # a smooth bias field: a coarse random grid, resampled
    bias = np.exp(0.15 * _upsample(rng.standard_normal((4, 4, 4)), shape, "trilinear"))
    image *= bias * float(rng.uniform(0.8, 1.2))
    scale = 0.03 * float(np.percentile(image[lab > 0], 99))
    real = image + scale * rng.standard_normal(shape, dtype=np.float32)
    imag = scale * rng.standard_normal(shape, dtype=np.float32)
    image = np.sqrt(real**2 + imag**2).astype(np.float32)  # magnitude images: Rician noise
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-s / 2 for s in shape]
    return image, lab, affine


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, path)


#: the cases the real-size benchmarks (rows 10-12) share at full size: drawn once per work folder
BENCH_CASES = 4


def _draw(folder: Path, kind: str, index: int, seed: int, shape: tuple[int, ...] | None) -> str:
    """Draw case ``index`` and write its image and label into the MSD folder ``folder``."""
    case = f"{kind}_{index:03d}"
    image, label, affine = (ct_case if kind == "ct" else mri_case)(index, seed, shape)
    _save(label, affine, folder / "labelsTr" / f"{case}.nii.gz")
    _save(image, affine, folder / "imagesTr" / f"{case}.nii.gz")
    return f"  wrote {case}.nii.gz {image.shape} {image.dtype}"


def _case_files(folder: Path, kind: str, index: int) -> tuple[Path, Path]:
    case = f"{kind}_{index:03d}.nii.gz"
    return folder / "imagesTr" / case, folder / "labelsTr" / case


def _prepare(folder: Path, kind: str) -> None:
    """Make ``folder`` an MSD folder of ``kind``, refusing one that holds anything else."""
    if kind not in GEOMETRY:
        raise SystemExit(f"--kind must be one of {', '.join(GEOMETRY)}, got {kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "dataset.json"
    ours = {"dataset.json", "imagesTr", "labelsTr"}
    others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
    if others:
        raise SystemExit(f"{folder} holds other files ({', '.join(others[:3])}); give an empty or new folder")
    if manifest.is_file() and json.loads(manifest.read_text()).get("name") != f"realsize_{kind}":
        raise SystemExit(f"{folder} holds another dataset ({manifest}); give an empty or new folder")
    (folder / "imagesTr").mkdir(exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)


def _manifest(folder: Path, kind: str, cases: int) -> None:
    """Write ``folder``'s ``dataset.json`` listing cases ``0 .. cases - 1`` (atomically)."""
    entries = [
        {"image": f"./imagesTr/{kind}_{i:03d}.nii.gz", "label": f"./labelsTr/{kind}_{i:03d}.nii.gz"}
        for i in range(cases)
    ]
    info = {
        "name": f"realsize_{kind}",
        "description": f"medvision benchmark data at real size ({kind}; scripts/bench/realsize_data.py)",
        "tensorImageSize": "3D",
        "modality": {"0": MODALITY[kind]},
        "labels": {str(i): n for i, n in enumerate(LABELS[kind])},
        "numTraining": len(entries),
        "training": entries,
        "test": [],
    }
    tmp = folder / ".dataset.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, folder / "dataset.json")


def write(
    folder: Path,
    kind: str = "ct",
    cases: int = 2,
    seed: int = 0,
    log: Any = print,
    shape: tuple[int, ...] | None = None,
    jobs: int = 1,
) -> Path:
    """Write ``cases`` cases of ``kind`` into the MSD folder ``folder`` (cases already there are kept).

    ``shape``: another array shape than the kind's real one (the benchmarks' CI smoke); a folder
    written at one shape is not reused at another (name folders by shape). ``jobs``: processes
    drawing the missing cases at once (each holds about 1.5 GB at the CT's real size).
    """
    _prepare(folder, kind)
    missing = [i for i in range(cases) if not all(p.is_file() for p in _case_files(folder, kind, i))]
    if jobs > 1 and len(missing) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawned, not forked: a fork of a process that has run torch's OpenMP threads can hang
        with ProcessPoolExecutor(min(jobs, len(missing)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_draw, *zip(*[(folder, kind, i, seed, shape) for i in missing], strict=True)):
                log(line)
    else:
        for i in missing:
            log(_draw(folder, kind, i, seed, shape))
    _manifest(folder, kind, cases)
    return folder


def subset(source: Path, folder: Path, cases: int, kind: str = "ct") -> Path:
    """The MSD folder ``folder`` of the first ``cases`` cases of ``source``, hard-linked (copied across
    file systems), so that sets of several sizes share their files."""
    import shutil

    _prepare(folder, kind)
    for i in range(cases):
        for src, dst in zip(_case_files(source, kind, i), _case_files(folder, kind, i), strict=True):
            if not dst.is_file():
                tmp = dst.with_name(f".{dst.name}.tmp")
                tmp.unlink(missing_ok=True)
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copy2(src, tmp)
                os.replace(tmp, dst)
    _manifest(folder, kind, cases)
    return folder


def bench_set(workdir: Path, cases: int, shape: tuple[int, ...] | None = None, log: Any = print) -> Path:
    """An MSD folder of the first ``cases`` CT cases the real-size benchmarks share.

    At full size (``shape=None``) the first request draws :data:`BENCH_CASES` cases, two processes at
    once (~15 s a case), into ``workdir/data/realsize_ct_pool_full``; every set is a hard-linked subset
    of it, so that rows 10-12 draw the CT once. A ``shape`` (the CI smoke) draws just the cases asked
    for, in this process.
    """
    name = "full" if shape is None else "x".join(map(str, shape))
    pool = workdir / "data" / f"realsize_ct_pool_{name}"
    drawn = max(cases, BENCH_CASES) if shape is None else cases
    write(pool, "ct", cases=drawn, shape=shape, log=log, jobs=2 if shape is None else 1)
    return pool if cases == drawn else subset(pool, workdir / "data" / f"realsize_ct_{cases}_{name}", cases)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="write real-size CT or MRI-like benchmark data (NIfTI, MSD layout)")
    p.add_argument("out", type=Path, help="MSD folder to write (created; cases already there are kept)")
    p.add_argument("--kind", choices=sorted(GEOMETRY), default="ct")
    p.add_argument("--cases", type=int, default=2, help="number of cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="cases drawn at once, one process each (~1.5 GB each for CT)")
    args = p.parse_args(argv)
    write(args.out, args.kind, args.cases, args.seed, jobs=args.jobs)
    print(f"{args.cases} {args.kind} cases in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
