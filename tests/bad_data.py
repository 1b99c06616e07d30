"""Real NIfTI datasets with one deliberately broken case, for the data audit tests.

Every dataset is written with nibabel in Medical Segmentation Decathlon layout (or as a CSV
manifest): a few good 16^3 cases (labels 0..2) and, where asked, one case ``bad`` broken in
one way. ``BREAKS`` maps each way to the audit check that must catch it and the file it must
name.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

LABELS = ["background", "grey", "white"]
#: a non-trivial affine: anisotropic voxels, an origin off zero
AFFINE = np.array([[1.5, 0, 0, -12.0], [0, 1.5, 0, 7.5], [0, 0, 2.0, 3.0], [0, 0, 0, 1]])
SHAPE = (16, 16, 16)


def good_arrays(seed: int, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A noise image and its label map 0/1/2 (thresholds of the image)."""
    image = np.random.default_rng(seed).random(shape).astype(np.float32)
    label = ((image > 0.6).astype(np.uint8) + (image > 0.85).astype(np.uint8)).astype(np.uint8)
    return image, label


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def write_case(root: Path, name: str, seed: int) -> dict[str, str]:
    """Write a good case ``imagesTr/<name>.nii.gz`` + ``labelsTr/<name>.nii.gz``; its MSD entry."""
    image, label = good_arrays(seed)
    save(root / "imagesTr" / f"{name}.nii.gz", image)
    save(root / "labelsTr" / f"{name}.nii.gz", label)
    return {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}


def write_manifest(root: Path, cases: list[dict[str, str]], labels: list[str] = LABELS) -> Path:
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": root.name,
                "labels": {str(i): n for i, n in enumerate(labels)},
                "modality": {"0": "MR"},
                "numTraining": len(cases),
                "training": cases,
            },
            indent=1,
        )
    )
    return root


# ---------------------------------------------------------------------------- ways to break a case
def _truncate(root: Path, seed: int) -> None:
    path = root / "imagesTr" / "bad.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _shape(root: Path, seed: int) -> None:
    _, label = good_arrays(seed)
    save(root / "labelsTr" / "bad.nii.gz", label[:, :, :12])


def _affine(root: Path, seed: int) -> None:
    _, label = good_arrays(seed)
    shifted = AFFINE.copy()
    shifted[0, 3] += 3.0  # the label sits 3 mm to the side of the image
    save(root / "labelsTr" / "bad.nii.gz", label, shifted)


def _label_range(root: Path, seed: int) -> None:
    _, label = good_arrays(seed)
    label[2, 3, 4] = 7  # three labels are declared: 7 is none of them
    save(root / "labelsTr" / "bad.nii.gz", label)


def _nan(root: Path, seed: int) -> None:
    image, _ = good_arrays(seed)
    image[5, 5, 5] = np.nan
    image[6, 6, 6] = np.inf
    save(root / "imagesTr" / "bad.nii.gz", image)


def _missing(root: Path, seed: int) -> None:
    (root / "labelsTr" / "bad.nii.gz").unlink()


def _non_integer(root: Path, seed: int) -> None:
    _, label = good_arrays(seed)
    save(root / "labelsTr" / "bad.nii.gz", label.astype(np.float32) * 0.5)  # 0, 0.5, 1.0


def _zero_spacing(root: Path, seed: int) -> None:
    image, label = good_arrays(seed)
    flat = AFFINE.copy()
    flat[2, 2] = 0.0  # a collapsed z axis: nibabel writes it only as a raw sform
    for folder, array in (("imagesTr", image), ("labelsTr", label)):
        header = nib.Nifti1Header()
        header.set_data_dtype(array.dtype)
        header.set_sform(flat, code=1)
        header.set_qform(None, code=0)
        nib.save(nib.Nifti1Image(array, None, header=header), root / folder / "bad.nii.gz")


def _wrong_dims(root: Path, seed: int) -> None:
    image, label = good_arrays(seed, (16, 16))
    save(root / "imagesTr" / "bad.nii.gz", image)
    save(root / "labelsTr" / "bad.nii.gz", label)


#: way to break the case ``bad`` -> (function, check that must catch it, file it must name)
BREAKS: dict[str, tuple[Callable[[Path, int], None], str, str]] = {
    "truncated": (_truncate, "readable", "imagesTr/bad.nii.gz"),
    "shape_mismatch": (_shape, "shape", "labelsTr/bad.nii.gz"),
    "affine_mismatch": (_affine, "affine", "labelsTr/bad.nii.gz"),
    "label_out_of_range": (_label_range, "labels", "labelsTr/bad.nii.gz"),
    "nan_image": (_nan, "finite", "imagesTr/bad.nii.gz"),
    "missing_file": (_missing, "missing", "labelsTr/bad.nii.gz"),
    "non_integer_labels": (_non_integer, "labels", "labelsTr/bad.nii.gz"),
    "zero_spacing": (_zero_spacing, "spacing", "imagesTr/bad.nii.gz"),
    "wrong_dims": (_wrong_dims, "dims", "labelsTr/bad.nii.gz"),
}


def msd_with_one_bad_case(root: Path, how: str | None, n_good: int = 4, seed: int = 99) -> Path:
    """An MSD folder of ``n_good`` good cases ``good_<i>`` and, unless ``how`` is None, case ``bad``
    (its image drawn with ``seed``)."""
    if root.exists():
        shutil.rmtree(root)
    cases = [write_case(root, f"good_{i}", seed=i) for i in range(n_good)]
    if how is not None:
        cases.append(write_case(root, "bad", seed=seed))
        BREAKS[how][0](root, seed)
    return write_manifest(root, cases)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
