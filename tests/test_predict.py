"""``medvision-predict``: masks in the input's original space, DICOM series, classifier CSVs, bad cases.

A tiny 3D U-Net is trained (once per session, :mod:`predict_fixtures`) on MONAI's synthetic
spheres at 1 mm. The test images are written here on other grids: anisotropic voxels
(1.0 x 1.5 x 2.0 mm) in RAS and in LAS orientation, and a coronal CT series of DICOM slices
(0.9 x 1.1 mm pixels, 2 mm slices). Spheres are drawn in millimetres, so the reference label
is exact on every grid; a mask written in the wrong place or orientation loses its Dice.

Dice bound: observed (2-core CPU, training seeds 0 / 1 / 2) 0.878 / 0.870 / 0.833 on both NIfTI
cases and 0.946 / 0.925 / 0.886 on the DICOM series. Chance is far below: spheres fill 5.5% (NIfTI)
and 8.4% (DICOM) of the volume, so an all-foreground mask scores 0.10 / 0.15, and a mask put back
in the wrong place or orientation overlaps little. ``MIN_DICE = 0.6`` leaves a wide margin.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import compose_in, run_cli
from medvision.utils.errors import MedvisionError
from predict_fixtures import (
    COL_DIR,
    COLS,
    FIRST_IPP,
    PIXEL_SPACING,
    ROW_DIR,
    ROWS,
    SLICE_STEP,
    SLICES,
    classifier_checkpoint,
    segmenter_checkpoint,
    spheres,
    write_ct_series,
)

MIN_DICE = 0.6
SPACING = (1.0, 1.5, 2.0)
SHAPE = (40, 27, 20)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def write_ras_las(folder: Path, seed: int = 1) -> dict[str, np.ndarray]:
    """``ras.nii.gz`` and ``las.nii.gz`` (the same volume, flipped along x with its affine adjusted).

    Returns:
        The reference label of each case, in its file's voxel order.
    """
    rng = np.random.default_rng(seed)
    axes = [np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    image, label = spheres(points, rng, np.array(SHAPE) * np.array(SPACING))
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-20.0, 12.5, 7.0)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), folder / "ras.nii.gz")
    nib.save(nib.Nifti1Image(image[::-1].astype(np.float32), affine @ flip), folder / "las.nii.gz")
    assert nib.aff2axcodes(affine) == ("R", "A", "S") and nib.aff2axcodes(affine @ flip) == ("L", "A", "S")
    return {"ras": label, "las": label[::-1]}


def compose_predict(home: Path, run_dir: Path, overrides: list[str]):
    return compose_in(home, run_dir, overrides, config_name="predict")


@pytest.fixture(scope="module")
def seg_ckpt(medvision_home: Path) -> Path:
    return segmenter_checkpoint(medvision_home)


@pytest.fixture(scope="module")
def ras_las(medvision_home: Path, seg_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One prediction over a folder holding the RAS and the LAS case, with probability maps."""
    from medvision.inference.predict import predict

    root = tmp_path_factory.mktemp("ras_las")
    labels = write_ras_las(root / "cases")
    cfg = compose_predict(
        medvision_home,
        root / "run",
        [f"ckpt_path={seg_ckpt}", f"input={root / 'cases'}", f"output={root / 'masks'}", "save_probabilities=true"],
    )
    summary = predict(cfg)
    return {"root": root, "labels": labels, "summary": summary, "cfg": cfg}


def test_masks_keep_the_input_grid_in_ras_and_las(ras_las: dict) -> None:
    root, summary = ras_las["root"], ras_las["summary"]
    assert summary.failed == {} and summary.exit_code == 0
    masks = {}
    for name in ("ras", "las"):
        source = nib.load(root / "cases" / f"{name}.nii.gz")
        out = nib.load(root / "masks" / f"{name}.nii.gz")
        assert out.shape == source.shape == SHAPE
        assert np.array_equal(out.affine, source.affine), (name, out.affine, source.affine)
        assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(source.affine)
        assert np.allclose(out.header.get_zooms(), SPACING)
        assert np.issubdtype(out.get_data_dtype(), np.integer)
        mask = np.asarray(out.dataobj)
        assert set(np.unique(mask)) <= {0, 1}
        score = dice(mask, ras_las["labels"][name])
        assert score > MIN_DICE, f"{name}: Dice {score:.3f} with the reference label (bound {MIN_DICE})"
        masks[name] = mask
    # the same anatomy: the LAS mask is the RAS mask flipped back along x
    assert (masks["las"][::-1] == masks["ras"]).mean() > 0.999


