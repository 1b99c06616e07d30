"""medvision's NIfTI reader (``medvision.data.nifti.NiftiReader``) gives exactly MONAI's arrays.

The volume pipelines read NIfTI through it (``conf/data/transforms/seg3d.yaml``); its only
difference from MONAI's own ``NibabelReader`` is how the Fortran-ordered voxels become a C-ordered
array, so every value, the dtype, the memory order and the metadata must be the ones MONAI gives.
Its speed is measured by ``scripts/bench`` (the real-size read + preprocess row), not here.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage, LoadImaged

from medvision.data.nifti import NiftiReader


def _write(path: Path, array: np.ndarray, slope: float | None = None, klass: type = nib.Nifti1Image) -> Path:
    img = klass(array, np.diag([0.8, 0.7, 1.5, 1.0]))
    if slope is not None:
        img.header.set_slope_inter(slope, -3.0)
    nib.save(img, path)
    return path


@pytest.mark.parametrize(
    ("shape", "dtype", "slope", "name", "klass"),
    [
        ((150, 131, 70), np.int16, None, "case.nii.gz", nib.Nifti1Image),  # tiles that do not divide the volume
        ((90, 70, 40), np.uint8, None, "case.nii.gz", nib.Nifti1Image),  # a label map
        ((70, 65, 33), np.int16, 0.5, "case.nii.gz", nib.Nifti1Image),  # scaled integers (nibabel: float64)
        ((40, 36, 20, 2), np.float32, None, "case.nii.gz", nib.Nifti1Image),  # two channels in the 4th axis
        ((64, 48), np.float32, None, "case.nii.gz", nib.Nifti1Image),  # 2D
        ((50, 40, 30), np.int16, None, "case.nii", nib.Nifti1Image),  # not compressed
        ((50, 40, 30), np.float32, None, "case.nii.gz", nib.Nifti2Image),  # NIfTI-2
        ((50, 40, 30), np.dtype(">i2"), None, "case.nii.gz", nib.Nifti1Image),  # big-endian
    ],
)
def test_same_arrays_and_metadata_as_monai(tmp_path: Path, shape, dtype, slope, name, klass) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, shape).astype(dtype) if dtype != np.uint8 else rng.integers(0, 3, shape)
    path = _write(tmp_path / name, np.asarray(data, dtype=dtype), slope, klass)

    ours = LoadImage(image_only=True, reader=NiftiReader())(path)
    monai = LoadImage(image_only=True)(path)

    assert ours.dtype == monai.dtype == torch.float32
    assert ours.shape == monai.shape and ours.is_contiguous()
    assert torch.equal(ours.as_tensor(), monai.as_tensor())
    assert np.array_equal(np.asarray(ours.affine), np.asarray(monai.affine))
    assert sorted(ours.meta) == sorted(monai.meta)


def test_a_broken_file_names_itself(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "broken.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(ValueError, match=r"broken\.nii\.gz"):
        NiftiReader().read(str(path))


def test_channel_files_are_stacked_like_monai(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = [_write(tmp_path / f"c{i}.nii.gz", rng.normal(size=(70, 66, 30)).astype(np.float32)) for i in range(2)]

    ours = LoadImaged(keys="image", image_only=True, reader="medvision.data.nifti.NiftiReader")({"image": files})
    monai = LoadImaged(keys="image", image_only=True)({"image": files})

    assert ours["image"].shape == (2, 70, 66, 30)
    assert torch.equal(ours["image"].as_tensor(), monai["image"].as_tensor())


def test_other_formats_fall_back_to_monai_readers(tmp_path: Path) -> None:
    """A NumPy file is not NIfTI: the reader refuses it and LoadImage reads it with MONAI's own."""
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "case.npy", array)

    assert not NiftiReader().verify_suffix(str(tmp_path / "case.npy"))
    with pytest.raises(ValueError, match="NiftiReader reads"):
        NiftiReader().read(str(tmp_path / "case.npy"))
    loaded = LoadImage(image_only=True, reader="medvision.data.nifti.NiftiReader")(tmp_path / "case.npy")
    assert np.array_equal(np.asarray(loaded), array)
