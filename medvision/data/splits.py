"""Deterministic train/val/test splits grouped by subject (holdout or k-fold), written and read.

:func:`group_split` computes a split from the cases' subjects and a seed. :func:`make_split`
is what a DataModule calls: that split (with every fold's, for k-fold), or the split a file
gives (``data.splits_file``), checked against the dataset. :func:`write_splits` writes it as
``splits.json``, which ``data.splits_file`` reads back:

.. code-block:: json

    {"format": "medvision-splits", "version": 1, "seed": 0, "num_folds": 5, "fold": 0,
     "train": ["case_01", ...], "val": [...], "test": [...],
     "folds": [{"train": [...], "val": [...]}, ...], "splits_file": null}

Ids are case ids (``record["id"]``). ``folds`` is there for k-fold splits only; ``seed`` is
``null`` and ``splits_file`` names the file when the split was read, not computed. nnU-Net's
``splits_final.json`` (a list of ``{"train": [...], "val": [...]}``, one per fold) is read too:
``data.fold`` picks the entry, and the dataset's cases in neither of its lists form the test split.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvision.utils.errors import MedvisionError

SPLITS = ("train", "val", "test")
#: ``format`` and ``version`` of the ``splits.json`` medvision writes
SPLITS_FORMAT = "medvision-splits"
SPLITS_VERSION = 1
#: ids named in one message at most
_SHOWN = 20


def _count(fraction: float, n: int) -> int:
    if fraction <= 0:
        return 0
    return max(1, round(fraction * n))


def group_split(
    subjects: Sequence[str],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_folds: int | None = None,
    fold: int = 0,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Split case indices into train/val/test so that no subject spans two splits.

    Subjects (not cases) are shuffled with ``seed``. ``test_fraction`` of them form the test
    split. The rest form either a holdout (``val_fraction`` of all subjects to val) or, with
    ``num_folds``, k folds of which fold ``fold`` is val and the others train. The test split
    is the same for every fold.

    Args:
        subjects: the subject of each case, in record order.
        val_fraction: fraction of subjects for validation (holdout mode).
        test_fraction: fraction of subjects for the test split.
        num_folds: number of cross-validation folds, or ``None`` for a holdout split.
        fold: the fold used for validation, ``0 <= fold < num_folds``.
        seed: the shuffling seed.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each a sorted list of case indices.
    """
    groups = sorted(set(subjects))
    n = len(groups)
    order = [groups[i] for i in np.random.default_rng(seed).permutation(n)]
    n_test = _count(test_fraction, n)
    test, rest = order[:n_test], order[n_test:]
    if num_folds is not None:
        if num_folds < 2 or num_folds > len(rest):
            raise MedvisionError(
                f"data.num_folds={num_folds} needs 2..{len(rest)} subjects outside the test split",
                fix="lower data.num_folds or data.test_fraction",
            )
        if not 0 <= fold < num_folds:
            raise MedvisionError(
                f"data.fold={fold} is outside 0..{num_folds - 1}", fix="pick a fold below data.num_folds"
            )
        chunks = np.array_split(np.array(rest, dtype=object), num_folds)
        val = list(chunks[fold])
        train = [g for i, c in enumerate(chunks) if i != fold for g in c]
    else:
        n_val = _count(val_fraction, n)
        val, train = rest[:n_val], rest[n_val:]
    if not train:
        raise MedvisionError(
            f"no subject is left for training "
            f"({n} subjects, val_fraction={val_fraction}, test_fraction={test_fraction})",
            fix="add cases or lower data.val_fraction / data.test_fraction",
        )
    where = dict.fromkeys(train, "train") | dict.fromkeys(val, "val") | dict.fromkeys(test, "test")
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, subject in enumerate(subjects):
        out[where[subject]].append(i)
    return out


@dataclass
class CaseSplit:
    """The split a run uses, as record indices.

    Args:
        indices: ``{"train": [...], "val": [...], "test": [...]}``, sorted record indices.
        fold: the validation fold (0 without folds).
        num_folds: number of folds, ``None`` for one holdout split.
        folds: every fold's ``{"train": [...], "val": [...]}`` (k-fold only).
        seed: the shuffling seed of a computed split (``None`` when read from a file).
        splits_file: the file the split was read from (``None`` when computed).
    """

    indices: dict[str, list[int]]
    fold: int = 0
    num_folds: int | None = None
    folds: list[dict[str, list[int]]] | None = None
    seed: int | None = None
    splits_file: str | None = None

    def to_json(self, ids: Sequence[str]) -> dict[str, Any]:
        """The split as ``splits.json`` holds it (case ids; see the module docstring)."""
        out: dict[str, Any] = {
            "format": SPLITS_FORMAT,
            "version": SPLITS_VERSION,
            "seed": self.seed,
            "num_folds": self.num_folds,
            "fold": self.fold,
            **{name: [ids[i] for i in self.indices[name]] for name in SPLITS},
            "splits_file": self.splits_file,
        }
        if self.folds is not None:
            out["folds"] = [{name: [ids[i] for i in f[name]] for name in ("train", "val")} for f in self.folds]
        return out


