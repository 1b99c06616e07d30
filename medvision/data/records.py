"""Dataset manifests -> records: a Medical Segmentation Decathlon folder, an nnU-Net v2 raw
dataset folder, or a CSV file.

A record is a MONAI sample dictionary before loading: ``{"image": path, "label": path,
"subject": str, "id": str}``. Paths are absolute. ``image`` is one file (one channel, or a 4D
file holding every channel, as MSD's multi-modal tasks) or a list of files, one per channel in
the order of the modalities (nnU-Net's ``<case>_0000``, ``<case>_0001``, ...); MONAI's
``LoadImaged`` stacks such a list as channels, so ``EnsureChannelFirstd`` gives ``(C, X, Y, Z)``
either way. ``subject`` groups cases that must stay in the same split (several scans of one
patient, a block and its mirror image, ...). ``id`` names the case: the image file's name
without extension (MSD, CSV) or nnU-Net's case identifier, so one case has one id in every layout.
"""

from __future__ import annotations

import csv
import json
import re
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


def record_files(record: Record, key: str) -> list[str]:
    """The file(s) of ``record[key]`` as a list (an image may list one file per channel)."""
    value = record[key]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def missing_files(records: list[Record], keys: tuple[str, ...] = ("image", "label")) -> list[tuple[Record, str, str]]:
    """``(record, key, file)`` of every file a record names that does not exist (``""``: an empty
    CSV cell, a modality the case lacks)."""
    return [(r, k, f) for r in records for k in keys for f in record_files(r, k) if not f or not Path(f).exists()]


def _require_files(records: list[Record], manifest: Path) -> None:
    """Raise one error naming every missing file (not just the first)."""
    missing = missing_files(records)
    if missing:
        lines = "\n".join(f"  {r['id']}: {key} {file or '(empty cell)'}" for r, key, file in missing)
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


def _dataset_folder(root: str | Path, layout: str) -> tuple[Path, dict[str, Any]]:
    """The folder ``root`` and its parsed ``dataset.json`` (errors name the file and the fix)."""
    root = Path(root)
    if not root.is_dir():
        raise MedvisionError(
            f"data folder not found: {root}",
            fix="set data.root=<folder holding dataset.json>, or pick an embedded dataset (data=mni152_tissue)",
        )
    manifest = root / "dataset.json"
    if not manifest.is_file():
        raise MedvisionError(f"no dataset.json in {root}", fix=f"{layout} holds dataset.json, imagesTr/ and labelsTr/")
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as err:
        raise MedvisionError(f"{manifest} is not valid JSON: {err}", fix="repair the file") from err
    if not isinstance(meta, dict):
        raise MedvisionError(f"{manifest} must hold a JSON object, got {type(meta).__name__}", fix="repair the file")
    return root, meta


def _channel_names(channels: Any, manifest: Path, key: str) -> list[str]:
    """Channel names in channel order from ``{"0": "T1", "1": "FLAIR"}`` (keys 0..C-1)."""
    if not isinstance(channels, dict) or not channels:
        raise MedvisionError(
            f"{manifest}: '{key}' must map channel numbers to names, got {channels!r}",
            fix=f'write e.g. "{key}": {{"0": "T1", "1": "FLAIR"}}',
        )
    try:
        by_index = {int(k): str(v) for k, v in channels.items()}
    except ValueError as err:
        raise MedvisionError(
            f"{manifest}: the keys of '{key}' must be channel numbers, got {sorted(channels)}",
            fix=f'write e.g. "{key}": {{"0": "T1", "1": "FLAIR"}}',
        ) from err
    if sorted(by_index) != list(range(len(by_index))):
        raise MedvisionError(
            f"{manifest}: the channels of '{key}' must be numbered 0..{len(by_index) - 1}, got {sorted(by_index)}",
            fix="number the channels consecutively from 0",
        )
    return [by_index[i] for i in range(len(by_index))]


