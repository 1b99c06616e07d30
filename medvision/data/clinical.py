"""Images and a patient's record in one sample: a classification CSV with clinical columns.

The manifest (``data.manifest``) is a CSV file with one row per case:

.. code-block:: text

    image,age,psa,sex,site,label            (or image_ct,image_pet,...: one column per modality)
    imgs/p001.png,64,4.1,M,A,malignant
    imgs/p002.png,,7.9,F,,benign            (an empty cell is a missing value)

``subject`` and ``id`` columns are optional, as in the segmentation CSV
(:func:`medvision.data.records.read_csv`); image paths are relative to the CSV's folder; the
label is a class name (or index). The clinical columns are declared in config,
``data.clinical: {numeric: [age, psa], categorical: [sex, site]}``, and encoded by
:class:`ClinicalEncoder`, fitted on the **training split only**:

- numeric: ``(value - mean) / std`` with the training mean and standard deviation;
- categorical: one-hot over the categories seen in training (sorted), so that the encoding is
  stored as plain lists and an unseen category at prediction is an all-zero one-hot (with a
  warning); one-hot rather than a learned embedding because clinical categoricals are few-valued
  (sex, site, stage), the same vector feeds the logistic-regression baseline, and a column's
  features are permuted together for its importance. High-cardinality columns (identifiers,
  free text) are refused (``max_categories``);
- every column gets a missing-indicator feature (1 where the value is missing): a missing numeric
  value is the training mean (0 after standardisation) *with* its indicator set, never a silent 0.

A column that is constant or entirely missing in the training split is a data error naming the
column (it cannot be standardised, or carries nothing). The fitted encoder is a plain dict
(:meth:`ClinicalEncoder.to_dict`), handed to the model (``model_kwargs()["clinical"]``), so it is
saved in the checkpoint's hyperparameters and prediction encodes new cases with the training
statistics (:func:`encode_cases`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from medvision.data.base import CacheMode, MedvisionDataModule, SpatialDims
from medvision.data.loaders import LoaderKind
from medvision.data.records import _image_columns, _resolve, missing_files
from medvision.data.sources import DatasetSource, prepare
from medvision.data.splits import SPLITS, CaseSplit, make_split, write_splits
from medvision.utils.errors import MedvisionError

#: cell values read as missing (compared lower-case, stripped)
MISSING_TOKENS: frozenset[str] = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "missing"})
#: the name of a column's missing-indicator feature
MISSING_SUFFIX = ":missing"
#: columns of the manifest that are never clinical
RESERVED_COLUMNS: frozenset[str] = frozenset({"image", "label", "subject", "id"})


def is_missing(value: Any) -> bool:
    """Whether a manifest cell is a missing value (:data:`MISSING_TOKENS`, ``None`` or NaN)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return str(value).strip().lower() in MISSING_TOKENS


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is no number."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class EncodingNote:
    """A value that could not be encoded as it is: missing, unseen in training, or not a number."""

    case: str
    column: str
    problem: Literal["missing", "unseen", "not_a_number", "absent_column"]
    value: str = ""

    def __str__(self) -> str:
        what = {
            "missing": "is missing: its missing indicator is set (numeric: the training mean)",
            "unseen": f"has the category {self.value!r}, unseen in training: encoded as no category (all-zero one-hot)",
            "not_a_number": f"holds {self.value!r}, not a number: treated as missing",
            "absent_column": "is not a column of the input: treated as missing",
        }[self.problem]
        return f"case {self.case}: clinical column {self.column!r} {what}"


