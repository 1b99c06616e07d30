"""Own data in every layout a researcher has it in: nnU-Net v2 raw folders read as they are, MSD's
4D multi-modal images, CSV files with one column per channel; splits written (``splits.json``)
and read back (``data.splits_file``: medvision's own file or nnU-Net's ``splits_final.json``).

Every dataset is written with nibabel in the exact layout of its format. The same two-channel
cases are written in nnU-Net's layout (one file per channel) and in MSD's (one 4D file): both
readers must give the same case ids, the same subjects and so the same split, the same
``(C, X, Y, Z)`` arrays, and trained with the same seed the same test metrics.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hydra.utils import instantiate

from medvision.data.audit import audit
from medvision.data.records import read_csv, read_msd, read_nnunet
from medvision.data.splits import SPLITS
from medvision.utils.errors import MedvisionError

SHAPE = (24, 24, 24)
#: an origin off zero, 1 mm voxels (what data.transforms.pixdim says below: no resampling)
AFFINE = np.array([[1.0, 0, 0, -10.0], [0, 1.0, 0, 4.0], [0, 0, 1.0, 2.0], [0, 0, 0, 1]])
CHANNELS = ["T1", "FLAIR"]
LABELS = ["background", "overlap"]
CASES = [f"case_{i:03d}" for i in range(6)]
#: two scans of one patient: they must share a split in both layouts
SUBJECTS = {"case_000": "patient_0", "case_001": "patient_0"}

#: planning off (conf/plan: own data default to plan=auto); conditional only while the planner
#: is being added to the tree: once conf/plan/none.yaml is committed this can be ["plan=none"]
PLAN_OFF = ["plan=none"]
#: a tiny but complete run on the 24^3 cases: 16^3 patches, a 2-level U-Net, 2 epochs with
#: validation, test on the best checkpoint, memory cache, no worker processes
TINY_RUN = [
    *PLAN_OFF,
    "data.patch_size=[16,16,16]",
    "data.transforms.pixdim=[1.0,1.0,1.0]",
    "data.transforms.num_samples=1",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.cache=memory",
    "model.net.channels=[8,16]",
    "model.net.strides=[2]",
    "model.net.num_res_units=1",
    "trainer.max_epochs=2",
    "callbacks.overlays=null",
    "seed=42",
]


# ----------------------------------------------------------------------------- writing datasets
def _case_arrays(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Two channels, each a bright ball on noise; the label is where BOTH are bright."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = rng.uniform(9, 15, size=3)
    balls = []
    for shift in (-2.5, 2.5):
        c = centre + shift * rng.uniform(0.5, 1.0, size=3)
        balls.append(np.sqrt(((grid - c[:, None, None, None]) ** 2).sum(0)) < rng.uniform(5, 7))
    channels = [(1.0 + b + rng.normal(0, 0.1, SHAPE)).astype(np.float32) for b in balls]
    label = (balls[0] & balls[1]).astype(np.uint8)
    assert label.any()
    return channels, label


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), path)


def write_nnunet(root: Path, cases: list[str] = CASES) -> Path:
    """nnU-Net v2 raw dataset: imagesTr/<case>_000X.nii.gz per channel, labelsTr/<case>.nii.gz."""
    for i, case in enumerate(cases):
        channels, label = _case_arrays(i)
        for k, channel in enumerate(channels):
            _save(root / "imagesTr" / f"{case}_{k:04d}.nii.gz", channel)
        _save(root / "labelsTr" / f"{case}.nii.gz", label)
    meta = {
        "name": "TwoChannel",
        "channel_names": {str(k): name for k, name in enumerate(CHANNELS)},
        "labels": {name: value for value, name in enumerate(LABELS)},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "medvision_subjects": SUBJECTS,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def write_msd(root: Path, cases: list[str] = CASES) -> Path:
    """The same cases in MSD layout: one 4D image (X, Y, Z, C) per case, ``modality`` in dataset.json."""
    training = []
    for i, case in enumerate(cases):
        channels, label = _case_arrays(i)
        _save(root / "imagesTr" / f"{case}.nii.gz", np.stack(channels, axis=-1))
        _save(root / "labelsTr" / f"{case}.nii.gz", label)
        entry = {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
        training.append({**entry, "subject": SUBJECTS[case]} if case in SUBJECTS else entry)
    meta = {
        "name": "TwoChannel",
        "modality": {str(k): name for k, name in enumerate(CHANNELS)},
        "labels": {str(value): name for value, name in enumerate(LABELS)},
        "numTraining": len(cases),
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


@pytest.fixture
def nnunet_root(tmp_path: Path) -> Path:
    return write_nnunet(tmp_path / "nnUNet_raw" / "Dataset777_TwoChannel")


def _ids(splits: dict) -> dict[str, list[str]]:
    return {name: [r["id"] for r in splits[name]] for name in SPLITS}


def _split_ids(path: Path) -> dict[str, list[str]]:
    written = json.loads(path.read_text())
    assert written["format"] == "medvision-splits" and written["version"] == 1
    return {name: written[name] for name in SPLITS}


# ----------------------------------------------------------------------------- the two layouts agree
def test_nnunet_and_msd_layouts_give_the_same_cases_and_arrays(tmp_path: Path) -> None:
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    nn, msd = read_nnunet(write_nnunet(tmp_path / "nn")), read_msd(write_msd(tmp_path / "msd"))
    for info in (nn, msd):
        assert info.modalities == CHANNELS and info.in_channels == 2
        assert info.label_names == LABELS and info.num_classes == 2
    assert [(r["id"], r["subject"]) for r in nn.records] == [(r["id"], r["subject"]) for r in msd.records]
    assert nn.records[0]["subject"] == nn.records[1]["subject"] == "patient_0"
    # nnU-Net: one file per channel, in channel order; MSD: one 4D file
    first = nn.records[0]
    assert [Path(f).name for f in first["image"]] == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    assert isinstance(msd.records[0]["image"], str)

    load = Compose([LoadImaged(keys=["image", "label"], image_only=True), EnsureChannelFirstd(keys=["image", "label"])])
    for a, b in zip(nn.records, msd.records, strict=True):
        x, y = load(dict(a)), load(dict(b))
        assert tuple(x["image"].shape) == tuple(y["image"].shape) == (2, *SHAPE)
        assert tuple(x["label"].shape) == (1, *SHAPE)
        assert np.array_equal(np.asarray(x["image"]), np.asarray(y["image"]))
        for k, file in enumerate(a["image"]):  # channel k is the file <case>_000k
            assert np.array_equal(np.asarray(x["image"][k]), np.asarray(nib.load(file).dataobj))


def test_nnunet_and_msd_runs_split_and_score_alike(tmp_path: Path, compose_run) -> None:
    from medvision.train import run

    nn_root, msd_root = write_nnunet(tmp_path / "nn"), write_msd(tmp_path / "msd")
    runs = {}
    for name, data in (("msd", f"data.root={msd_root}"), ("nnunet", f"data.root={nn_root}")):
        cfg = compose_run([f"data={name}", data, *TINY_RUN], name=f"run_{name}")
        out = Path(cfg.paths.output_dir)  # now: paths resolve through Hydra's state of the last compose
        runs[name] = (out, run(cfg), cfg)
    (msd_out, msd_metrics, _), (nn_out, nn_metrics, nn_cfg) = runs["msd"], runs["nnunet"]

    msd_split, nn_split = _split_ids(msd_out / "splits.json"), _split_ids(nn_out / "splits.json")
    assert msd_split == nn_split
    assert all(msd_split[name] for name in SPLITS)
    assert sorted(i for name in SPLITS for i in msd_split[name]) == CASES
    where = {case: name for name in SPLITS for case in msd_split[name]}
    assert where["case_000"] == where["case_001"], "the two scans of patient_0 are in different splits"

    tested = sorted(k for k in msd_metrics if k.startswith("test/"))
    assert "test/dice_mean" in tested and "test/dice_overlap" in tested
    assert sorted(k for k in nn_metrics if k.startswith("test/")) == tested
    for key in tested:
        assert nn_metrics[key] == pytest.approx(msd_metrics[key], abs=1e-6), key

    # the model was built for the data: two input channels
    dm = instantiate(nn_cfg.data)
    assert dm.in_channels == 2 and dm.info.modalities == CHANNELS and dm.label_names == LABELS

    # data.splits_file=<that splits.json> gives the same split again, and writes it again
    read_back = ["data=nnunet", f"data.root={nn_root}", *TINY_RUN, f"data.splits_file={msd_out / 'splits.json'}"]
    again = compose_run(read_back, name="again")
    again_out = Path(again.paths.output_dir)
    dm = instantiate(again.data)
    assert _ids(dm.splits) == msd_split
    rewritten = json.loads((again_out / "splits.json").read_text())
    assert {name: rewritten[name] for name in SPLITS} == msd_split
    assert rewritten["splits_file"] == str(msd_out / "splits.json") and rewritten["seed"] is None


# ----------------------------------------------------------------------------- splits files
def _datamodule(compose_run, root: Path, *overrides: str, name: str = "run"):
    cfg = compose_run(["data=nnunet", f"data.root={root}", *TINY_RUN, *overrides], name=name)
    return instantiate(cfg.data), Path(cfg.paths.output_dir)


def test_kfold_splits_json_lists_every_fold_and_reads_back(nnunet_root: Path, compose_run) -> None:
    dm, out = _datamodule(compose_run, nnunet_root, "data.num_folds=2", "data.fold=1")
    used = _ids(dm.splits)  # the split is made (and written) when first needed
    written = json.loads((out / "splits.json").read_text())
    assert (written["num_folds"], written["fold"], written["seed"]) == (2, 1, 0)
    assert len(written["folds"]) == 2
    assert {n: written["folds"][1][n] for n in ("train", "val")} == {n: written[n] for n in ("train", "val")}
    for fold in written["folds"]:  # each fold: every case outside the test split, once
        assert sorted(fold["train"] + fold["val"] + written["test"]) == CASES
    assert used == {n: written[n] for n in SPLITS}

    # fold 0 of that file: its folds[0] and the same test split
    again, _ = _datamodule(
        compose_run, nnunet_root, f"data.splits_file={out / 'splits.json'}", "data.fold=0", name="f0"
    )
    assert _ids(again.splits) == {**written["folds"][0], "test": written["test"]}


def test_nnunet_splits_final_picks_the_fold_and_the_rest_is_test(
    nnunet_root: Path, tmp_path: Path, compose_run
) -> None:
    splits_final = tmp_path / "splits_final.json"
    splits_final.write_text(
        json.dumps(
            [
                {"train": ["case_000", "case_001", "case_002", "case_003"], "val": ["case_004"]},
                {"train": ["case_002", "case_003", "case_004"], "val": ["case_000", "case_001"]},
            ]
        )
    )
    dm, out = _datamodule(compose_run, nnunet_root, f"data.splits_file={splits_final}", "data.fold=1")
    expected = {
        "train": ["case_002", "case_003", "case_004"],
        "val": ["case_000", "case_001"],
        "test": ["case_005"],  # in neither list of entry 1
    }
    assert _ids(dm.splits) == expected
    written = json.loads((out / "splits.json").read_text())
    assert {n: written[n] for n in SPLITS} == expected
    assert (written["num_folds"], written["fold"], written["seed"]) == (2, 1, None)
    assert written["splits_file"] == str(splits_final)
    # the audit still checked the split it was given
    assert dm.audit_result is not None and dm.audit_result.ok

    # a fold the file does not have
    dm, _ = _datamodule(compose_run, nnunet_root, f"data.splits_file={splits_final}", "data.fold=2", name="f2")
    with pytest.raises(MedvisionError) as err:
        dm.splits
    assert "data.fold=2" in str(err.value) and str(splits_final) in str(err.value) and "2 fold(s)" in str(err.value)


def test_splits_file_naming_an_unknown_case_fails(nnunet_root: Path, tmp_path: Path, compose_run) -> None:
    splits_final = tmp_path / "splits_final.json"
    splits_final.write_text(json.dumps([{"train": ["case_000", "case_001", "case_099"], "val": ["case_002"]}]))
    dm, _ = _datamodule(compose_run, nnunet_root, f"data.splits_file={splits_final}")
    with pytest.raises(MedvisionError) as err:
        dm.splits
    message = str(err.value)
    assert "case_099" in message and str(splits_final) in message
    assert "case_000" not in message.split("fix:")[0], "only the unknown id is named"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        # patient_0's two scans in train and val: leakage
        ({"train": ["case_000", "case_002", "case_003"], "val": ["case_001"]}, ["patient_0", "case_000", "case_001"]),
        # one case in two splits
        ({"train": ["case_000", "case_001", "case_002"], "val": ["case_002"]}, ["two splits", "case_002"]),
        # nothing to train on
        ({"train": [], "val": ["case_002"]}, ["empty train split"]),
    ],
)
def test_inconsistent_splits_files_are_refused(nnunet_root: Path, tmp_path: Path, compose_run, entry, words) -> None:
    splits_final = tmp_path / "splits_final.json"
    splits_final.write_text(json.dumps([entry]))
    dm, _ = _datamodule(compose_run, nnunet_root, f"data.splits_file={splits_final}")
    with pytest.raises(MedvisionError) as err:
        dm.splits
    for word in [*words, str(splits_final)]:
        assert word in str(err.value)


# ----------------------------------------------------------------------------- nnU-Net folder errors
def test_region_based_labels_are_refused(nnunet_root: Path) -> None:
    meta = json.loads((nnunet_root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole_tumour": [1, 2], "core": 2}
    meta["regions_class_order"] = [1, 2]
    (nnunet_root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(MedvisionError) as err:
        read_nnunet(nnunet_root)
    message = str(err.value)
    assert str(nnunet_root / "dataset.json") in message and "whole_tumour" in message
    assert "region" in message and "not support" in message


def test_nnunet_folder_problems_are_named_at_once(nnunet_root: Path) -> None:
    (nnunet_root / "imagesTr" / "case_002_0001.nii.gz").unlink()  # a missing channel
    (nnunet_root / "labelsTr" / "case_004.nii.gz").unlink()  # channel files without a label
    meta = json.loads((nnunet_root / "dataset.json").read_text())
    (nnunet_root / "dataset.json").write_text(json.dumps({**meta, "numTraining": 9}))
    with pytest.raises(MedvisionError) as err:
        read_nnunet(nnunet_root)
    message = str(err.value)
    assert "case_002_0001.nii.gz" in message and "labelsTr/case_004.nii.gz" in message
    assert "numTraining is 9" in message and "folder holds 6" in message
    assert "fix:" in message

    # without require_files (the DataModule's audit on), the missing files are the audit's to report
    (nnunet_root / "dataset.json").write_text(json.dumps(meta))
    info = read_nnunet(nnunet_root, require_files=False)
    report = audit(info.records, info.label_names, num_channels=info.in_channels, spatial_dims=3)
    found = {(p.case, p.check, Path(p.file).name) for p in report.errors}
    assert found == {("case_002", "missing", "case_002_0001.nii.gz"), ("case_004", "missing", "case_004.nii.gz")}


def test_the_other_layout_names_the_right_data_choice(tmp_path: Path) -> None:
    nn, msd = write_nnunet(tmp_path / "nn", CASES[:2]), write_msd(tmp_path / "msd", CASES[:2])
    with pytest.raises(MedvisionError) as err:
        read_msd(nn)
    assert "data=nnunet" in str(err.value)
    with pytest.raises(MedvisionError) as err:
        read_nnunet(msd)
    assert "data=msd" in str(err.value)


# ----------------------------------------------------------------------------- the audit of channel files
def test_audit_checks_each_channel_file_and_caches_them(nnunet_root: Path, tmp_path: Path) -> None:
    info = read_nnunet(nnunet_root)
    cache = tmp_path / "audit_cache"
    first = audit(info.records, info.label_names, num_channels=2, spatial_dims=3, cache_dir=cache, source=info.source)
    assert first.ok and first.problems == [] and first.num_files == 6 * 3 and first.files_read == 18
    second = audit(info.records, info.label_names, num_channels=2, spatial_dims=3, cache_dir=cache, source=info.source)
    assert second.files_read == 0 and second.files_cached == 18 and second.ok

    # channel 1 of case_003 on another grid, a NaN in channel 0 of case_005, 3 channels declared
    channels, _ = _case_arrays(3)
    _save(nnunet_root / "imagesTr" / "case_003_0001.nii.gz", channels[1][:20])
    channels, _ = _case_arrays(5)
    channels[0][3, 3, 3] = np.nan
    _save(nnunet_root / "imagesTr" / "case_005_0000.nii.gz", channels[0])
    report = audit(info.records, info.label_names, num_channels=2, spatial_dims=3, cache_dir=cache, source=info.source)
    assert report.files_read == 2
    found = {(p.case, p.check, Path(p.file).name) for p in report.errors}
    assert found == {("case_003", "shape", "case_003_0001.nii.gz"), ("case_005", "finite", "case_005_0000.nii.gz")}
    wrong = audit(info.records[:1], info.label_names, num_channels=3, spatial_dims=3)
    assert [(p.check, p.case) for p in wrong.errors] == [("channels", "case_000")]
    assert "2 channel(s)" in wrong.errors[0].message and "declares 3" in wrong.errors[0].message


# ----------------------------------------------------------------------------- CSV channels
def _write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_with_one_column_per_channel(nnunet_root: Path, tmp_path: Path, compose_run) -> None:
    files = tmp_path / "csv_files"
    shutil.copytree(nnunet_root, files)
    rows = [
        [
            f"csv_files/imagesTr/{c}_0000.nii.gz",
            f"csv_files/imagesTr/{c}_0001.nii.gz",
            f"csv_files/labelsTr/{c}.nii.gz",
            SUBJECTS.get(c, c),
            c,
        ]
        for c in CASES
    ]
    manifest = _write_rows(tmp_path / "cases.csv", ["image_t1", "image_flair", "label", "subject", "id"], rows)
    info = read_csv(manifest)
    assert info.modalities == ["t1", "flair"] and info.in_channels == 2
    assert [Path(f).name for f in info.records[0]["image"]] == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]

    cfg = compose_run(["data=csv", f"data.manifest={manifest}", *TINY_RUN, "data.label_names=[background,overlap]"])
    dm = instantiate(cfg.data)
    assert dm.in_channels == 2 and dm.info.modalities == ["t1", "flair"]
    assert dm.model_kwargs()["in_channels"] == 2
    assert dm.audit_result is not None and dm.audit_result.ok
    assert (Path(cfg.paths.output_dir) / "splits.json").is_file()

    both = _write_rows(tmp_path / "both.csv", ["image", "image_t1", "label"], [row[:3] for row in rows])
    with pytest.raises(MedvisionError) as err:
        read_csv(both)
    assert "'image'" in str(err.value) and "image_t1" in str(err.value) and str(both) in str(err.value)