def read_msd(root: str | Path, require_files: bool = True) -> DatasetInfo:
    """Read a Medical Segmentation Decathlon folder (``dataset.json`` + imagesTr/labelsTr).

    Optional per-case keys ``subject`` and ``id`` are kept; otherwise each case is its own
    subject and its id is the image file name. Several modalities (``"modality": {"0": "FLAIR",
    "1": "T1w", ...}``) are the channels of one 4D image per case (X, Y, Z, C), as in MSD's
    BrainTumour and Prostate tasks.

    Args:
        root: the folder holding ``dataset.json``.
        require_files: raise if a listed file does not exist (naming all of them); ``False``
            keeps such records so that the data audit reports them with every other problem.

    Raises:
        MedvisionError: missing folder or manifest, bad JSON, no cases, files that do not exist.
    """
    root, meta = _dataset_folder(root, "a Medical Segmentation Decathlon folder")
    manifest = root / "dataset.json"
    cases = meta.get("training") or []
    if not cases:
        nnunet = "file_ending" in meta and "channel_names" in meta
        raise MedvisionError(
            f"{manifest} lists no cases under 'training'"
            + (" (it is an nnU-Net v2 raw dataset: channel_names, file_ending)" if nnunet else ""),
            fix=f"read it as one: data=nnunet data.root={root}" if nnunet else "add labelled cases",
        )
    if "labels" not in meta:
        raise MedvisionError(f"{manifest} has no 'labels'", fix='add "labels": {"0": "background", ...}')
    label_names = _label_names_from_msd(meta["labels"], manifest)
    key = "modality" if meta.get("modality") else "channel_names"
    modalities = _channel_names(meta[key], manifest, key) if meta.get(key) else ["image"]
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


#: an nnU-Net v2 image file name without its file ending: ``<case>_<XXXX>`` (XXXX: the channel)
_NNUNET_IMAGE = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")


def channel_file(stem: str) -> tuple[str, int] | None:
    """``(case, channel)`` of an image file name (without its ending) in nnU-Net's ``<case>_<XXXX>``
    naming, one file per channel; ``None`` for any other name."""
    match = _NNUNET_IMAGE.fullmatch(stem)
    return (match["case"], int(match["channel"])) if match else None


def _nnunet_label_names(labels: Any, manifest: Path) -> list[str]:
    """nnU-Net v2 ``labels`` (name -> value) as names by value; region and ignore labels refused."""
    if not isinstance(labels, dict) or not labels:
        raise MedvisionError(
            f"{manifest}: 'labels' must map label names to values, got {labels!r}",
            fix='write e.g. "labels": {"background": 0, "tumour": 1}',
        )
    regions = sorted(name for name, value in labels.items() if isinstance(value, (list, tuple)))
    if regions:
        raise MedvisionError(
            f"{manifest}: the label(s) {', '.join(regions)} are regions (lists of label values, nnU-Net's "
            "region-based training); medvision trains one class per label value and does not support region labels",
            fix='give every label one integer value, e.g. "labels": {"background": 0, "edema": 1, "tumour": 2} '
            "(the label maps keep their values; regions are unions of them)",
        )
    if "ignore" in labels:
        raise MedvisionError(
            f"{manifest}: the label 'ignore' (nnU-Net's ignore label for sparse annotations) is not supported",
            fix="remove 'ignore' from dataset.json and its value from the label maps (e.g. set it to background)",
        )
    return _label_names_from_msd(labels, manifest)


