"""Dataset sources write real NIfTI in MSD layout; manifests (MSD, CSV) become records."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hydra.utils import instantiate

from bad_data import write_csv
from conftest import compose_in
from medvision.data.datamodule import VolumeDataModule
from medvision.data.records import read_csv, read_msd
from medvision.data.sources import prepare
from medvision.data.sources.synthetic import SyntheticSegmentation
from medvision.data.splits import SPLITS
from medvision.utils.errors import MedvisionError


def _array(path: str | Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


# ----------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize(("spatial_dims", "size"), [(2, 40), (3, 24)])
def test_synthetic_source_writes_readable_msd_nifti(tmp_path: Path, spatial_dims: int, size: int) -> None:
    source = SyntheticSegmentation(spatial_dims=spatial_dims, num_cases=4, size=size, num_seg_classes=2, seed=3)
    root = prepare(source, tmp_path / "synthetic")

    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 4 == len(meta["training"])
    assert set(meta["labels"]) == {"0", "1", "2"} and meta["labels"]["0"] == "background"

    info = read_msd(root)
    assert info.num_classes == 3 and info.in_channels == 1
    assert info.label_names == source.label_names()
    assert len(info.records) == 4
    assert len({r["subject"] for r in info.records}) == 4, "each synthetic case is its own subject"
    values: set[int] = set()
    for record in info.records:
        assert Path(record["image"]).is_absolute() and Path(record["image"]).is_file()
        image, label = nib.load(record["image"]), nib.load(record["label"])
        assert image.shape == (size,) * spatial_dims
        assert label.shape == image.shape
        assert np.allclose(image.affine, label.affine)
        pixels = image.get_fdata()
        assert np.isfinite(pixels).all() and pixels.std() > 0
        lab = _array(record["label"])
        assert np.issubdtype(lab.dtype, np.integer)
        assert lab.min() >= 0 and lab.max() < info.num_classes
        assert (lab > 0).any(), f"{record['label']} has no foreground"
        values |= set(np.unique(lab).tolist())
    assert values == {0, 1, 2}


def test_synthetic_source_is_seeded_and_prepared_once(tmp_path: Path) -> None:
    def case0(seed: int, folder: str) -> np.ndarray:
        root = prepare(SyntheticSegmentation(spatial_dims=2, num_cases=2, size=32, seed=seed), tmp_path / folder)
        return _array(read_msd(root).records[0]["image"])

    a, b, c = case0(0, "a"), case0(0, "b"), case0(1, "c")
    assert np.array_equal(a, b), "the same seed must write the same images"
    assert not np.array_equal(a, c), "another seed must write other images"

    # a prepared folder is reused as is ...
    stamp = (tmp_path / "a" / "dataset.json").stat().st_mtime_ns
    prepare(SyntheticSegmentation(spatial_dims=2, num_cases=2, size=32, seed=0), tmp_path / "a")
    assert (tmp_path / "a" / "dataset.json").stat().st_mtime_ns == stamp
    # ... and never silently taken for data of other parameters
    with pytest.raises(MedvisionError) as err:
        prepare(SyntheticSegmentation(spatial_dims=2, num_cases=3, size=32, seed=0), tmp_path / "a")
    assert str(tmp_path / "a") in str(err.value)
    # no half-written temporary folders are left beside the datasets
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


# ----------------------------------------------------------------------------- MNI152
@pytest.fixture(scope="module")
def mni_datamodule(medvision_home: Path, tmp_path_factory: pytest.TempPathFactory) -> VolumeDataModule:
    """The default config's datamodule (MNI152 tissue blocks), prepared in the session root."""
    cfg = compose_in(medvision_home, tmp_path_factory.mktemp("mni_cfg"))
    assert cfg.data.source._target_.endswith("MNI152Tissue"), "the default data must be the MNI152 tissue set"
    dm = instantiate(cfg.data)
    dm.prepare_data()
    return dm


def test_mni152_blocks_are_mirror_pairs_with_tissue_labels(mni_datamodule: VolumeDataModule) -> None:
    info = mni_datamodule.info
    assert info.label_names == ["background", "grey_matter", "white_matter"]
    records = info.records
    assert len(records) == 8
    assert len({r["id"] for r in records}) == 8

    by_subject: dict[str, list[dict]] = {}
    for r in records:
        by_subject.setdefault(r["subject"], []).append(r)
    assert len(by_subject) == 4
    assert all(len(pair) == 2 for pair in by_subject.values()), "each subject must be one block and its mirror"

    values: set[int] = set()
    for subject, pair in by_subject.items():
        left, right = sorted(pair, key=lambda r: r["id"])  # "..._left" < "..._right"
        assert left["id"].endswith("left") and right["id"].endswith("right"), subject
        img_l, img_r = nib.load(left["image"]).get_fdata(), nib.load(right["image"]).get_fdata()
        lab_l, lab_r = _array(left["label"]), _array(right["label"])
        assert img_l.shape == img_r.shape == lab_l.shape == lab_r.shape and img_l.ndim == 3
        # RAS blocks: axis 0 is x (left-right). The template is symmetric up to float noise
        # (~2e-16 here), so images agree to 1e-6 and label maps exactly.
        assert np.allclose(img_l, img_r[::-1], atol=1e-6), f"{left['id']} is not the mirror of {right['id']}"
        assert np.array_equal(lab_l, lab_r[::-1]), f"labels of {left['id']} and {right['id']} are not mirrored"
        # and a block is not trivially symmetric itself (the pairing means something)
        assert not np.allclose(img_l, img_l[::-1], atol=1e-3)
        values |= set(np.unique(lab_l).tolist()) | set(np.unique(lab_r).tolist())
        # the two blocks sit on opposite sides of the midline: their x origins differ
        aff_l, aff_r = nib.load(left["image"]).affine, nib.load(right["image"]).affine
        assert aff_l[0, 3] != aff_r[0, 3]
    assert values == {0, 1, 2}