def test_probability_maps_sum_to_one_and_give_the_mask(ras_las: dict) -> None:
    root = ras_las["root"]
    probs = nib.load(root / "masks" / "ras_probabilities.nii.gz")
    mask = np.asarray(nib.load(root / "masks" / "ras.nii.gz").dataobj)
    values = np.asarray(probs.dataobj).reshape(*SHAPE, -1)
    assert values.shape == (*SHAPE, 2) and probs.get_data_dtype() == np.float32
    assert np.array_equal(probs.affine, nib.load(root / "cases" / "ras.nii.gz").affine)
    assert np.allclose(values.sum(-1), 1.0, atol=1e-4)
    assert np.array_equal(values.argmax(-1), mask)
    written = json.loads(Path(ras_las["cfg"].summary).read_text())
    assert sorted(written["written"]) == ["las", "ras"] and written["failed"] == {}


def test_existing_outputs_and_inputs_are_never_overwritten(ras_las: dict, medvision_home: Path, seg_ckpt: Path) -> None:
    from medvision.inference.predict import predict

    root = ras_las["root"]
    before = (root / "masks" / "ras.nii.gz").stat().st_mtime_ns
    again = compose_predict(
        medvision_home, root / "run2", [f"ckpt_path={seg_ckpt}", f"input={root / 'cases'}", f"output={root / 'masks'}"]
    )
    with pytest.raises(MedvisionError, match="exist already") as err:
        predict(again)
    assert "overwrite=true" in str(err.value)
    assert (root / "masks" / "ras.nii.gz").stat().st_mtime_ns == before
    into_input = compose_predict(
        medvision_home,
        root / "run3",
        [f"ckpt_path={seg_ckpt}", f"input={root / 'cases'}", f"output={root / 'cases'}", "overwrite=true"],
    )
    with pytest.raises(MedvisionError, match="overwrite the input"):
        predict(into_input)
    assert sorted(p.name for p in (root / "cases").iterdir()) == ["las.nii.gz", "ras.nii.gz"]


# ----------------------------------------------------------------------------- DICOM
def test_dicom_series_mask_has_the_series_geometry(medvision_home: Path, seg_ckpt: Path, tmp_path: Path) -> None:
    """A series folder gives a mask on the series' grid; a folder mixing two series is refused
    (MONAI's reader would stack both series' slices into one volume)."""
    import shutil

    from monai.transforms import LoadImage

    from medvision.inference.predict import predict

    label = write_ct_series(tmp_path / "patients" / "ct_series")
    write_ct_series(tmp_path / "other", seed=3)
    shutil.copytree(tmp_path / "patients" / "ct_series", tmp_path / "patients" / "mixed")
    for f in (tmp_path / "other").iterdir():
        shutil.copy(f, tmp_path / "patients" / "mixed" / f"other_{f.name}")
    cfg = compose_predict(
        medvision_home,
        tmp_path / "run",
        [f"ckpt_path={seg_ckpt}", f"input={tmp_path / 'patients'}", f"output={tmp_path / 'masks'}"],
    )
    summary = predict(cfg)
    assert list(summary.written) == ["ct_series"] and list(summary.failed) == ["mixed"]
    assert (
        "holds 2 DICOM series" in summary.failed["mixed"]
        and str(tmp_path / "patients" / "mixed") in summary.failed["mixed"]
    )
    assert summary.exit_code == 3
    out = nib.load(tmp_path / "masks" / "ct_series.nii.gz")
    # the geometry the DICOM tags define, in NIfTI's RAS world (x, y negated from DICOM's LPS)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    expected = np.eye(4)
    expected[:3, 0] = lps_to_ras @ ROW_DIR * PIXEL_SPACING[1]
    expected[:3, 1] = lps_to_ras @ COL_DIR * PIXEL_SPACING[0]
    expected[:3, 2] = lps_to_ras @ np.cross(ROW_DIR, COL_DIR) * SLICE_STEP
    expected[:3, 3] = lps_to_ras @ FIRST_IPP
    assert out.shape == (COLS, ROWS, SLICES)
    assert np.allclose(out.affine, expected, atol=1e-4), out.affine
    assert np.allclose(out.header.get_zooms(), (PIXEL_SPACING[1], PIXEL_SPACING[0], SLICE_STEP), atol=1e-5)
    # ... which is how MONAI's reader maps the series
    read = LoadImage(image_only=True)(str(tmp_path / "patients" / "ct_series"))
    assert tuple(read.shape) == out.shape and np.allclose(np.asarray(read.affine), out.affine, atol=1e-4)
    score = dice(np.asarray(out.dataobj), label)
    assert score > MIN_DICE, f"Dice {score:.3f} on the DICOM series (bound {MIN_DICE})"