def _nnunet_cases(
    root: Path, meta: dict[str, Any], ending: str, num_channels: int
) -> tuple[dict[str, tuple[list[Path], Path]], list[str]]:
    """``case -> (channel files, label file)`` of an nnU-Net raw folder, and what is wrong with its files.

    The files may not exist: those are named in the problems (and left for the data audit).
    """
    manifest = root / "dataset.json"
    problems: list[str] = []
    if "dataset" in meta:  # nnU-Net v2's explicit file list: {case: {"images": [...], "label": ...}}
        listed = meta["dataset"]
        if not isinstance(listed, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("images"), list) and "label" in v for v in listed.values()
        ):
            raise MedvisionError(
                f'{manifest}: \'dataset\' must map case names to {{"images": [...], "label": ...}}',
                fix="repair the entry, or remove 'dataset' to read imagesTr/ and labelsTr/",
            )
        cases = {
            str(case): ([Path(_resolve(root, f)) for f in v["images"]], Path(_resolve(root, v["label"])))
            for case, v in sorted(listed.items())
        }
        for case, (images, _) in cases.items():
            if len(images) != num_channels:
                problems.append(f"  {case}: {len(images)} image file(s) listed, channel_names declares {num_channels}")
        return cases, problems

    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise MedvisionError(
                f"no {folder.name}/ folder in {root}",
                fix="an nnU-Net v2 raw dataset holds imagesTr/<case>_0000<file_ending> (one file per channel) "
                "and labelsTr/<case><file_ending>",
            )

    def named(folder: Path) -> list[str]:
        return sorted(f.name[: -len(ending)] for f in folder.iterdir() if f.name.endswith(ending) and f.name[0] != ".")

    labelled = named(labels_dir)
    channels: dict[str, set[int]] = {}
    for stem in named(images_dir):
        match = _NNUNET_IMAGE.fullmatch(stem)
        if match is None:
            problems.append(f"  imagesTr/{stem}{ending} is not named <case>_<XXXX>{ending} (XXXX: channel 0000..)")
            continue
        channels.setdefault(match["case"], set()).add(int(match["channel"]))
    cases = {}
    for case in sorted(set(labelled) | set(channels)):
        for channel in sorted(c for c in channels.get(case, ()) if c >= num_channels):
            problems.append(
                f"  {case}: imagesTr/{case}_{channel:04d}{ending} is channel {channel}, "
                f"channel_names declares {num_channels} (0..{num_channels - 1})"
            )
        images = [images_dir / f"{case}_{c:04d}{ending}" for c in range(num_channels)]
        cases[case] = (images, labels_dir / f"{case}{ending}")
    return cases, problems


def read_nnunet(root: str | Path, require_files: bool = True) -> DatasetInfo:
    """Read an nnU-Net v2 raw dataset folder as it is (``dataset.json`` + imagesTr/labelsTr).

    ``dataset.json`` names the channels (``"channel_names": {"0": "T1", "1": "FLAIR"}``), the
    labels (``"labels": {"background": 0, "tumour": 1}``), the files' ending (``".nii.gz"``)
    and the number of cases (``numTraining``). Every ``labelsTr/<case><file_ending>`` is a case,
    with one image file per channel, ``imagesTr/<case>_0000<file_ending>``, ``<case>_0001...``
    (or the files nnU-Net's optional ``"dataset"`` key lists). A record's ``image`` is that file
    for one channel, and the list of files in channel order for several. The case's id is
    ``<case>``; its subject is ``<case>`` unless the optional ``"medvision_subjects"`` maps
    cases to subjects (what ``scripts/bench/nnunet_peer.py`` writes for cases that must share
    a split).

    Args:
        root: the dataset folder (``nnUNet_raw/DatasetXXX_Name``).
        require_files: raise if a case lacks a file (naming all of them); ``False`` keeps such
            records so that the data audit reports them with every other problem.

    Raises:
        MedvisionError: missing folder or manifest, bad JSON, region-based or ``ignore`` labels,
            badly named image files, a channel number outside ``channel_names``, ``numTraining``
            not the number of cases, files that do not exist.
    """
    root, meta = _dataset_folder(root, "an nnU-Net v2 raw dataset folder (nnUNet_raw/DatasetXXX_Name)")
    manifest = root / "dataset.json"
    key = "channel_names" if "channel_names" in meta else "modality"
    absent = [k for k in (key, "labels", "file_ending") if k not in meta]
    if absent:
        msd = bool(meta.get("training"))
        raise MedvisionError(
            f"{manifest} has no {', '.join(absent)}"
            + (" (it lists its cases under 'training': a Medical Segmentation Decathlon folder)" if msd else ""),
            fix=f"read it as one: data=msd data.root={root}"
            if msd
            else 'nnU-Net v2\'s dataset.json holds "channel_names", "labels" (name -> value) and "file_ending"',
        )
    modalities = _channel_names(meta[key], manifest, key)
    label_names = _nnunet_label_names(meta["labels"], manifest)
    ending = str(meta["file_ending"])
    cases, problems = _nnunet_cases(root, meta, ending, len(modalities))
    if not cases:
        raise MedvisionError(
            f"{root} holds no case: no labelsTr/*{ending}",
            fix=f"put the label maps in labelsTr/<case>{ending} and the images in imagesTr/<case>_0000{ending}",
        )
    subjects = meta.get("medvision_subjects") or {}
    if not isinstance(subjects, dict):
        raise MedvisionError(
            f"{manifest}: 'medvision_subjects' must map case names to subjects", fix="repair or remove the entry"
        )
    records = [
        {
            "image": str(images[0]) if len(images) == 1 else [str(f) for f in images],
            "label": str(label),
            "id": case,
            "subject": str(subjects.get(case, case)),
        }
        for case, (images, label) in cases.items()
    ]
    declared = meta.get("numTraining")
    if declared is not None and declared != len(records):
        problems.append(f"  numTraining is {declared}, the folder holds {len(records)} case(s)")
    missing = [f"  {r['id']}: {role} {file} is missing" for r, role, file in missing_files(records)]
    if problems or (missing and require_files):
        raise MedvisionError(
            f"{manifest}: the dataset's files do not match it ({len(problems) + len(missing)} problem(s)):\n"
            + "\n".join(problems + missing),
            fix=f"every case needs labelsTr/<case>{ending} and one imagesTr/<case>_XXXX{ending} per channel "
            f"(XXXX = 0000..{len(modalities) - 1:04d}); put the files there or remove the case, "
            "and set numTraining to the number of cases",
        )
    return DatasetInfo(records, label_names, modalities, str(meta.get("name", root.name)), str(manifest))


