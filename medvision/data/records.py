"""Dataset manifests -> records: Medical Segmentation Decathlon ``dataset.json`` or a CSV file.

A record is a MONAI sample dictionary before loading: ``{"image": path, "label": path,
"subject": str, "id": str}``. Paths are absolute. ``subject`` groups cases that must stay in
the same split (several scans of one patient, a block and its mirror image, ...).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvision.utils.errors import MedvisionError

Record = dict[str, Any]


@dataclass
class DatasetInfo:
    """What a DataModule knows about a dataset before loading any image.

    Args:
        records: labelled cases (see module docstring).
        label_names: name of each label value, index = value; ``label_names[0]`` is background.
        modalities: one name per input channel.
        name: the dataset's name.
        source: the manifest file the records came from.
    """

    records: list[Record]
    label_names: list[str]
    modalities: list[str] = field(default_factory=lambda: ["image"])
    name: str = "dataset"
    source: str = ""

    @property
    def num_classes(self) -> int:
        """Number of label values, background included (the network's output channels)."""
        return len(self.label_names)

    @property
    def in_channels(self) -> int:
        """Number of image channels (the network's input channels)."""
        return len(self.modalities)


def _resolve(base: Path, rel: str) -> str:
    """Absolute path of a manifest entry (relative entries are relative to ``base``)."""
    return str((base / rel).resolve() if not Path(rel).is_absolute() else Path(rel))


def missing_files(records: list[Record], keys: tuple[str, ...] = ("image", "label")) -> list[tuple[Record, str]]:
    """``(record, key)`` of every file a record names that does not exist."""
    return [(r, k) for r in records for k in keys if not Path(r[k]).exists()]


def _require_files(records: list[Record], manifest: Path) -> None:
    """Raise one error naming every missing file (not just the first)."""
    missing = missing_files(records)
    if missing:
        lines = "\n".join(f"  {r['id']}: {key} {r[key]}" for r, key in missing)
        raise MedvisionError(
            f"{manifest} names {len(missing)} file(s) that do not exist:\n{lines}",
            fix=f"put the files there, or correct or remove those entries of {manifest.name}",
        )


def _label_names_from_msd(labels: dict[str, Any], manifest: Path) -> list[str]:
    """MSD v1 maps ``"value": "name"``; nnU-Net v2 maps ``"name": value``. Accept both."""
    try:
        if all(str(k).isdigit() for k in labels):
            by_value = {int(k): str(v) for k, v in labels.items()}
        else:
            by_value = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError) as err:
        raise MedvisionError(
            f"{manifest}: 'labels' must map label values to names, got {labels!r}",
            fix='write e.g. "labels": {"0": "background", "1": "tumour"}',
        ) from err
    expected = list(range(len(by_value)))
    if sorted(by_value) != expected:
        raise MedvisionError(
            f"{manifest}: label values must be 0..{len(by_value) - 1} without gaps, got {sorted(by_value)}",
            fix="number the labels consecutively from 0 (background)",
        )
    return [by_value[i] for i in expected]