@dataclass
class ClinicalEncoder:
    """Clinical columns -> one float vector per case, with statistics of the training split.

    Build it with :meth:`fit` (training rows) or :meth:`from_dict` (a checkpoint's
    ``clinical`` hyperparameter); :meth:`encode` turns rows into the vector.

    Args:
        numeric: column -> ``(mean, std)`` of its training values.
        categorical: column -> the categories seen in training, sorted.
    """

    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)

    # -------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, Any]],
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        ids: Sequence[str] | None = None,
        max_categories: int = 50,
        where: str = "the training split",
    ) -> ClinicalEncoder:
        """Fit on the training rows: mean/std of numeric columns, categories of categorical ones.

        Args:
            rows: the training cases' manifest rows (column -> cell text).
            numeric: numeric columns, in feature order.
            categorical: categorical columns, in feature order (after the numeric ones).
            ids: case ids (named in errors).
            max_categories: most distinct training values of a categorical column.
            where: what the rows are (named in errors).

        Raises:
            MedvisionError: a column named twice, a non-numeric value in a numeric column, a
                column that is entirely missing or constant in ``rows``, too many categories.
        """
        ids = list(ids) if ids is not None else [str(i) for i in range(len(rows))]
        twice = sorted(set(numeric) & set(categorical))
        if twice:
            raise MedvisionError(
                f"clinical column(s) {twice} are declared both numeric and categorical",
                fix="list each column once, in data.clinical.numeric or data.clinical.categorical",
            )
        reserved = sorted((set(numeric) | set(categorical)) & RESERVED_COLUMNS)
        if reserved:
            raise MedvisionError(
                f"{reserved} cannot be clinical columns (the manifest's image/label/subject/id columns)",
                fix="rename the clinical column in the CSV and in data.clinical",
            )
        encoder = cls()
        n = len(rows)
        for column in numeric:
            values: list[float] = []
            for case, row in zip(ids, rows, strict=True):
                cell = row.get(column)
                if is_missing(cell):
                    continue
                number = _number(cell)
                if number is None:
                    raise MedvisionError(
                        f"clinical column {column!r} is declared numeric, but case {case} holds {cell!r}",
                        fix=f"correct the value, leave it empty (missing), or declare {column} in "
                        "data.clinical.categorical",
                    )
                values.append(number)
            _check_informative(column, values, n, where, "numeric")
            encoder.numeric[column] = (float(np.mean(values)), float(np.std(values)))
        for column in categorical:
            seen = sorted({str(row.get(column)).strip() for row in rows if not is_missing(row.get(column))})
            _check_informative(column, seen, n, where, "categorical")
            if len(seen) > max_categories:
                raise MedvisionError(
                    f"clinical column {column!r} has {len(seen)} distinct values in {where} "
                    f"(more than data.clinical.max_categories={max_categories}): an identifier or a number?",
                    fix=f"declare {column} in data.clinical.numeric if it is a number, drop it if it is an "
                    "identifier, or raise data.clinical.max_categories",
                )
            encoder.categorical[column] = seen
        return encoder

    # -------------------------------------------------------------------- what it makes
    @property
    def columns(self) -> list[str]:
        """The clinical columns, in feature order (numeric first)."""
        return [*self.numeric, *self.categorical]

    @property
    def feature_names(self) -> list[str]:
        """The name of each feature of the vector (``age``, ``age:missing``, ``sex=F``, ``sex:missing``)."""
        names: list[str] = []
        for column in self.numeric:
            names += [column, f"{column}{MISSING_SUFFIX}"]
        for column, categories in self.categorical.items():
            names += [f"{column}={c}" for c in categories] + [f"{column}{MISSING_SUFFIX}"]
        return names

    @property
    def num_features(self) -> int:
        """Length of the encoded vector."""
        return len(self.feature_names)

    def column_features(self) -> dict[str, list[int]]:
        """Column -> the indices of its features in the vector (what permutation importance shuffles)."""
        out: dict[str, list[int]] = {}
        start = 0
        for column in self.numeric:
            out[column] = [start, start + 1]
            start += 2
        for column, categories in self.categorical.items():
            out[column] = list(range(start, start + len(categories) + 1))
            start += len(categories) + 1
        return out

    # -------------------------------------------------------------------- encode
    def encode(
        self, rows: Sequence[Mapping[str, Any]], ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[EncodingNote]]:
        """Encode rows with the fitted statistics.

        Args:
            rows: manifest rows (column -> cell text); a column absent from a row is missing.
            ids: case ids (named in the notes).

        Returns:
            ``(features, notes)``: the ``(N, num_features)`` float32 matrix, and one note per
            missing value, unseen category or non-numeric value (the caller decides what to say).
        """
        ids = list(ids) if ids is not None else [str(i) for i in range(len(rows))]
        out = np.zeros((len(rows), self.num_features), dtype=np.float32)
        notes: list[EncodingNote] = []
        spans = self.column_features()
        for r, (case, row) in enumerate(zip(ids, rows, strict=True)):
            for column, (mean, std) in self.numeric.items():
                value_at, missing_at = spans[column]
                cell = row.get(column)
                number = None if is_missing(cell) else _number(cell)
                if number is None:
                    out[r, missing_at] = 1.0
                    problem = "missing" if is_missing(cell) else "not_a_number"
                    notes.append(EncodingNote(case, column, problem, "" if cell is None else str(cell)))
                else:
                    out[r, value_at] = (number - mean) / std
            for column, categories in self.categorical.items():
                at = spans[column]
                cell = row.get(column)
                if is_missing(cell):
                    out[r, at[-1]] = 1.0
                    notes.append(EncodingNote(case, column, "missing"))
                    continue
                value = str(cell).strip()
                if value in categories:
                    out[r, at[categories.index(value)]] = 1.0
                else:
                    notes.append(EncodingNote(case, column, "unseen", value))
        return out, notes

    # -------------------------------------------------------------------- stored with the model
    def to_dict(self) -> dict[str, Any]:
        """Plain lists, strings and floats (checkpoint hyperparameters; ``weights_only`` loads them)."""
        return {
            "numeric": {c: {"mean": m, "std": s} for c, (m, s) in self.numeric.items()},
            "categorical": {c: list(v) for c, v in self.categorical.items()},
            "features": self.feature_names,
            "columns": self.column_features(),
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ClinicalEncoder:
        """The encoder :meth:`to_dict` described."""
        numeric = {str(c): (float(v["mean"]), float(v["std"])) for c, v in (spec.get("numeric") or {}).items()}
        categorical = {str(c): [str(x) for x in v] for c, v in (spec.get("categorical") or {}).items()}
        return cls(numeric, categorical)


def _check_informative(column: str, values: Sequence[Any], n: int, where: str, kind: str) -> None:
    """Refuse a column entirely missing, or constant, in the training rows."""
    key = f"data.clinical.{kind}"
    if not values:
        raise MedvisionError(
            f"clinical column {column!r} is missing in every case of {where} ({n} cases)",
            fix=f"fill in {column} for training cases, or remove it from {key}",
        )
    if len(set(values)) == 1:
        raise MedvisionError(
            f"clinical column {column!r} is constant in {where} (every value given is {values[0]!r}): "
            "it carries no information and cannot be standardised",
            fix=f"remove {column} from {key}, or train on cases where it varies",
        )


# ----------------------------------------------------------------------------- the manifest
@dataclass
class ClinicalManifest:
    """The rows of a classification manifest with images and clinical columns.

    Args:
        rows: each row as read (column -> cell text).
        images: each case's image file (or one file per modality), absolute.
        ids: each case's id.
        subjects: each case's subject.
        modalities: one name per image column (``image`` or the names after ``image_``).
        source: the CSV file.
        fields: the header.
    """

    rows: list[dict[str, str]]
    images: list[str | list[str]]
    ids: list[str]
    subjects: list[str]
    modalities: list[str]
    source: str
    fields: list[str]


def read_manifest(
    manifest: str | Path, require_label: bool = True, image_columns: Sequence[str] | None = None
) -> ClinicalManifest:
    """Read a classification CSV with image column(s), clinical columns and (for training) ``label``.

    Args:
        manifest: the CSV file.
        require_label: the ``label`` column must be there (training); prediction reads CSVs without it.
        image_columns: the columns holding image files, in channel order (``None``: ``image``, or
            the ``image_<modality>`` columns in header order), as for the segmentation CSV.

    Raises:
        MedvisionError: missing or empty file, no image column, no label column, duplicate ids.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise MedvisionError(f"manifest not found: {manifest}", fix="set data.manifest=<file.csv>")
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [dict(r) for r in reader]
        fields = [f.strip() for f in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): (v or "") for k, v in r.items()} for r in rows]
    if not rows:
        raise MedvisionError(f"{manifest} has no rows", fix="add a header 'image,<clinical columns>,label' and rows")
    needed = {"label"} if require_label else set()
    if not image_columns and "image" not in fields and not any(c.startswith("image_") for c in fields):
        needed.add("image")
    absent = sorted(needed - set(fields))
    if absent:
        raise MedvisionError(
            f"{manifest} lacks column(s) {absent} (has {fields})",
            fix="the header must name 'image' (or image_<modality> per modality), the clinical columns"
            + (" and 'label'" if require_label else ""),
        )
    columns, modalities = _image_columns(fields, manifest, list(image_columns) if image_columns else None)
    images: list[str | list[str]] = []
    ids: list[str] = []
    for row in rows:
        # an empty cell stays "" (no file), reported by the caller, not resolved to the CSV's folder
        files = [_resolve(manifest.parent, row[c].strip()) if (row[c] or "").strip() else "" for c in columns]
        images.append(files[0] if len(files) == 1 else files)
        ids.append(row.get("id") or Path(files[0]).name.split(".")[0])
    seen: dict[str, int] = {}
    for i, case in enumerate(ids):
        if case in seen:
            raise MedvisionError(
                f"{manifest}: rows {seen[case] + 2} and {i + 2} are both case {case!r}",
                fix="give each row its own id (an 'id' column, or distinct image file names)",
            )
        seen[case] = i
    subjects = [row.get("subject") or case for row, case in zip(rows, ids, strict=True)]
    return ClinicalManifest(rows, images, ids, subjects, modalities, str(manifest), fields)


def check_columns(manifest: ClinicalManifest, columns: Sequence[str]) -> None:
    """Every declared clinical column is in the manifest's header.

    Raises:
        MedvisionError: naming the absent columns and those the header has.
    """
    absent = [c for c in columns if c not in manifest.fields]
    if absent:
        others = [f for f in manifest.fields if f not in RESERVED_COLUMNS and not f.startswith("image_")]
        raise MedvisionError(
            f"clinical column(s) {absent} of data.clinical are not columns of {manifest.source} "
            f"(its other columns: {others})",
            fix="correct data.clinical.numeric / data.clinical.categorical, or add the column(s) to the CSV",
        )


def encode_cases(
    spec: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], ids: Sequence[str], fields: Sequence[str] = ()
) -> tuple[np.ndarray, list[EncodingNote]]:
    """Encode new cases (prediction) with a checkpoint's fitted ``clinical`` specification.

    A missing value, a non-numeric value in a numeric column and a category unseen in training
    each give a note (the caller warns with it); a column the input lacks entirely gives one note.

    Args:
        spec: the model's ``clinical`` hyperparameter (:meth:`ClinicalEncoder.to_dict`).
        rows: the cases' rows (column -> cell text).
        ids: the cases' names.
        fields: the input's header (``()``: not known; absent columns are then per-case notes).

    Returns:
        ``(features, notes)`` as :meth:`ClinicalEncoder.encode`.
    """
    encoder = ClinicalEncoder.from_dict(spec)
    features, notes = encoder.encode(rows, ids)
    absent = [c for c in encoder.columns if fields and c not in fields]
    if absent:
        notes = [n for n in notes if n.column not in absent]
        notes += [EncodingNote("(every case)", c, "absent_column") for c in absent]
    return features, notes


def _labels(
    values: Sequence[str], label_names: Sequence[str] | None, source: str, ids: Sequence[str]
) -> tuple[list[int], list[str]]:
    """Class indices of the label cells, and the label names (given, or the sorted distinct values)."""
    cells = [str(v).strip() for v in values]
    empty = [case for case, v in zip(ids, cells, strict=True) if not v]
    if empty:
        raise MedvisionError(
            f"{source}: {len(empty)} case(s) have no label (e.g. {empty[0]})", fix="label every training case"
        )
    if label_names:
        names = [str(n) for n in label_names]
        indices = []
        for case, v in zip(ids, cells, strict=True):
            if v in names:
                indices.append(names.index(v))
            elif v.isdigit() and int(v) < len(names):
                indices.append(int(v))
            else:
                raise MedvisionError(
                    f"{source}: case {case} has label {v!r}, not one of data.label_names={names}",
                    fix="correct the label, or list it in data.label_names",
                )
        return indices, names
    distinct = sorted(set(cells), key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))
    return [distinct.index(v) for v in cells], distinct


class ClinicalDataModule(MedvisionDataModule):
    """Classification of images with a patient's clinical record, from a CSV manifest.

    Samples are ``{"image": file or [files], "clinical": (F,) float32, "label": int, "id",
    "subject"}``; the ``load`` transforms read the image file(s) (several image columns are
    stacked as channels: early fusion), ``clinical`` is the vector of :class:`ClinicalEncoder`,
    fitted on the training split. The split is by subject (:func:`medvision.data.splits.make_split`)
    and written as ``splits.json``.

    Args:
        manifest: the CSV file (see the module docstring). With ``source`` it is written on first
            use, as ``<root>/<source.manifest_name>``, and this may be ``None``.
        root: the folder ``source`` writes into.
        source: a dataset source that writes the images and the CSV (the synthetic demo).
        clinical: ``{numeric: [...], categorical: [...], max_categories: 50}``: the clinical columns.
        image_columns: the columns holding image files, in channel order (``None``: ``image``, or
            the ``image_<modality>`` columns in header order).
        label_names: class names in index order (``None``: the sorted distinct labels of the CSV).
        spatial_dims: 2 or 3.
        transforms: ``{"load": ..., "augment": ...}`` (MONAI dict transforms on ``image``).
        val_fraction, test_fraction, num_folds, fold, split_seed, splits_file, splits_report: the
            split, as for :class:`medvision.data.datamodule.VolumeDataModule`.
        batch_size, val_batch_size, num_workers, pin_memory, loader, cache, cache_dir,
            samples_per_epoch: the DataModule base's (:class:`medvision.data.base.MedvisionDataModule`).
    """

    def __init__(
        self,
        manifest: str | None = None,
        root: str | None = None,
        source: DatasetSource | None = None,
        clinical: Mapping[str, Any] | None = None,
        image_columns: Sequence[str] | None = None,
        label_names: Sequence[str] | None = None,
        spatial_dims: SpatialDims = 2,
        transforms: Mapping[str, Any] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        num_folds: int | None = None,
        fold: int = 0,
        split_seed: int = 0,
        splits_file: str | None = None,
        splits_report: str | None = None,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        loader: LoaderKind = "torch",
        cache: CacheMode = "memory",
        cache_dir: str | None = None,
        samples_per_epoch: int | None = None,
    ) -> None:
        super().__init__(
            transforms=transforms,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            loader=loader,
            cache=cache,
            cache_dir=cache_dir,
            samples_per_epoch=samples_per_epoch,
        )
        if manifest is None and (source is None or root is None):
            raise MedvisionError(
                "the data config sets no data.manifest", fix="set data.manifest=<file.csv> (image,<clinical>,label)"
            )
        self.manifest = manifest
        self.root = root
        self.source = source
        clinical = dict(clinical or {})
        unknown = sorted(set(clinical) - {"numeric", "categorical", "max_categories"})
        if unknown:
            raise MedvisionError(
                f"data.clinical has unknown key(s) {unknown}",
                fix="data.clinical takes numeric: [columns], categorical: [columns], max_categories: N",
            )
        self.numeric = [str(c) for c in clinical.get("numeric") or []]
        self.categorical = [str(c) for c in clinical.get("categorical") or []]
        self.max_categories = int(clinical.get("max_categories") or 50)
        self.image_columns = list(image_columns) if image_columns else None
        self.label_names_override = list(label_names) if label_names else None
        self.spatial_dims = spatial_dims
        self.split_args = dict(
            val_fraction=val_fraction, test_fraction=test_fraction, num_folds=num_folds, fold=fold, seed=split_seed
        )
        self.splits_file = splits_file
        self.splits_report = splits_report
        self._loaded: tuple[ClinicalManifest, dict[str, list[int]], ClinicalEncoder, list[str]] | None = None
        self._samples: dict[str, list[dict[str, Any]]] = {}

    # ----------------------------------------------------------------- manifest, split, encoder
    def prepare_data(self) -> None:
        """Write the synthetic dataset on first use (atomic; safe from every rank); then the base's:
        with ``data.cache=preprocessed``, under a trainer, compute the missing cache entries."""
        self._write_source()
        super().prepare_data()

    def _write_source(self) -> None:
        """Write the synthetic dataset (images and CSV) into ``root`` on first use."""
        if self.source is not None and self.root is not None and self.manifest is None:
            prepare(self.source, self.root)

    @property
    def manifest_path(self) -> str:
        """The CSV file read: ``data.manifest``, else the one the source wrote in ``root``."""
        if self.manifest is not None:
            return self.manifest
        assert self.source is not None and self.root is not None
        return str(Path(self.root) / getattr(self.source, "manifest_name", "cases.csv"))

    def _load(self) -> tuple[ClinicalManifest, dict[str, list[int]], ClinicalEncoder, list[str]]:
        if self._loaded is None:
            self._write_source()
            manifest = read_manifest(self.manifest_path, image_columns=self.image_columns)
            check_columns(manifest, [*self.numeric, *self.categorical])
            # ids in splits.json as privacy.log_ids shows them (a source's own ids, case_000, identify no one)
            if self.privacy.active and self.manifest is not None:
                ids = [self.privacy.pseudonym(case) for case in manifest.ids]
                manifest = replace(manifest, ids=ids, subjects=[self.privacy.subject(s) for s in manifest.subjects])
            records = [{"image": image, "id": case} for image, case in zip(manifest.images, manifest.ids, strict=True)]
            missing = [(r, k, f or "(empty cell)") for r, k, f in missing_files(records, ("image",))]
            if missing:
                lines = "\n".join(f"  {r['id']}: {f}" for r, _, f in missing[:20])
                more = f"\n  ... ({len(missing) - 20} more)" if len(missing) > 20 else ""
                raise MedvisionError(
                    f"{manifest.source} names {len(missing)} image file(s) that do not exist:\n{lines}{more}",
                    fix=f"put the files there, or correct or remove those rows of {Path(manifest.source).name}",
                )
            split = make_split(manifest.ids, manifest.subjects, splits_file=self.splits_file, **self.split_args)
            self._write_splits(split, manifest)
            train = split.indices["train"]
            if not train:
                raise MedvisionError(
                    f"the training split of {manifest.source} is empty", fix="add cases or lower the fractions"
                )
            encoder = ClinicalEncoder.fit(
                [manifest.rows[i] for i in train],
                self.numeric,
                self.categorical,
                ids=[manifest.ids[i] for i in train],
                max_categories=self.max_categories,
            )
            labels, names = _labels(
                [r.get("label", "") for r in manifest.rows], self.label_names_override, manifest.source, manifest.ids
            )
            if len(names) < 2:
                raise MedvisionError(
                    f"{manifest.source} has one class ({names}): nothing to classify",
                    fix="add cases of another class, or list the classes in data.label_names",
                )
            self._loaded = (manifest, split.indices, encoder, names)
            self._build_samples(labels)
        return self._loaded

    def _write_splits(self, split: CaseSplit, manifest: ClinicalManifest) -> None:
        if not self.splits_report or rank_zero_only.rank != 0:
            return
        if self.splits_file and Path(self.splits_file).resolve() == Path(self.splits_report).resolve():
            return
        from medvision.utils.io import refuse_input_as_output

        refuse_input_as_output(self.splits_report, [manifest.source], what="data.splits_report")
        write_splits(self.splits_report, split, manifest.ids)

    def _build_samples(self, labels: list[int]) -> None:
        """Encode every split with the training statistics; warn once per column about unseen categories."""
        assert self._loaded is not None
        manifest, split, encoder, _ = self._loaded
        unseen: dict[str, list[str]] = {}
        for name in SPLITS:
            indices = split[name]
            features, notes = encoder.encode([manifest.rows[i] for i in indices], [manifest.ids[i] for i in indices])
            for note in notes:
                if note.problem == "unseen":
                    unseen.setdefault(note.column, []).append(f"{note.case} ({note.value!r}, {name})")
            self._samples[name] = [
                {
                    "image": manifest.images[i],
                    "clinical": features[k],
                    "label": np.int64(labels[i]),
                    "id": manifest.ids[i],
                    "subject": manifest.subjects[i],
                }
                for k, i in enumerate(indices)
            ]
        if unseen and rank_zero_only.rank == 0:
            for column, cases in unseen.items():
                shown = ", ".join(cases[:5]) + (f" ... ({len(cases) - 5} more)" if len(cases) > 5 else "")
                print(
                    f"warning: clinical column {column!r}: {len(cases)} validation/test case(s) hold a category "
                    f"unseen in training, encoded as no category: {shown}"
                )

    @property
    def reads_dicom(self) -> bool:
        """Whether an image of the manifest is a DICOM file (``privacy.log_ids=auto`` then hides case ids)."""
        if self.manifest is None:
            return False  # written by a dataset source (PNG files)
        if getattr(self, "_reads_dicom", None) is None:
            from medvision.data.privacy import records_are_dicom

            images = read_manifest(self.manifest_path, image_columns=self.image_columns).images
            self._reads_dicom = records_are_dicom([{"image": image} for image in images])
        return bool(self._reads_dicom)

    @property
    def encoder(self) -> ClinicalEncoder:
        """The clinical encoder fitted on the training split."""
        return self._load()[2]

    @property
    def split_indices(self) -> dict[str, list[int]]:
        """Row indices of the manifest in each split."""
        return self._load()[1]

    def clinical_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, F), labels (N,))`` of ``split`` without reading any image (the tabular baselines)."""
        samples = self.samples(split)
        if not samples:
            return np.zeros((0, self.encoder.num_features), np.float32), np.zeros(0, np.int64)
        return np.stack([s["clinical"] for s in samples]), np.array([int(s["label"]) for s in samples])

    # ----------------------------------------------------------------- MedvisionDataModule
    def samples(self, split: str) -> list[dict[str, Any]]:
        """The sample dictionaries of ``split`` (image file(s), encoded clinical vector, label, id)."""
        self._load()
        return self._samples[split]

    def dataset(self, split: str, train: bool = False) -> Any:
        """MONAI dataset of ``split``; ``val`` and ``test`` must hold a case."""
        if split != "train" and not self.samples(split):
            raise MedvisionError(
                f"the {split} split of {self.manifest_path} is empty",
                fix=f"raise data.{split}_fraction or add cases",
            )
        return super().dataset(split, train)

    @property
    def label_names(self) -> list[str]:
        """The class names (index = class)."""
        return self._load()[3]

    @property
    def task(self) -> str:
        """``binary`` (two classes) or ``multiclass``."""
        return "binary" if len(self.label_names) == 2 else "multiclass"

    @property
    def modalities(self) -> list[str]:
        """One name per image column (the channels, in order)."""
        return self._load()[0].modalities

    @property
    def in_channels(self) -> int:
        """Image channels: one per image column (grey images)."""
        return len(self.modalities)

    def model_kwargs(self) -> dict[str, Any]:
        """Label names, channels, task, 2D/3D and the fitted clinical encoder (stored with the model)."""
        return {
            **super().model_kwargs(),
            "task": self.task,
            "spatial_dims": self.spatial_dims,
            "clinical": self.encoder.to_dict(),
        }

    def input_files(self) -> list[str]:
        """The manifest and every image file."""
        manifest = self._load()[0]
        files = [f for image in manifest.images for f in ([image] if isinstance(image, str) else image)]
        return [manifest.source, *files]

    def cache_folder(self, split: str) -> Path:
        """``data.cache_dir`` (entries are keyed by content), else ``.cache`` beside the manifest."""
        return Path(self.cache_dir or Path(self.manifest_path).parent / ".cache")