def _image_columns(
    fields: list[str], manifest: Path, image_columns: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """The image column(s) of a CSV header and the modality each holds.

    ``image`` is one channel (modality ``image``); ``image_<modality>`` columns are one channel
    each, in header order. ``image_columns`` (``data.image_columns``) names the columns instead,
    in channel order; the modality is the column's name (without an ``image_`` prefix).
    """
    if image_columns:
        absent = [c for c in image_columns if c not in fields]
        if absent:
            raise MedvisionError(
                f"{manifest} has no column(s) {absent} named by data.image_columns (its header: {fields})",
                fix="name the header's image columns in data.image_columns=[...], one per modality in channel order",
            )
        return list(image_columns), [c.removeprefix("image_") or c for c in image_columns]
    several = [c for c in fields if c.startswith("image_")]
    if "image" in fields and several:
        raise MedvisionError(
            f"{manifest} has both an 'image' column and image_<modality> columns ({', '.join(several)})",
            fix="name one image column 'image', or one column per channel image_<modality> (image_t1,image_flair)",
        )
    if "image" in fields:
        return ["image"], ["image"]
    if not all(c.removeprefix("image_") for c in several):
        raise MedvisionError(f"{manifest}: the column 'image_' names no modality", fix="name it image_<modality>")
    return several, [c.removeprefix("image_") for c in several]


def read_csv(
    manifest: str | Path,
    label_names: list[str] | None = None,
    require_files: bool = True,
    infer_label_names: bool = True,
    image_columns: list[str] | None = None,
) -> DatasetInfo:
    """Read a CSV manifest with columns ``image``, ``label`` and optional ``subject``, ``id``.

    Several channels: one column per channel named ``image_<modality>`` instead of ``image``
    (``image_t1,image_flair,label,subject``); the channels are in header order and the
    modalities are the names after ``image_``. Or any column names, listed in ``image_columns``
    (``[t1, t2]``: channel order; the modalities are those names). Relative paths are relative
    to the CSV's folder. An empty image cell (a modality the case lacks) is kept as ``""``, for
    the data audit to report. A case's id is its ``id`` column, else the (first) image file's
    name without extension. The modalities may lie on different grids
    (:class:`medvision.data.multimodal.LoadModalitiesd` resamples them onto the first one's).

    Args:
        manifest: the CSV file.
        label_names: names of label values 0..K-1; when ``None`` they are ``background``,
            ``class_1``, ... up to the largest value found in the label files.
        require_files: raise if a listed file does not exist (naming all of them); ``False``
            keeps such records so that the data audit reports them with every other problem.
        infer_label_names: read the label files to name the labels when ``label_names`` is
            ``None``; ``False`` leaves ``label_names`` empty (the data audit, which reads every
            label file anyway, names them from its cached summaries).
        image_columns: the columns holding the image files, in channel order (``None``: ``image``
            or the ``image_<modality>`` columns).

    Raises:
        MedvisionError: missing or empty manifest, missing columns, both ``image`` and
            ``image_*`` columns, files that do not exist.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise MedvisionError(f"manifest not found: {manifest}", fix="set data.manifest=<file.csv>")
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        fields = list(reader.fieldnames or [])
    if not rows:
        raise MedvisionError(f"{manifest} has no rows", fix="add a header 'image,label,subject' and one row per case")
    has_image = bool(image_columns) or "image" in fields or any(c.startswith("image_") for c in fields)
    missing = ({"label"} - set(fields)) | (set() if has_image else {"image"})
    if missing:
        raise MedvisionError(
            f"{manifest} lacks column(s) {sorted(missing)} (has {sorted(fields)})",
            fix="the header must name 'image' (or image_<modality> per channel) and 'label' "
            "(and optionally 'subject', 'id')",
        )
    columns, modalities = _image_columns(fields, manifest, image_columns)
    records = []
    for row in rows:
        images = [_resolve(manifest.parent, row[c].strip()) if (row[c] or "").strip() else "" for c in columns]
        label = _resolve(manifest.parent, row["label"])
        case_id = row.get("id") or Path(next((f for f in images if f), label)).name.split(".")[0]
        image: str | list[str] = images[0] if len(images) == 1 else images
        records.append({"image": image, "label": label, "id": case_id, "subject": row.get("subject") or case_id})
    if require_files:
        _require_files(records, manifest)
    if label_names is None:
        label_names = _infer_label_names([r["label"] for r in records]) if infer_label_names else []
    return DatasetInfo(records, list(label_names), modalities, manifest.stem, str(manifest))


def image_rows(
    manifest: str | Path, modalities: list[str] | None = None
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The cases of a CSV manifest of images to predict: ``(modalities, [(id, files)])``.

    The image columns are found for ``modalities`` (a trained model's channels, in order): the
    column ``image_<modality>`` or ``<modality>`` (or ``image`` for a model of one channel);
    without ``modalities``, as :func:`read_csv` finds them. No label column is needed. A file is
    ``""`` where the cell is empty (a modality the case lacks); relative paths are relative to the
    CSV's folder. A case's id is its ``id`` column, else its first file's name without extension.

    Raises:
        MedvisionError: missing or empty manifest, a modality without a column.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise MedvisionError(f"manifest not found: {manifest}", fix="pass input=<file.csv>")
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        fields = list(reader.fieldnames or [])
    if not rows:
        raise MedvisionError(
            f"{manifest} has no rows", fix="add a header (image columns, optionally id) and a row per case"
        )
    if modalities:
        columns = []
        for m in modalities:
            names = (f"image_{m}", m, *(("image",) if len(modalities) == 1 else ()))
            found = next((c for c in names if c in fields), None)
            if found is None:
                raise MedvisionError(
                    f"{manifest} has no column for the modality {m!r} (looked for image_{m} and {m}; header: {fields})",
                    fix=f"name the image columns after the model's modalities ({', '.join(modalities)}); leave a "
                    "cell empty where a case lacks a modality",
                )
            columns.append(found)
    else:
        columns, modalities = _image_columns(fields, manifest)
    cases = []
    for row in rows:
        files = [_resolve(manifest.parent, row[c].strip()) if (row[c] or "").strip() else "" for c in columns]
        first = next((f for f in files if f), "")
        cases.append((row.get("id") or Path(first).name.split(".")[0] or f"row_{len(cases) + 1}", files))
    return list(modalities), cases


def default_label_names(top: int) -> list[str]:
    """``background, class_1, ... class_K`` for the largest label value ``top`` = K."""
    return ["background"] + [f"class_{k}" for k in range(1, top + 1)]


def _infer_label_names(label_files: list[str]) -> list[str]:
    """:func:`default_label_names` for the largest label value found in the files."""
    import numpy as np
    from monai.transforms import LoadImage

    loader = LoadImage(image_only=True)
    return default_label_names(max(int(np.asarray(loader(f)).max()) for f in label_files))
