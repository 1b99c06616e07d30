"""Property-based tests (hypothesis) of the split and manifest code: splits are disjoint,
cover every case, keep subjects together and are identical for the same seed; manifests
round-trip; the audit leaves no file in two splits once the bad cases are dropped."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bad_data import LABELS, write_csv
from medvision.data.audit import audit
from medvision.data.records import read_csv, read_msd
from medvision.data.sources import write_msd_manifest
from medvision.data.splits import SPLITS, group_split
from medvision.utils.errors import MedvisionError

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: the subject of each case: 1..40 cases of up to 15 subjects (several cases per subject)
subjects_st = st.lists(st.sampled_from([f"s{i:02d}" for i in range(15)]), min_size=1, max_size=40)
fraction_st = st.sampled_from([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.5])
seed_st = st.integers(min_value=0, max_value=2**16)


def _expected_count(fraction: float, n: int) -> int:
    """Subjects a fraction asks for: none for 0, else at least one (round half to even)."""
    return 0 if fraction <= 0 else max(1, round(fraction * n))


def _check_partition(subjects: list[str], split: dict[str, list[int]]) -> dict[str, set[str]]:
    assert set(split) == set(SPLITS)
    every = sorted(i for name in SPLITS for i in split[name])
    assert every == list(range(len(subjects))), "each case in exactly one split"
    for name in SPLITS:
        assert split[name] == sorted(split[name])
    by = {name: {subjects[i] for i in split[name]} for name in SPLITS}
    assert not by["train"] & by["val"] and not by["train"] & by["test"] and not by["val"] & by["test"]
    assert by["train"], "training is never empty"
    return by


@SETTINGS
@given(subjects=subjects_st, val=fraction_st, test=fraction_st, seed=seed_st)
def test_holdout_split_properties(subjects: list[str], val: float, test: float, seed: int) -> None:
    n = len(set(subjects))
    n_test = min(_expected_count(test, n), n)
    n_val = min(_expected_count(val, n), n - n_test)
    if n - n_test - n_val <= 0:  # no subject left for training: refused, saying why
        with pytest.raises(MedvisionError, match="training"):
            group_split(subjects, val_fraction=val, test_fraction=test, seed=seed)
        return
    split = group_split(subjects, val_fraction=val, test_fraction=test, seed=seed)
    by = _check_partition(subjects, split)
    assert len(by["test"]) == n_test and len(by["val"]) == n_val
    # identical for the same seed, also from a copy of the list
    assert group_split(list(subjects), val_fraction=val, test_fraction=test, seed=seed) == split


@SETTINGS
@given(subjects=subjects_st, test=fraction_st, num_folds=st.integers(2, 6), seed=seed_st)
def test_kfold_split_properties(subjects: list[str], test: float, num_folds: int, seed: int) -> None:
    n = len(set(subjects))
    rest = n - min(_expected_count(test, n), n)
    if not 2 <= num_folds <= rest:
        with pytest.raises(MedvisionError) as err:
            group_split(subjects, test_fraction=test, num_folds=num_folds, fold=0, seed=seed)
        assert "num_folds" in str(err.value)
        return
    folds = [
        group_split(subjects, test_fraction=test, num_folds=num_folds, fold=f, seed=seed) for f in range(num_folds)
    ]
    by = [_check_partition(subjects, s) for s in folds]
    assert all(b["test"] == by[0]["test"] for b in by), "the test split is the same for every fold"
    vals = [b["val"] for b in by]
    assert all(vals), "no fold has an empty validation split"
    assert sum(len(v) for v in vals) == len(set().union(*vals)) == rest, "val folds partition the non-test subjects"
    for b in by:
        assert b["train"] == set(subjects) - b["test"] - b["val"]
    assert [
        group_split(subjects, test_fraction=test, num_folds=num_folds, fold=f, seed=seed) for f in range(num_folds)
    ] == folds


row_st = st.fixed_dictionaries(
    {
        "image": st.sampled_from(["a.nii.gz", "b.nii.gz", "sub/c.nii.gz", "../d.nii.gz"]),
        "label": st.sampled_from(["la.nii.gz", "lb.nii.gz"]),
    },
    optional={"subject": st.sampled_from(["p1", "p2", "p3", ""]), "id": st.sampled_from(["x", "y", "z9", ""])},
)


@SETTINGS
@given(rows=st.lists(row_st, min_size=1, max_size=12), seed=seed_st)
def test_csv_manifest_round_trip(rows: list[dict[str, str]], seed: int) -> None:
    columns = ["image", "label", "subject", "id"]
    table = [{c: r.get(c, "") for c in columns} for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "manifests"
        manifest = write_csv(folder / "cases.csv", table)
        info = read_csv(manifest, LABELS, require_files=False)
        again = read_csv(manifest, LABELS, require_files=False)
    assert info.records == again.records, "reading is deterministic"
    assert info.label_names == LABELS and len(info.records) == len(rows)
    for row, record in zip(table, info.records, strict=True):
        assert record["image"] == str((folder / row["image"]).resolve())
        assert record["label"] == str((folder / row["label"]).resolve())
        expected_id = row["id"] or Path(row["image"]).name.split(".")[0]
        assert record["id"] == expected_id
        assert record["subject"] == (row["subject"] or expected_id)
    split = group_split([r["subject"] for r in info.records], val_fraction=0.0, test_fraction=0.0, seed=seed)
    _check_partition([r["subject"] for r in info.records], split)


case_st = st.fixed_dictionaries(
    {"name": st.text("abcdefgh", min_size=1, max_size=6)},
    optional={"subject": st.sampled_from(["p1", "p2"])},
)


@SETTINGS
@given(
    cases=st.lists(case_st, min_size=1, max_size=10),
    labels=st.lists(st.text("xyz", min_size=1, max_size=4), min_size=1, max_size=5),
    v2=st.booleans(),
)
def test_msd_manifest_round_trip(cases: list[dict[str, str]], labels: list[str], v2: bool) -> None:
    entries = [
        {
            "image": f"./imagesTr/{c['name']}.nii.gz",
            "label": f"./labelsTr/{c['name']}.nii.gz",
            **({"subject": c["subject"]} if "subject" in c else {}),
        }
        for c in cases
    ]
    names = ["background", *labels]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Task"
        root.mkdir()
        write_msd_manifest(root, "Task", names, ["MR"], entries)
        if v2:  # nnU-Net v2 maps name -> value; names must then be unique
            meta = json.loads((root / "dataset.json").read_text())
            if len(set(names)) < len(names):
                return
            meta["labels"] = {n: i for i, n in enumerate(names)}
            (root / "dataset.json").write_text(json.dumps(meta))
        info = read_msd(root, require_files=False)
    assert info.label_names == names and info.num_classes == len(names)
    assert [r["id"] for r in info.records] == [c["name"] for c in cases]
    assert [r["subject"] for r in info.records] == [c.get("subject", c["name"]) for c in cases]
    assert all(r["image"].endswith(f"imagesTr/{c['name']}.nii.gz") for r, c in zip(info.records, cases, strict=True))


@SETTINGS
@given(images=st.lists(st.integers(0, 5), min_size=2, max_size=14), subjects=st.data(), val=fraction_st, seed=seed_st)
def test_audit_leaves_no_file_in_two_splits(images: list[int], subjects, val: float, seed: int) -> None:
    """Whatever the manifest repeats, dropping the audit's bad cases leaves each file in one split."""
    subject_of = subjects.draw(
        st.lists(st.sampled_from(["p1", "p2", "p3", "p4", "p5", "p6"]), min_size=len(images), max_size=len(images))
    )
    records = [
        {
            "image": f"/nowhere/img_{k}.nii.gz",
            "label": f"/nowhere/lab_{i}.nii.gz",
            "id": f"c{i}",
            "subject": subject_of[i],
        }
        for i, k in enumerate(images)
    ]
    try:
        split = group_split(subject_of, val_fraction=val, test_fraction=0.25, seed=seed)
    except MedvisionError:
        return  # too few subjects for this split: covered by the split tests
    where = {i: name for name in SPLITS for i in split[name]}
    report = audit(records, LABELS, splits=split)

    assert {p.check for p in report.errors} <= {"missing", "unique", "leakage"}
    assert sum(p.check == "missing" for p in report.errors) == 2 * len(records), "every file is missing here"
    repeated = [p for p in report.problems if p.check in ("unique", "leakage")]
    for k in set(images):
        uses = [i for i, j in enumerate(images) if j == k]
        flagged = [p for p in repeated if p.file.endswith(f"img_{k}.nii.gz")]
        assert len(flagged) == len(uses) - 1, "every repetition but one is reported"
        spans = len({where[i] for i in uses}) > 1
        assert any(p.check == "leakage" for p in flagged) == spans
        kept = set(uses) - {p.index for p in flagged}
        assert len(kept) == 1
        assert SPLITS.index(where[kept.pop()]) == min(SPLITS.index(where[i]) for i in uses), (
            "the earliest split keeps it"
        )
    leaked_free = [i for i in range(len(records)) if i not in {p.index for p in repeated}]
    for k in set(images):
        assert len({where[i] for i in leaked_free if images[i] == k}) <= 1