# ----------------------------------------------------------------------------- bad cases, CLI
@pytest.mark.slow
def test_a_corrupt_case_is_named_and_skipped_the_others_written(
    medvision_home: Path, seg_ckpt: Path, tmp_path: Path
) -> None:
    cases = tmp_path / "cases"
    write_ras_las(cases)
    (cases / "las.nii.gz").unlink()
    (cases / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a NIfTI file")
    summary = tmp_path / "summary.json"
    proc = run_cli(
        "medvision-predict",
        [f"ckpt_path={seg_ckpt}", f"input={cases}", f"output={tmp_path / 'masks'}", f"summary={summary}", "device=cpu"],
        cwd=tmp_path,
        home=medvision_home,
    )
    assert proc.returncode == 3, proc.stdout[-3000:]
    assert "1 of 2 case(s) written" in proc.stdout, proc.stdout[-3000:]
    assert "skipped broken" in proc.stdout and str(cases / "broken.nii.gz") in proc.stdout, proc.stdout[-3000:]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["ras.nii.gz"]  # no temporary files left
    report = json.loads(summary.read_text())
    assert list(report["written"]) == ["ras"] and list(report["failed"]) == ["broken"]


# ----------------------------------------------------------------------------- classification
def test_classifier_writes_the_probabilities_of_its_own_pipeline(medvision_home: Path, tmp_path: Path) -> None:
    """PNG files of test images give the probabilities the run's own array pipeline gives."""
    import torch
    from hydra.utils import instantiate
    from PIL import Image

    from medvision.inference.predict import load_module, predict

    ckpt = classifier_checkpoint(medvision_home)
    module, run_cfg, _ = load_module(ckpt)
    datamodule = instantiate(run_cfg.data)
    dataset = datamodule.dataset("test")
    images, _ = datamodule.arrays["test"]
    for n in range(4):
        Image.fromarray(images[n]).save(tmp_path / f"scan{n}.png")
    cfg = compose_predict(
        medvision_home, tmp_path / "run", [f"ckpt_path={ckpt}", f"input={tmp_path}", f"output={tmp_path / 'out'}"]
    )
    summary = predict(cfg)
    assert summary.failed == {} and summary.csv == str(tmp_path / "out" / "predictions.csv")
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    names = list(module.label_names)
    assert [r["case"] for r in rows] == [f"scan{n}" for n in range(4)]
    assert list(rows[0]) == ["case", "input", "predicted", *(f"p_{n}" for n in names)]
    with torch.no_grad():
        batch = torch.stack([torch.as_tensor(dataset[n]["image"]) for n in range(4)])
        reference = module.predict_step({"image": batch}).numpy()
    got = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    assert np.allclose(got.sum(1), 1.0, atol=1e-4)
    assert np.allclose(got, reference, atol=1e-5), (got, reference)
    assert [r["predicted"] for r in rows] == [names[i] for i in reference.argmax(1)]


# ----------------------------------------------------------------------------- inputs
def test_inputs_are_found_and_bad_inputs_named(tmp_path: Path) -> None:
    from medvision.inference.predict import find_cases

    (tmp_path / "series").mkdir()
    for n in range(3):
        (tmp_path / "series" / f"IM{n}.dcm").write_bytes(b"")
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    cases = find_cases(tmp_path, spatial_dims=3)
    assert [(c.name, c.path) for c in cases] == [("a", tmp_path / "a.nii.gz"), ("series", tmp_path / "series")]
    # a 2D model takes each DICOM file as an image, not the folder as a series
    assert [c.name for c in find_cases(tmp_path / "series", spatial_dims=2)] == ["IM0", "IM1", "IM2"]
    assert [c.name for c in find_cases(tmp_path / "series", spatial_dims=3)] == ["series"]
    (tmp_path / "a.nii").write_bytes(b"")
    with pytest.raises(MedvisionError, match="same output name 'a'"):
        find_cases(tmp_path, spatial_dims=3)
    with pytest.raises(MedvisionError, match="does not exist"):
        find_cases(tmp_path / "missing", spatial_dims=3)
    with pytest.raises(MedvisionError, match="is not a file medvision-predict reads"):
        find_cases(tmp_path / "notes.txt", spatial_dims=3)