def make_split(
    ids: Sequence[str],
    subjects: Sequence[str],
    splits_file: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_folds: int | None = None,
    fold: int = 0,
    seed: int = 0,
) -> CaseSplit:
    """The split of a dataset: read from ``splits_file``, else computed by :func:`group_split`.

    Args:
        ids: the id of each case, in record order.
        subjects: the subject of each case, in record order.
        splits_file: a ``splits.json`` of medvision or nnU-Net's ``splits_final.json`` (``None``:
            compute the split; the fractions, ``num_folds`` and ``seed`` apply only then).
        val_fraction: fraction of subjects for validation (holdout mode).
        test_fraction: fraction of subjects for the test split.
        num_folds: number of cross-validation folds, or ``None`` for a holdout split.
        fold: the fold used for validation.
        seed: the shuffling seed.

    Raises:
        MedvisionError: see :func:`group_split` and :func:`read_splits_file`.
    """
    if splits_file is not None:
        return read_splits_file(splits_file, ids, subjects, fold)

    def fold_split(f: int) -> dict[str, list[int]]:
        return group_split(subjects, val_fraction, test_fraction, num_folds, f, seed)

    chosen = fold_split(fold)
    folds = None
    if num_folds is not None:
        every = [chosen if f == fold else fold_split(f) for f in range(num_folds)]
        folds = [{name: f[name] for name in ("train", "val")} for f in every]
    return CaseSplit(chosen, fold, num_folds, folds, seed, None)


def write_splits(path: str | os.PathLike[str], split: CaseSplit, ids: Sequence[str]) -> Path:
    """Write ``split`` as ``splits.json`` (atomically: a reader never sees half a file).

    Args:
        path: the file to write.
        split: the split.
        ids: the id of each case, in record order.
    """
    from medvision.utils.io import atomic_write_json

    return atomic_write_json(path, split.to_json(ids))


def _shown(ids: Sequence[str]) -> str:
    more = f" ... ({len(ids) - _SHOWN} more)" if len(ids) > _SHOWN else ""
    return ", ".join(str(i) for i in ids[:_SHOWN]) + more


