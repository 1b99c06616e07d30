"""The pre-flight data audit: every check on real NIfTI files, all problems at once, the
``on_invalid`` policy, leakage across splits, the fingerprint cache and its speed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from bad_data import BREAKS, LABELS, good_arrays, msd_with_one_bad_case, save, write_case, write_csv, write_manifest
from conftest import compose_in
from medvision.data.audit import audit
from medvision.data.datamodule import VolumeDataModule
from medvision.data.records import read_csv, read_msd
from medvision.data.splits import SPLITS, group_split
from medvision.utils.errors import MedvisionError


def _problems(report) -> list[tuple[str, str, str, str]]:
    """(case, check, severity, file name relative to the dataset) of every problem."""
    return [(p.case, p.check, p.severity, "/".join(Path(p.file).parts[-2:]) if p.file else "") for p in report.problems]


# ----------------------------------------------------------------------------- one check each
@pytest.mark.parametrize("how", sorted(BREAKS))
def test_each_broken_case_is_caught_and_named(tmp_path: Path, how: str) -> None:
    _, check, file = BREAKS[how]
    info = read_msd(msd_with_one_bad_case(tmp_path / "Task", how), require_files=False)
    report = audit(info.records, info.label_names, num_channels=info.in_channels, spatial_dims=3)

    assert _problems(report) == [("bad", check, "error", file)], report.problems
    assert report.bad_cases == ["bad"] and not report.ok
    assert report.num_cases == 5 and report.num_files == 10


def test_a_clean_dataset_has_no_problem(tmp_path: Path) -> None:
    info = read_msd(msd_with_one_bad_case(tmp_path / "Task", None), require_files=False)
    report = audit(info.records, info.label_names, num_channels=1, spatial_dims=3)
    assert report.ok and report.problems == [] and report.bad_indices == []
    assert report.label_names == LABELS


def test_warnings_keep_the_case(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None, n_good=3)
    image, label = good_arrays(5)
    save(root / "imagesTr" / "empty.nii.gz", image)
    save(root / "labelsTr" / "empty.nii.gz", np.zeros_like(label))  # background only
    save(root / "imagesTr" / "flat.nii.gz", np.full_like(image, 3.0))  # one value only
    save(root / "labelsTr" / "flat.nii.gz", label)
    image, label = good_arrays(6)
    thick = np.diag([1.0, 1.0, 25.0, 1.0])  # 25 mm slices: suspicious, not impossible
    save(root / "imagesTr" / "thick.nii.gz", image, thick)
    save(root / "labelsTr" / "thick.nii.gz", label, thick)
    cases = json.loads((root / "dataset.json").read_text())["training"]
    cases += [
        {"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in ("empty", "flat", "thick")
    ]
    write_manifest(root, cases)

    info = read_msd(root)
    report = audit(info.records, info.label_names, spatial_dims=3)
    assert report.ok, report.errors
    assert {(p.case, p.check, p.severity) for p in report.problems} == {
        ("empty", "empty", "warning"),
        ("flat", "constant", "warning"),
        ("thick", "spacing", "warning"),
    }
    dm = VolumeDataModule(root=str(root), val_fraction=0.2, test_fraction=0.2)
    assert len(dm.info.records) == 6, "warnings must not drop cases"


# ----------------------------------------------------------------------------- all at once, the policy
@pytest.fixture
def many_bad(tmp_path: Path) -> tuple[Path, list[str]]:
    """An MSD folder of 6 good cases and one broken case per way of ``BREAKS`` (named after it)."""
    root = tmp_path / "Many"
    cases = [write_case(root, f"good_{i}", seed=i) for i in range(6)]
    for k, how in enumerate(sorted(BREAKS)):
        one = msd_with_one_bad_case(tmp_path / "one" / how, how, n_good=0, seed=100 + k)
        for folder in ("imagesTr", "labelsTr"):
            if (one / folder / "bad.nii.gz").exists():
                shutil.copy(one / folder / "bad.nii.gz", root / folder / f"{how}.nii.gz")
        cases.append({"image": f"./imagesTr/{how}.nii.gz", "label": f"./labelsTr/{how}.nii.gz"})
    return write_manifest(root, cases), sorted(BREAKS)


def test_error_policy_reports_every_bad_file_at_once(many_bad, tmp_path: Path, capsys, monkeypatch) -> None:
    root, bad = many_bad
    monkeypatch.setenv("COLUMNS", "250")  # one table row per problem in the captured output
    report_path = tmp_path / "run" / "data_audit.json"
    dm = VolumeDataModule(root=str(root), audit_report=str(report_path))
    with pytest.raises(MedvisionError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"{len(bad)} error(s) in {len(bad)} of {len(bad) + 6} cases" in message
    for how in bad:
        assert f"{how}.nii.gz" in message, f"{how} is not named:\n{message}"
    assert "good_" not in message
    assert "data.on_invalid=skip" in message and str(report_path) in message

    printed = capsys.readouterr().out
    assert "data audit of 15 cases" in printed
    for how in bad:
        assert how in printed, f"the table does not list {how}"

    saved = json.loads(report_path.read_text())
    assert saved["ok"] is False and saved["policy"] == "error" and saved["dropped_cases"] == []
    assert sorted(saved["bad_cases"]) == bad
    assert {p["case"] for p in saved["problems"]} == set(bad)
    assert all(p["fix"] and p["message"] and p["file"] for p in saved["problems"])


def test_skip_policy_drops_the_bad_cases_and_moves_no_other(many_bad, tmp_path: Path) -> None:
    root, bad = many_bad
    report_path = tmp_path / "run" / "data_audit.json"
    dm = VolumeDataModule(
        root=str(root), on_invalid="skip", audit_report=str(report_path), val_fraction=0.2, test_fraction=0.2
    )
    kept = {name: [r["id"] for r in dm.splits[name]] for name in SPLITS}
    assert sorted(i for ids in kept.values() for i in ids) == [f"good_{i}" for i in range(6)]
    assert [r["id"] for r in dm.info.records] == [f"good_{i}" for i in range(6)]

    # the split was made before the drop: each good case is where it would be with all cases
    every = read_msd(root, require_files=False).records
    full = group_split([r["subject"] for r in every], val_fraction=0.2, test_fraction=0.2)
    for name in SPLITS:
        assert kept[name] == [every[i]["id"] for i in full[name] if every[i]["id"].startswith("good_")]

    saved = json.loads(report_path.read_text())
    assert saved["policy"] == "skip" and sorted(saved["dropped_cases"]) == bad


def test_audit_can_be_switched_off(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", "label_out_of_range")
    dm = VolumeDataModule(root=str(root), audit=False)
    assert len(dm.info.records) == 5 and dm.audit_result is None
    # without the audit the reader still refuses missing files itself (all of them at once)
    missing = msd_with_one_bad_case(tmp_path / "Missing", "missing_file")
    with pytest.raises(MedvisionError) as err:
        VolumeDataModule(root=str(missing), audit=False).info
    assert "labelsTr/bad.nii.gz" in str(err.value)


# ----------------------------------------------------------------------------- manifests and leakage
def test_readers_name_every_missing_file_at_once(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None, n_good=4)
    (root / "labelsTr" / "good_1.nii.gz").unlink()
    (root / "imagesTr" / "good_3.nii.gz").unlink()
    with pytest.raises(MedvisionError) as err:
        read_msd(root)
    assert "2 file(s)" in str(err.value)
    assert "labelsTr/good_1.nii.gz" in str(err.value) and "imagesTr/good_3.nii.gz" in str(err.value)
    assert len(read_msd(root, require_files=False).records) == 4

    rows = [{"image": f"Task/imagesTr/good_{i}.nii.gz", "label": f"Task/labelsTr/good_{i}.nii.gz"} for i in range(4)]
    manifest = write_csv(tmp_path / "cases.csv", rows)
    with pytest.raises(MedvisionError) as err:
        read_csv(manifest, LABELS)
    assert "labelsTr/good_1.nii.gz" in str(err.value) and "imagesTr/good_3.nii.gz" in str(err.value)
    report = audit(read_csv(manifest, LABELS, require_files=False).records, LABELS)
    assert _problems(report) == [
        ("good_1", "missing", "error", "labelsTr/good_1.nii.gz"),
        ("good_3", "missing", "error", "imagesTr/good_3.nii.gz"),
    ]


def _seed_separating(subjects: list[str], a: str, b: str) -> int:
    """A split seed that puts subjects ``a`` and ``b`` in different splits (found, not assumed)."""
    for seed in range(200):
        split = group_split(subjects, val_fraction=0.2, test_fraction=0.2, seed=seed)
        where = {subjects[i]: name for name in SPLITS for i in split[name]}
        if where[a] != where[b] and "train" in (where[a], where[b]):
            return seed
    raise AssertionError("no seed separates the two subjects")


def test_one_file_under_two_subjects_in_two_splits_is_leakage(tmp_path: Path) -> None:
    msd_with_one_bad_case(tmp_path / "Task", None, n_good=5)
    rows = [
        {
            "image": f"Task/imagesTr/good_{i}.nii.gz",
            "label": f"Task/labelsTr/good_{i}.nii.gz",
            "subject": f"patient_{i}",
            "id": f"good_{i}",
        }
        for i in range(5)
    ]
    # the scan of patient_0 listed once more under another patient id
    rows.append({**rows[0], "subject": "patient_99", "id": "again"})
    manifest = write_csv(tmp_path / "cases.csv", rows)
    seed = _seed_separating([r["subject"] for r in rows], "patient_0", "patient_99")

    dm = VolumeDataModule(manifest=str(manifest), label_names=LABELS, split_seed=seed, on_invalid="skip")
    leaks = [p for p in dm.run_audit().errors if p.check == "leakage"]
    assert len(leaks) == 1 and "imagesTr/good_0.nii.gz" in leaks[0].file
    # the copy outside the training split is dropped; the training copy is kept
    kept = {name: [r["id"] for r in dm.splits[name]] for name in SPLITS}
    train_id = "good_0" if "good_0" in kept["train"] else "again"
    assert leaks[0].case != train_id
    assert sum(ids.count("good_0") + ids.count("again") for ids in kept.values()) == 1


def test_same_entry_twice_and_duplicate_ids(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None, n_good=3)
    records = read_msd(root).records
    twice = [*records, dict(records[1])]
    report = audit(twice, LABELS, splits={"train": [0, 1, 2, 3]})
    assert _problems(report) == [("good_1", "unique", "error", "imagesTr/good_1.nii.gz")]
    assert report.bad_indices == [3], "the repeated entry, not the first, is the bad one"

    renamed = [*records[:2], {**records[2], "id": "good_0"}]
    report = audit(renamed, LABELS)
    assert [(p.case, p.check, p.severity) for p in report.problems] == [("good_0", "unique", "warning")]


def test_one_subject_in_two_splits_is_leakage(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None, n_good=4)
    records = [{**r, "subject": "p1" if i in (1, 3) else r["subject"]} for i, r in enumerate(read_msd(root).records)]
    report = audit(records, LABELS, splits={"train": [0, 1], "val": [2], "test": [3]})
    assert [(p.case, p.check, p.split) for p in report.errors] == [("good_3", "leakage", "test")]
    assert "subject p1" in report.errors[0].message


def test_a_copied_scan_in_another_split_is_leakage(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None, n_good=4)
    shutil.copy(root / "imagesTr" / "good_0.nii.gz", root / "imagesTr" / "copy.nii.gz")
    shutil.copy(root / "labelsTr" / "good_0.nii.gz", root / "labelsTr" / "copy.nii.gz")
    cases = json.loads((root / "dataset.json").read_text())["training"]
    write_manifest(root, [*cases, {"image": "./imagesTr/copy.nii.gz", "label": "./labelsTr/copy.nii.gz"}])
    records = read_msd(root).records
    across = audit(records, LABELS, splits={"train": [0, 1, 2], "test": [3, 4]})
    assert _problems(across) == [("copy", "leakage", "error", "imagesTr/copy.nii.gz")]
    assert "same voxels as case good_0" in across.problems[0].message
    within = audit(records, LABELS, splits={"train": [0, 1, 4], "test": [2, 3]})
    assert _problems(within) == [("copy", "unique", "warning", "imagesTr/copy.nii.gz")]


# ----------------------------------------------------------------------------- the cache
def test_unchanged_files_are_not_read_again(tmp_path: Path) -> None:
    root = msd_with_one_bad_case(tmp_path / "Task", None, n_good=4)
    records = read_msd(root).records
    cache = tmp_path / "cache"
    first = audit(records, LABELS, cache_dir=cache, source=str(root / "dataset.json"))
    second = audit(records, LABELS, cache_dir=cache, source=str(root / "dataset.json"))
    assert (first.files_read, first.files_cached) == (8, 0)
    assert (second.files_read, second.files_cached) == (0, 8)
    assert second.problems == first.problems == []

    # a changed file is read again, and what changed is seen
    label = root / "labelsTr" / "good_2.nii.gz"
    _, values = good_arrays(2)
    values[0, 0, 0] = 9
    save(label, values)
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    third = audit(records, LABELS, cache_dir=cache, source=str(root / "dataset.json"))
    assert (third.files_read, third.files_cached) == (1, 7)
    assert _problems(third) == [("good_2", "labels", "error", "labelsTr/good_2.nii.gz")]

    # a damaged cache file costs speed, never correctness
    for path in cache.glob("*.json"):
        path.write_text("{ not json")
    fourth = audit(records, LABELS, cache_dir=cache, source=str(root / "dataset.json"))
    assert fourth.files_read == 8 and _problems(fourth) == _problems(third)


def test_cached_audit_of_the_default_dataset_reads_no_file(medvision_home: Path, tmp_path: Path) -> None:
    """What must hold 4: once cached, the audit of the default dataset adds next to nothing to a
    run: it reads no file again (its time is measured by scripts/bench, not asserted here)."""
    cfg = compose_in(medvision_home, tmp_path / "out", [f"data.audit_cache_dir={tmp_path / 'audit_cache'}"])
    assert cfg.data.source._target_.endswith("MNI152Tissue")
    instantiate(cfg.data).prepare_data()  # the embedded data are written once (not audit time)

    def load() -> VolumeDataModule:
        dm = instantiate(cfg.data)
        assert dm.splits["train"]  # manifest, split, audit, report: all a run adds before its transforms
        return dm

    first, second = load(), load()
    assert first.audit_result.files_read == 16 and first.audit_result.ok
    assert second.audit_result.files_read == 0 and second.audit_result.files_cached == 16
    assert second.audit_result.problems == first.audit_result.problems == []
    assert (tmp_path / "out" / "data_audit.json").is_file()


# ----------------------------------------------------------------------------- training with skip
def test_on_invalid_skip_trains_on_the_good_cases(tmp_path: Path, compose_run) -> None:
    """What must hold 2: two of ten 2D cases are broken; the run trains and tests on the rest."""
    from medvision.data.sources import prepare
    from medvision.data.sources.synthetic import SyntheticSegmentation
    from medvision.train import run

    root = prepare(SyntheticSegmentation(spatial_dims=2, num_cases=10, size=64, seed=3), tmp_path / "Task2d")
    records = read_msd(root).records
    split = group_split([r["subject"] for r in records], val_fraction=0.2, test_fraction=0.2, seed=0)
    # break one training case (truncated image) and one test case (a label value no class has)
    broken_train, broken_test = records[split["train"][0]]["id"], records[split["test"][0]]["id"]
    image = root / "imagesTr" / f"{broken_train}.nii.gz"
    image.write_bytes(image.read_bytes()[:200])
    _, label = good_arrays(0, (64, 64))
    label[10, 10] = 9
    save(root / "labelsTr" / f"{broken_test}.nii.gz", label, np.eye(4))

    overrides = [
        "experiment=synthetic_seg2d",
        "data.source=null",
        f"data.root={root}",
        "data.patch_size=[48,48]",
        "data.on_invalid=skip",
        "debug=fast_dev_run",
    ]
    cfg = compose_run(overrides)
    metrics = run(cfg)
    assert 0.0 <= metrics["test/dice_mean"] <= 1.0 and "train/loss" in metrics

    report = json.loads((Path(cfg.paths.output_dir) / "data_audit.json").read_text())
    assert report["policy"] == "skip" and sorted(report["dropped_cases"]) == sorted([broken_train, broken_test])
    assert {(p["case"], p["check"]) for p in report["problems"]} == {
        (broken_train, "readable"),
        (broken_test, "labels"),
    }

    dm = instantiate(cfg.data)
    kept = {name: [r["id"] for r in dm.splits[name]] for name in SPLITS}
    assert broken_train not in kept["train"] and broken_test not in kept["test"]
    for name in SPLITS:  # every other case trains, validates or tests where the full split put it
        assert kept[name] == [
            records[i]["id"] for i in split[name] if records[i]["id"] not in (broken_train, broken_test)
        ]

    # the same data with the default policy stops before training, naming both files
    with pytest.raises(MedvisionError) as err:
        run(compose_run([*overrides[:-2], "debug=fast_dev_run"], name="strict"))
    assert f"{broken_train}.nii.gz" in str(err.value) and f"{broken_test}.nii.gz" in str(err.value)


def test_channels_and_other_formats(tmp_path: Path) -> None:
    """Multi-channel NIfTI (MSD: channels last) against the declared modalities; NumPy files and
    a truncated one through MONAI's readers."""
    image, label = good_arrays(1)
    save(tmp_path / "two.nii.gz", np.stack([image, 1 - image], axis=-1))
    save(tmp_path / "lab.nii.gz", label)
    records = [
        {"image": str(tmp_path / "two.nii.gz"), "label": str(tmp_path / "lab.nii.gz"), "id": "two", "subject": "a"}
    ]
    assert audit(records, LABELS, num_channels=2, spatial_dims=3).ok
    report = audit(records, LABELS, num_channels=1, spatial_dims=3)
    assert [(p.check, p.case) for p in report.errors] == [("channels", "two")]
    assert "2 channel(s)" in report.errors[0].message

    np.save(tmp_path / "img.npy", image)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "img.npy").read_bytes()[:90])
    for name in ("img", "cut"):
        np.save(tmp_path / f"lab_{name}.npy", label)
    records = [
        {
            "image": str(tmp_path / f"{name}.npy"),
            "label": str(tmp_path / f"lab_{name}.npy"),
            "id": name,
            "subject": name,
        }
        for name in ("img", "cut")
    ]
    report = audit(records, LABELS, spatial_dims=3)
    assert _problems(report) == [("cut", "readable", "error", f"{tmp_path.name}/cut.npy")]