def test_mni152_default_split_keeps_mirror_pairs_together(mni_datamodule: VolumeDataModule) -> None:
    splits = mni_datamodule.splits
    ids = {name: [r["id"] for r in splits[name]] for name in SPLITS}
    for name in SPLITS:
        assert ids[name], f"the default {name} split is empty"
    assert sorted(i for names in ids.values() for i in names) == sorted(r["id"] for r in mni_datamodule.info.records)
    subjects = {name: {r["subject"] for r in splits[name]} for name in SPLITS}
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    # every split holds whole pairs: a test block's mirror is never trained on
    for name in SPLITS:
        assert len(splits[name]) == 2 * len(subjects[name])


# ----------------------------------------------------------------------------- CSV manifests
@pytest.fixture
def csv_case_files(tmp_path: Path) -> Path:
    """Six real 2D cases written by the synthetic source (the files a CSV will point at)."""
    return prepare(SyntheticSegmentation(spatial_dims=2, num_cases=6, size=32, seed=0), tmp_path / "files")


def _rows(n: int, per_subject: int = 2) -> list[dict[str, str]]:
    return [
        {
            "image": f"../files/imagesTr/case_{i:03d}.nii.gz",
            "label": f"../files/labelsTr/case_{i:03d}.nii.gz",
            "subject": f"patient_{i // per_subject}",
        }
        for i in range(n)
    ]


def test_csv_manifest_relative_paths_and_subject_groups(tmp_path: Path, csv_case_files: Path) -> None:
    manifest = write_csv(tmp_path / "manifests" / "cases.csv", _rows(6))
    info = read_csv(manifest)
    assert len(info.records) == 6
    for i, r in enumerate(info.records):
        assert Path(r["image"]) == (csv_case_files / "imagesTr" / f"case_{i:03d}.nii.gz").resolve()
        assert Path(r["label"]).is_file()
        assert r["subject"] == f"patient_{i // 2}"
    top = max(int(_array(r["label"]).max()) for r in info.records)
    assert info.label_names == ["background"] + [f"class_{k}" for k in range(1, top + 1)]

    dm = VolumeDataModule(manifest=str(manifest), spatial_dims=2, val_fraction=0.34, test_fraction=0.34)
    where = {r["id"]: name for name in SPLITS for r in dm.splits[name]}
    assert len(where) == 6
    for k in range(3):
        assert where[f"case_{2 * k:03d}"] == where[f"case_{2 * k + 1:03d}"], f"patient_{k} spans two splits"
    assert set(where.values()) == set(SPLITS)


def test_csv_manifest_through_the_config_tree(tmp_path: Path, csv_case_files: Path, compose_run) -> None:
    manifest = write_csv(tmp_path / "manifests" / "cases.csv", _rows(6))
    cfg = compose_run(
        [
            "data=csv",
            "data.spatial_dims=2",
            f"data.manifest={manifest}",
            "data.label_names=[background,dim,bright]",
            "data.val_fraction=0.34",
            "data.test_fraction=0.34",
        ]
    )
    dm = instantiate(cfg.data)
    assert dm.label_names == ["background", "dim", "bright"]
    assert dm.num_classes == 3
    subjects = {name: {r["subject"] for r in dm.splits[name]} for name in SPLITS}
    # three patients of two cases: one patient (both cases) per split
    assert all(len(subjects[name]) == 1 and len(dm.splits[name]) == 2 for name in SPLITS)
    assert len(set().union(*subjects.values())) == 3


def test_csv_manifest_naming_a_missing_file_names_it(tmp_path: Path, csv_case_files: Path) -> None:
    rows = _rows(4)
    rows[2]["label"] = "../files/labelsTr/case_that_is_missing.nii.gz"
    manifest = write_csv(tmp_path / "manifests" / "cases.csv", rows)
    with pytest.raises(MedvisionError) as err:
        read_csv(manifest)
    assert "case_that_is_missing.nii.gz" in str(err.value)
    assert str(manifest) in str(err.value)


def test_missing_manifests_and_folders_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(MedvisionError) as err:
        read_csv(tmp_path / "nowhere.csv")
    assert "nowhere.csv" in str(err.value)
    with pytest.raises(MedvisionError) as err:
        read_msd(tmp_path / "no_such_dataset")
    assert "no_such_dataset" in str(err.value)