def read_msd(root: str | Path, require_files: bool = True) -> DatasetInfo:
    """Read a Medical Segmentation Decathlon folder (``dataset.json`` + imagesTr/labelsTr).

    Optional per-case keys ``subject`` and ``id`` are kept; otherwise each case is its own
    subject and its id is the image file name.

    Args:
        root: the folder holding ``dataset.json``.
        require_files: raise if a listed file does not exist (naming all of them); ``False``
            keeps such records so that the data audit reports them with every other problem.

    Raises:
        MedvisionError: missing folder or manifest, bad JSON, no cases, files that do not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedvisionError(
            f"data folder not found: {root}",
            fix="set data.root=<folder holding dataset.json>, or pick an embedded dataset (data=mni152_tissue)",
        )
    manifest = root / "dataset.json"
    if not manifest.is_file():
        raise MedvisionError(
            f"no dataset.json in {root}",
            fix="a Medical Segmentation Decathlon folder holds dataset.json, imagesTr/ and labelsTr/",
        )
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as err:
        raise MedvisionError(f"{manifest} is not valid JSON: {err}", fix="repair the file") from err
    cases = meta.get("training") or []
    if not cases:
        raise MedvisionError(f"{manifest} lists no cases under 'training'", fix="add labelled cases")
    if "labels" not in meta:
        raise MedvisionError(f"{manifest} has no 'labels'", fix='add "labels": {"0": "background", ...}')
    label_names = _label_names_from_msd(meta["labels"], manifest)
    modality = meta.get("modality") or meta.get("channel_names") or {"0": "image"}
    modalities = [str(modality[k]) for k in sorted(modality, key=lambda k: int(k))]
    records = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or "image" not in case or "label" not in case:
            raise MedvisionError(f"{manifest}: training case #{i} needs 'image' and 'label', got {case!r}")
        image, label = _resolve(root, case["image"]), _resolve(root, case["label"])
        case_id = str(case.get("id") or Path(image).name.split(".")[0])
        records.append({"image": image, "label": label, "id": case_id, "subject": str(case.get("subject", case_id))})
    if require_files:
        _require_files(records, manifest)
    return DatasetInfo(records, label_names, modalities, str(meta.get("name", root.name)), str(manifest))


def read_csv(
    manifest: str | Path,
    label_names: list[str] | None = None,
    require_files: bool = True,
    infer_label_names: bool = True,
) -> DatasetInfo:
    """Read a CSV manifest with columns ``image``, ``label`` and optional ``subject``, ``id``.

    Relative paths are relative to the CSV's folder.

    Args:
        manifest: the CSV file.
        label_names: names of label values 0..K-1; when ``None`` they are ``background``,
            ``class_1``, ... up to the largest value found in the label files.
        require_files: raise if a listed file does not exist (naming all of them); ``False``
            keeps such records so that the data audit reports them with every other problem.
        infer_label_names: read the label files to name the labels when ``label_names`` is
            ``None``; ``False`` leaves ``label_names`` empty (the data audit, which reads every
            label file anyway, names them from its cached summaries).

    Raises:
        MedvisionError: missing or empty manifest, missing columns, files that do not exist.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise MedvisionError(f"manifest not found: {manifest}", fix="set data.manifest=<file.csv>")
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise MedvisionError(f"{manifest} has no rows", fix="add a header 'image,label,subject' and one row per case")
    missing = {"image", "label"} - set(rows[0])
    if missing:
        raise MedvisionError(
            f"{manifest} lacks column(s) {sorted(missing)} (has {sorted(rows[0])})",
            fix="the header must name 'image' and 'label' (and optionally 'subject', 'id')",
        )
    records = []
    for row in rows:
        image, label = _resolve(manifest.parent, row["image"]), _resolve(manifest.parent, row["label"])
        case_id = row.get("id") or Path(image).name.split(".")[0]
        records.append({"image": image, "label": label, "id": case_id, "subject": row.get("subject") or case_id})
    if require_files:
        _require_files(records, manifest)
    if label_names is None:
        label_names = _infer_label_names([r["label"] for r in records]) if infer_label_names else []
    return DatasetInfo(records, list(label_names), ["image"], manifest.stem, str(manifest))


def default_label_names(top: int) -> list[str]:
    """``background, class_1, ... class_K`` for the largest label value ``top`` = K."""
    return ["background"] + [f"class_{k}" for k in range(1, top + 1)]


def _infer_label_names(label_files: list[str]) -> list[str]:
    """:func:`default_label_names` for the largest label value found in the files."""
    import numpy as np
    from monai.transforms import LoadImage

    loader = LoadImage(image_only=True)
    return default_label_names(max(int(np.asarray(loader(f)).max()) for f in label_files))