def _id_list(value: Any, where: str, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise MedvisionError(
            f"{path}: {where} must be a list of case ids, got {value!r:.80}",
            fix="repair the file, or set data.splits_file=null to compute the split",
        )
    return [str(v) for v in value]


def _fold_entries(entries: Any, path: Path, where: str) -> list[dict[str, list[str]]]:
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise MedvisionError(
            f'{path}: {where} must be a non-empty list of {{"train": [...], "val": [...]}}, one per fold',
            fix="repair the file, or set data.splits_file=null to compute the split",
        )
    return [{k: _id_list(e.get(k), f"{where}[{i}].{k}", path) for k in ("train", "val")} for i, e in enumerate(entries)]


def _parse(path: Path, fold: int) -> tuple[dict[str, list[str] | None], list[dict[str, list[str]]] | None, str]:
    """The chosen fold's train/val/test ids (test ``None``: the cases in neither), every fold, the kind of file."""
    if not path.is_file():
        raise MedvisionError(
            f"data.splits_file not found: {path}",
            fix="name a splits.json a medvision run wrote or nnU-Net's splits_final.json, "
            "or set data.splits_file=null to compute the split",
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MedvisionError(f"data.splits_file {path} is not valid JSON: {err}", fix="repair the file") from err
    if isinstance(data, list):
        kind, folds, test = "nnU-Net splits_final.json", _fold_entries(data, path, "the list"), None
    elif isinstance(data, dict) and data.get("format") == SPLITS_FORMAT:
        kind = "medvision splits.json"
        if not isinstance(data.get("version"), int) or data["version"] > SPLITS_VERSION:
            raise MedvisionError(
                f"{path} is version {data.get('version')!r} of the splits format; this medvision reads "
                f"version {SPLITS_VERSION}",
                fix="update medvision, or write the split again with this version",
            )
        folds = _fold_entries(data["folds"], path, "'folds'") if data.get("folds") else None
        test = _id_list(data.get("test", []), "'test'", path)
        if folds is None:
            if fold != 0:
                raise MedvisionError(
                    f"data.fold={fold} is out of range: {path} holds one split (no folds)",
                    fix="set data.fold=0, or name a file with folds",
                )
            folds_top = {k: _id_list(data.get(k), f"'{k}'", path) for k in ("train", "val")}
            return {**folds_top, "test": test}, None, kind
    else:
        raise MedvisionError(
            f"data.splits_file {path} is neither a medvision splits.json "
            f'("format": "{SPLITS_FORMAT}") nor an nnU-Net splits_final.json (a list of folds)',
            fix="name a splits.json a medvision run wrote or nnU-Net's splits_final.json",
        )
    if not 0 <= fold < len(folds):
        raise MedvisionError(
            f"data.fold={fold} is out of range: {path} holds {len(folds)} fold(s) (0..{len(folds) - 1})",
            fix=f"pick a fold below {len(folds)}",
        )
    return {**folds[fold], "test": test}, folds, kind


def read_splits_file(
    path: str | os.PathLike[str], ids: Sequence[str], subjects: Sequence[str], fold: int = 0
) -> CaseSplit:
    """Read a split from a medvision ``splits.json`` or an nnU-Net ``splits_final.json``.

    medvision's file gives train/val/test (with ``folds``: ``folds[fold]``'s train/val and the
    file's test); nnU-Net's gives ``entries[fold]``'s train/val, and the dataset's cases in
    neither form the test split.

    Args:
        path: the file.
        ids: the id of each case of the dataset, in record order.
        subjects: the subject of each case, in record order.
        fold: the fold (entry) to use.

    Raises:
        MedvisionError: naming the file, the ids and the fix: a missing or unreadable file, a
            fold out of range, case ids the dataset lacks, a case in two splits, a case of the
            dataset in none (medvision's file), an empty train split, one subject in two splits.
    """
    path = Path(path)
    chosen, folds, kind = _parse(path, fold)
    retry = "or set data.splits_file=null to compute the split"
    repeated = sorted(case for case, n in Counter(ids).items() if n > 1)
    if repeated:
        raise MedvisionError(
            f"the dataset has several cases with the id(s) {_shown(repeated)}: the split of {path} "
            "(by case id) cannot tell them apart",
            fix=f"give each case its own id, {retry}",
        )
    index = {case: i for i, case in enumerate(ids)}
    named = [c for entry in [chosen, *(folds or [])] for names in entry.values() if names for c in names]
    unknown = sorted(set(named) - set(index))
    if unknown:
        raise MedvisionError(
            f"{kind} {path} names {len(unknown)} case id(s) the dataset does not have: {_shown(unknown)}",
            fix=f"use the file written for this dataset, remove those ids from it, {retry}",
        )
    listed = {name: list(dict.fromkeys(chosen[name] or [])) for name in SPLITS}
    if chosen["test"] is None:  # nnU-Net: the cases in neither list are the test split
        used = set(listed["train"]) | set(listed["val"])
        listed["test"] = [c for c in ids if c not in used]
    member = {name: set(listed[name]) for name in SPLITS}
    twice = {
        case: [name for name in SPLITS if case in member[name]]
        for case in ids
        if sum(case in member[name] for name in SPLITS) > 1
    }
    if twice:
        where = "; ".join(f"{case} ({' and '.join(names)})" for case, names in list(twice.items())[:_SHOWN])
        raise MedvisionError(
            f"{kind} {path} (fold {fold}) puts {len(twice)} case(s) in two splits: {where}",
            fix=f"list each case in one split of the file, {retry}",
        )
    unlisted = [c for c in ids if not any(c in member[name] for name in SPLITS)]
    if unlisted:
        raise MedvisionError(
            f"{kind} {path} puts {len(unlisted)} case(s) of the dataset in no split: {_shown(unlisted)}",
            fix=f"add them to the file's train, val or test list, {retry}",
        )
    if not listed["train"]:
        raise MedvisionError(
            f"{kind} {path} (fold {fold}) has an empty train split", fix=f"list training cases in the file, {retry}"
        )
    split_of = {case: name for name in SPLITS for case in listed[name]}
    spans: dict[str, dict[str, list[str]]] = {}
    for case, subject in zip(ids, subjects, strict=True):
        spans.setdefault(str(subject), {}).setdefault(split_of[case], []).append(case)
    leaked = {s: by for s, by in spans.items() if len(by) > 1}
    if leaked:
        where = "; ".join(
            f"subject {s}: " + ", ".join(f"{' '.join(cases)} in {name}" for name, cases in by.items())
            for s, by in list(leaked.items())[:_SHOWN]
        )
        raise MedvisionError(
            f"{kind} {path} (fold {fold}) puts cases of one subject in different splits (leakage): {where}",
            fix="keep every case of a subject in one split of the file (or correct the cases' subjects), " + retry,
        )
    indices = {name: sorted(index[c] for c in listed[name]) for name in SPLITS}
    fold_indices = (
        [{name: sorted(index[c] for c in f[name]) for name in ("train", "val")} for f in folds] if folds else None
    )
    return CaseSplit(indices, fold, len(folds) if folds else None, fold_indices, None, str(path))
