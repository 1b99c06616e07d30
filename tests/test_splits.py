"""Subject-grouped, seeded train/val/test splits (holdout and k-fold)."""

from __future__ import annotations

import pytest

from medvision.data.splits import SPLITS, group_split
from medvision.utils.errors import MedvisionError


def _subjects() -> list[str]:
    """30 cases of 17 subjects: some with 1 scan, some with 2, some with 3 (interleaved)."""
    subjects = [f"s{i:02d}" for i in range(17)]
    cases = subjects + subjects[:9] + subjects[:4]
    assert len(cases) == 30
    return cases


def _subject_sets(subjects: list[str], split: dict[str, list[int]]) -> dict[str, set[str]]:
    return {name: {subjects[i] for i in split[name]} for name in SPLITS}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_holdout_groups_by_subject_and_covers_every_case_once(seed: int) -> None:
    subjects = _subjects()
    split = group_split(subjects, val_fraction=0.2, test_fraction=0.2, seed=seed)

    assert set(split) == set(SPLITS)
    every = sorted(i for name in SPLITS for i in split[name])
    assert every == list(range(len(subjects))), "each case must be in exactly one split"
    for name in SPLITS:
        assert split[name] == sorted(split[name])
        assert split[name], f"{name} is empty"
    by = _subject_sets(subjects, split)
    assert not by["train"] & by["val"]
    assert not by["train"] & by["test"]
    assert not by["val"] & by["test"]
    # fractions count subjects, not cases: round(0.2 * 17) = 3 subjects each
    assert len(by["val"]) == 3 and len(by["test"]) == 3


def test_same_seed_same_split_other_seed_other_split() -> None:
    subjects = _subjects()
    a = group_split(subjects, seed=3)
    assert group_split(list(subjects), seed=3) == a
    others = [group_split(subjects, seed=s) for s in range(4, 9)]
    # a shuffle of 17 subjects: five other seeds cannot all reproduce seed 3's split
    assert any(o != a for o in others)


def test_split_depends_on_subjects_not_on_case_order() -> None:
    """Shuffling the case list keeps every subject in the same split."""
    subjects = _subjects()
    reordered = list(reversed(subjects))
    a = _subject_sets(subjects, group_split(subjects, seed=5))
    b = _subject_sets(reordered, group_split(reordered, seed=5))
    assert a == b


@pytest.mark.parametrize("num_folds", [2, 3, 5])
def test_kfold_val_folds_partition_the_non_test_subjects(num_folds: int) -> None:
    subjects = _subjects()
    folds = [group_split(subjects, test_fraction=0.2, num_folds=num_folds, fold=f, seed=11) for f in range(num_folds)]
    by = [_subject_sets(subjects, s) for s in folds]

    test = by[0]["test"]
    assert test, "the test split is empty"
    assert all(b["test"] == test for b in by), "the test split must be the same for every fold"
    assert all(s["test"] == folds[0]["test"] for s in folds)

    vals = [b["val"] for b in by]
    for i in range(num_folds):
        assert vals[i], f"fold {i} has an empty val split"
        for j in range(i + 1, num_folds):
            assert not vals[i] & vals[j], f"val folds {i} and {j} share subjects"
    non_test = set(subjects) - test
    assert set().union(*vals) == non_test, "val folds must cover every subject outside the test split"
    for b in by:
        assert b["train"] == non_test - b["val"]
        assert not b["train"] & b["test"]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_folds=3, fold=3),
        dict(num_folds=3, fold=-1),
        dict(num_folds=1, fold=0),
        dict(num_folds=100, fold=0),
    ],
)
def test_bad_fold_settings_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(MedvisionError) as err:
        group_split(_subjects(), seed=0, **kwargs)
    assert "fold" in str(err.value)


def test_too_few_subjects_for_training_is_a_user_error() -> None:
    with pytest.raises(MedvisionError):
        group_split(["a", "b"], val_fraction=0.5, test_fraction=0.5, seed=0)
