"""Pre-flight data audit: check every case before training and report all problems at once.

In the spirit of nnU-Net's dataset integrity check, :func:`audit` looks at every image/label
pair a manifest lists and at the manifest and split as a whole. A case's image is one file
(a 4D file holds its channels on the last axis) or one file per channel (nnU-Net's
``<case>_0000``, ``<case>_0001``, ...); each channel file is checked on its own (exists, reads,
lies on the label's grid, finite, ...) and the channels of all of them together are counted
against the modalities. With ``resample_channels`` (a CSV manifest's modality columns, which
:class:`medvision.data.multimodal.LoadModalitiesd` resamples onto the first modality's grid) only
the first modality's file must lie on the label's grid; every other one must overlap it in
world space:

========== ======== ================================================================
check      severity what it catches
========== ======== ================================================================
missing    error    a file the manifest names does not exist, or an empty image cell (a
                    modality the case lacks; the modality is named)
readable   error    a truncated or corrupt file (NIfTI through nibabel, other formats
                    through MONAI's ``LoadImage``)
dims       error    a label map with another dimensionality than ``data.spatial_dims``
shape      error    image (or a channel file) and label grids differ
channels   error    the image's channel count (over its channel files) differs from the
                    declared modalities
affine     error    image and label affines differ beyond a tolerance (mm)
overlap    error    a modality whose field of view (bounding box in mm) does not intersect
                    the first modality's (``resample_channels`` only)
spacing    error    a zero, negative or non-finite voxel size (warning: above ``max_spacing``)
finite     error    NaN or Inf voxels in the image or the label map
labels     error    label values that are not integers or outside ``0..K-1``
empty      warning  a label map holding background only
constant   warning  an image holding one value only
unique     error    one file listed twice (warning: two cases with the same id)
leakage    error    one file, one subject or identical image content in two splits
identifiers warning DICOM header fields that identify the patient, NIfTI free text
                    (error with ``require_deidentified``; :mod:`medvision.data.privacy`)
========== ======== ================================================================

Errors make a case unusable (the DataModule stops, or drops the case with
``data.on_invalid=skip``); warnings are reported and the case is kept. What is read from each
file (shape, affine, value statistics) is cached by file fingerprint (path, size, mtime), so
a second audit of unchanged files reads no image data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medvision.data import dicom_threads
from medvision.data.records import Record, default_label_names, record_files
from medvision.utils.errors import MedvisionError

Severity = Literal["error", "warning"]

#: bump when the per-file summary changes: older cache files are then ignored
CACHE_VERSION = 1
#: distinct label values kept in a file's summary (more means the file is no label map)
MAX_LABEL_VALUES = 256
#: split names in the order whose first occurrence of a leaked file is kept
_SPLIT_ORDER = ("train", "val", "test")
_NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz", ".mgh")

_FIX = {
    "missing": "put the file there, or correct or remove this entry of the manifest",
    "missing_modality": "put the modality's file there (or correct its path in the manifest); a case lacking a "
    "modality cannot train: remove it, or set data.on_invalid=skip to train without it "
    "(medvision-predict missing_modalities=zero predicts such a case with that channel zeroed)",
    "readable": "the file is truncated or corrupt: export or download it again, or remove the case",
    "dims": "set data.spatial_dims to the files' dimensionality, or convert the files",
    "shape": "the label map must lie on the image's grid: resample it onto the image (nearest neighbour)",
    "shape_first": "the label map must lie on the FIRST modality's grid (the others are resampled onto it): "
    "resample the label onto that image (nearest neighbour), or list that image's modality first",
    "overlap": "the modalities of a case must image the same region: check the file belongs to this case "
    "and its header's affine (origin, orientation, mm)",
    "channels": "declare one modality per image channel (dataset.json 'modality' or 'channel_names', "
    "one image_<modality> CSV column each), or fix the image",
    "affine": "save the label map with the image's affine (header), or resample it onto the image",
    "spacing": "repair the voxel size in the file's header (pixdim / affine, in mm)",
    "spacing_large": "check the header's units: medvision expects voxel sizes in mm",
    "finite": "replace NaN/Inf voxels when exporting (e.g. with 0), or remove the case",
    "labels_integer": "save label maps as integers (nearest-neighbour resampling, no interpolation)",
    "labels_range": "remap the values, or declare every label (dataset.json 'labels' or data.label_names)",
    "empty": "expected for a case without foreground; otherwise check the label file",
    "constant": "check the export: the image holds a single value",
    "unique": "list each file once in the manifest",
    "unique_id": "give each case its own id (predictions are named by id)",
    "leakage": "a file, subject or scan must belong to one split only: fix the manifest's subject column/ids",
}


@dataclass
class Problem:
    """One finding of the audit.

    Args:
        severity: ``error`` (the case is unusable) or ``warning`` (reported, kept).
        check: the check that found it (see the module docstring).
        message: what is wrong.
        fix: how to fix it.
        case: the case id (empty for findings about the whole dataset).
        file: the file concerned (absolute path), if any.
        split: the case's split, if known.
        index: the case's record index (``None`` for findings about the whole dataset).
    """

    severity: Severity
    check: str
    message: str
    fix: str
    case: str = ""
    file: str = ""
    split: str = ""
    index: int | None = None


@dataclass
class AuditReport:
    """Everything :func:`audit` found, with what it looked at.

    Args:
        num_cases: records audited.
        num_files: files named by them.
        label_names: the label names checked against (inferred when none were declared).
        problems: every finding, errors and warnings, in record order.
        files_read: files whose data were read during this audit.
        files_cached: files whose summary came from the cache (not read).
        seconds: wall time of the audit.
        source: the manifest audited.
        case_ids: the id of each record (index = record index).
    """

    num_cases: int
    num_files: int
    label_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    files_read: int = 0
    files_cached: int = 0
    seconds: float = 0.0
    source: str = ""
    case_ids: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make a case unusable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems that are reported but keep the case."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """``True`` when no error was found (warnings allowed)."""
        return not self.errors

    @property
    def bad_indices(self) -> list[int]:
        """Record indices of the cases with at least one error (dropped by ``on_invalid=skip``)."""
        return sorted({p.index for p in self.errors if p.index is not None})

    @property
    def bad_cases(self) -> list[str]:
        """Ids of the cases with at least one error."""
        return [self.case_ids[i] for i in self.bad_indices]

    def to_dict(self, policy: str | None = None) -> dict[str, Any]:
        """The report as JSON-ready data (what ``data_audit.json`` holds)."""
        return {
            "source": self.source,
            "ok": self.ok,
            "policy": policy,
            "num_cases": self.num_cases,
            "num_files": self.num_files,
            "num_errors": len(self.errors),
            "num_warnings": len(self.warnings),
            "bad_cases": self.bad_cases,
            "dropped_cases": self.bad_cases if policy == "skip" else [],
            "label_names": self.label_names,
            "files_read": self.files_read,
            "files_cached": self.files_cached,
            "seconds": round(self.seconds, 4),
            "problems": [{k: v for k, v in asdict(p).items() if k != "index"} for p in self.problems],
        }

    def write(self, path: str | os.PathLike[str], policy: str | None = None) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (temporary file + rename)."""
        from medvision.utils.io import atomic_write_json

        return atomic_write_json(path, self.to_dict(policy))

    def summary(self) -> str:
        """One line: cases, files, problem counts, time and cache use."""
        found = (
            f"{len(self.errors)} error(s) in {len(self.bad_indices)} case(s), {len(self.warnings)} warning(s)"
            if self.problems
            else "no problems"
        )
        return (
            f"data audit of {self.num_cases} cases ({self.num_files} files): {found} "
            f"[{self.seconds:.2f} s, {self.files_read} files read, {self.files_cached} cached]"
        )

    def print(self, root: str | Path | None = None) -> None:
        """Print the summary line and, if anything was found, a table of every problem.

        The table names case, file, check and problem; the fix of each check follows the
        table once (the JSON report repeats it for every problem).

        Args:
            root: file names are shown relative to this folder when inside it.
        """
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console()
        if not self.problems:
            console.print(escape(self.summary()), highlight=False)
            return
        table = Table(title=escape(self.summary()), title_justify="left")
        for column in ("", "case", "file", "check", "problem"):
            table.add_column(column, overflow="fold")
        fixes: dict[str, str] = {}
        for p in self.problems:
            mark = "[bold red]error[/]" if p.severity == "error" else "[yellow]warning[/]"
            table.add_row(mark, escape(p.case), escape(_display(p.file, root)), p.check, escape(p.message))
            fixes.setdefault(f"{p.check} ({p.severity})", p.fix)
        console.print(table)
        for check, fix in fixes.items():
            console.print(f"  fix {escape(check)}: {escape(fix)}", highlight=False)

    def error(self, report_path: str | None = None) -> MedvisionError:
        """A :class:`MedvisionError` counting the errors and naming every bad file."""
        lines = [
            f"  {p.case or '(dataset)'}: {p.check}: {p.message}" + (f" [{p.file}]" if p.file else "")
            for p in self.errors
        ]
        where = f"; report: {report_path}" if report_path else ""
        return MedvisionError(
            f"the data audit found {len(self.errors)} error(s) in {len(self.bad_indices)} of {self.num_cases} cases "
            f"of {self.source}{where}:\n" + "\n".join(lines),
            fix="repair or remove these cases, or set data.on_invalid=skip to train without them "
            "(check a dataset alone: medvision-data validate <overrides>)",
        )


def _display(file: str, root: str | Path | None) -> str:
    if not file or root is None:
        return file
    try:
        return str(Path(file).relative_to(root))
    except ValueError:
        return file


# --------------------------------------------------------------------------- file summaries
def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Voxel data (scaled as stored) and the 4x4 affine of an image file."""
    if path.lower().endswith(_NIBABEL_SUFFIXES):
        import nibabel as nib

        img = nib.load(path)
        return np.asanyarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)
    from monai.transforms import LoadImage

    img = LoadImage(image_only=True)(path)
    affine = getattr(img, "affine", None)
    return np.asarray(img), (np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64))


def summarize_file(path: str, role: str) -> dict[str, Any]:
    """What the audit needs from one file, read once (and then cached).

    Args:
        path: the file.
        role: ``image`` or ``label`` (labels get their distinct values, images a content hash).

    Returns:
        ``{"error": ...}`` if the file cannot be read, otherwise its shape, affine and value
        statistics (JSON-ready).
    """
    try:
        data, affine = _read(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file for the user
        first = (str(err).splitlines() or [""])[0]
        return {"error": f"{type(err).__name__}: {first}"[:300]}
    out: dict[str, Any] = {"shape": list(data.shape), "affine": affine.tolist(), "dtype": str(data.dtype)}
    floating = np.issubdtype(data.dtype, np.floating)
    finite = np.isfinite(data) if floating else None
    out["nonfinite"] = int(data.size - np.count_nonzero(finite)) if finite is not None else 0
    values = data[finite] if finite is not None and out["nonfinite"] else data
    out["min"] = float(values.min()) if values.size else None
    out["max"] = float(values.max()) if values.size else None
    if role == "label":
        integer = not floating or bool(np.all(values == np.round(values)))
        out["integer"] = integer
        if integer and values.size:
            distinct = _distinct_integers(values, int(out["min"]), int(out["max"]))
            out["values"] = [int(v) for v in distinct[:MAX_LABEL_VALUES]]
            out["num_values"] = int(distinct.size)
    else:
        digest = hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16)
        digest.update(str(data.shape).encode())
        out["content"] = digest.hexdigest()
    return out


def _distinct_integers(values: np.ndarray, low: int, high: int, chunk: int = 1 << 22) -> np.ndarray:
    """Sorted distinct values of an integer-valued array (bincount in chunks: fast, little memory)."""
    flat = values.reshape(-1)
    if low < 0 or high >= 1 << 16:
        return np.unique(flat).astype(np.int64)
    counts = np.zeros(high + 1, dtype=np.int64)
    for start in range(0, flat.size, chunk):
        counts += np.bincount(flat[start : start + chunk].astype(np.int64), minlength=high + 1)
    return np.flatnonzero(counts)


class _SummaryCache:
    """File summaries keyed by role and absolute path, valid while size and mtime are unchanged."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.used: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text())
                if saved.get("version") == CACHE_VERSION:
                    self.entries = dict(saved.get("files", {}))
            except (OSError, ValueError, AttributeError):
                self.entries = {}  # a damaged cache is only a slower audit

    @staticmethod
    def _fingerprint(path: str) -> dict[str, int]:
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def get(self, path: str, role: str) -> dict[str, Any] | None:
        key = f"{role}:{path}"
        entry = self.entries.get(key)
        if entry is None or {k: entry.get(k) for k in ("size", "mtime_ns")} != self._fingerprint(path):
            return None
        self.used[key] = entry
        return entry["summary"]

    def put(self, path: str, role: str, summary: dict[str, Any], fingerprint: dict[str, int]) -> None:
        self.used[f"{role}:{path}"] = {**fingerprint, "summary": summary}
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not (self.dirty or set(self.used) != set(self.entries)):
            return
        from medvision.utils.io import atomic_write_json

        with contextlib.suppress(OSError):  # a read-only cache folder only costs speed
            atomic_write_json(self.path, {"version": CACHE_VERSION, "files": self.used})


def cache_file(cache_dir: str | Path, source: str | Path) -> Path:
    """The audit cache file of one manifest inside ``cache_dir``."""
    key = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(source).parent.name or 'data'}_{key}.json"


def _summaries(
    files: list[tuple[str, str]], cache: _SummaryCache, num_threads: int
) -> tuple[dict[tuple[str, str], dict[str, Any]], int]:
    """Summary of every ``(path, role)``: from the cache, or read (in threads)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    todo: list[tuple[str, str, dict[str, int]]] = []
    for path, role in files:
        hit = cache.get(path, role)
        if hit is not None:
            out[(path, role)] = hit
        else:
            todo.append((path, role, _SummaryCache._fingerprint(path)))
    if todo:
        dicom_threads.install()
        with ThreadPoolExecutor(max_workers=max(1, min(num_threads, len(todo)))) as pool:
            results = list(pool.map(lambda t: summarize_file(t[0], t[1]), todo))
        for (path, role, fingerprint), summary in zip(todo, results, strict=True):
            out[(path, role)] = summary
            cache.put(path, role, summary, fingerprint)
    return out, len(todo)


# --------------------------------------------------------------------------- checks
def _spacing(affine: np.ndarray, ndim: int) -> list[float]:
    """Voxel size (mm) along the first ``min(ndim, 3)`` axes: the norms of the affine's columns."""
    return [float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[: min(ndim, 3)]]


def world_box(shape: Sequence[int], affine: Any, ndim: int) -> np.ndarray:
    """``(2, 3)`` lowest and highest world coordinates (mm) of a grid's field of view: the corners
    of its first ``ndim`` axes' voxels (voxel edges, not centres) through the affine."""
    affine = np.asarray(affine, dtype=np.float64)
    corners = np.array(np.meshgrid(*[[-0.5, int(n) - 0.5] for n in shape[:ndim]], indexing="ij")).reshape(ndim, -1)
    index = np.zeros((4, corners.shape[1]))
    index[:ndim], index[3] = corners, 1.0
    world = (affine @ index)[:3]
    return np.stack([world.min(axis=1), world.max(axis=1)])


def _pair_problems(
    images: list[dict[str, Any]],
    lab: dict[str, Any],
    num_classes: int,
    num_channels: int,
    spatial_dims: int | None,
    affine_tol: float,
    max_spacing: float,
    names: Sequence[str] | None = None,
    resample_channels: bool = False,
) -> list[tuple[str, str, int | None, str]]:
    """``(severity, check, file, message)`` for one case whose files are all readable.

    Args:
        images: the summary of each image file (one, or one per channel).
        lab: the label map's summary.
        names: what to call each image file (default: ``channel file <k>``, or ``image``).
        resample_channels: only the first image file must lie on the label's grid; the others
            must overlap it in world space (they are resampled onto it).

    ``file`` is the index of the image file concerned, or ``None`` for the label map.
    """
    found: list[tuple[str, str, int | None, str]] = []
    lshape = tuple(lab["shape"])
    several = len(images) > 1
    names = list(names or [f"channel file {k}" if several else "image" for k in range(len(images))])
    if spatial_dims is not None and len(lshape) != spatial_dims:
        found.append(
            (
                "error",
                "dims",
                None,
                f"the label map is {len(lshape)}-D {list(lshape)}, data.spatial_dims={spatial_dims}",
            )
        )
    on_grid: list[int] = []  # image files on the label's grid
    channels: list[int] = []
    for k, img in enumerate(images):
        ishape = tuple(img["shape"])
        if resample_channels and k > 0 and len(ishape) >= len(lshape):
            channels.append(int(np.prod(ishape[len(lshape) :], dtype=np.int64)))
            first = images[0]
            box, ref = (
                world_box(ishape, img["affine"], len(lshape)),
                world_box(first["shape"], first["affine"], len(lshape)),
            )
            if np.any(box[0] > ref[1] + affine_tol) or np.any(ref[0] > box[1] + affine_tol):
                shown = [np.round(b, 1).tolist() for b in (box, ref)]
                message = (
                    f"{names[k]} and {names[0]} do not overlap in world space: fields of view "
                    f"{shown[0][0]}..{shown[0][1]} mm and {shown[1][0]}..{shown[1][1]} mm"
                )
                found.append(("error", "overlap", k, message))
            continue
        if len(ishape) < len(lshape) or ishape[: len(lshape)] != lshape:
            hint = " (the label map must lie on the first modality's grid)" if resample_channels else ""
            message = f"{names[k]} shape {list(ishape)} and label shape {list(lshape)} differ{hint}"
            found.append(("error", "shape", k if several else None, message))
        else:
            on_grid.append(k)
            channels.append(int(np.prod(ishape[len(lshape) :], dtype=np.int64)))
    if len(channels) == len(images) and sum(channels) != num_channels:
        held = (
            f"the image has {channels[0]} channel(s) {list(images[0]['shape'])}"
            if not several
            else f"the {len(images)} image files hold {sum(channels)} channel(s) ({'+'.join(map(str, channels))})"
        )
        found.append(("error", "channels", 0, f"{held}, the dataset declares {num_channels}"))
    for k in on_grid:
        diff = float(np.max(np.abs(np.asarray(images[k]["affine"]) - np.asarray(lab["affine"]))))
        if not diff <= affine_tol:
            message = f"{names[k]} and label affines differ by up to {diff:.4g} (tolerance {affine_tol:g})"
            if resample_channels:
                message += " (the label map must lie on the first modality's grid)"
            found.append(("error", "affine", k if several else None, message))
    prefix = [f"{name}: " if several else "" for name in names]
    for k, img in enumerate(images):
        spacing = _spacing(np.asarray(img["affine"]), len(lshape))
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            found.append(("error", "spacing", k, f"{prefix[k]}voxel spacing {spacing} is not positive and finite"))
        elif max(spacing) > max_spacing:
            shown = [round(s, 3) for s in spacing]
            found.append(("warning", "spacing", k, f"{prefix[k]}voxel spacing {shown} mm exceeds {max_spacing:g} mm"))
    for k, img in enumerate(images):
        where = names[k] if several else "the image"
        if img["nonfinite"]:
            found.append(("error", "finite", k, f"{img['nonfinite']} NaN/Inf voxel(s) in {where}"))
        elif img["min"] is not None and img["min"] == img["max"]:
            found.append(("warning", "constant", k, f"{where} is constant ({img['min']:g})"))
    if lab["nonfinite"]:
        found.append(("error", "finite", None, f"{lab['nonfinite']} NaN/Inf voxel(s) in the label map"))
    elif not lab.get("integer", True):
        found.append(
            (
                "error",
                "labels",
                None,
                "the label map holds non-integer values "
                f"(range {lab['min']:g}..{lab['max']:g}; saved with interpolation?)",
            )
        )
    else:
        values = lab.get("values", [])
        bad = [v for v in values if not 0 <= v < num_classes]
        if bad or lab.get("num_values", 0) > MAX_LABEL_VALUES:
            shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
            found.append(
                (
                    "error",
                    "labels",
                    None,
                    f"label values {shown} outside 0..{num_classes - 1} (the dataset declares {num_classes} labels)",
                )
            )
        elif values and max(values) == 0:
            found.append(("warning", "empty", None, "the label map is empty (background only)"))
    return found


def audit(
    records: Sequence[Record],
    label_names: Sequence[str] | None,
    splits: Mapping[str, Sequence[int]] | None = None,
    num_channels: int = 1,
    spatial_dims: int | None = None,
    cache_dir: str | Path | None = None,
    source: str = "",
    affine_tol: float = 1e-3,
    max_spacing: float = 20.0,
    num_threads: int | None = None,
    modalities: Sequence[str] | None = None,
    resample_channels: bool = False,
    require_deidentified: bool = False,
) -> AuditReport:
    """Check every case of a dataset and return all problems at once.

    Args:
        records: the cases (``image``: a file or a list of channel files, ``label``, ``id``,
            ``subject``; absolute paths).
        label_names: declared label names (value = index); ``None`` infers ``background,
            class_1..class_K`` from the largest value found (and checks integers and signs only).
        splits: record indices of each split (``group_split``'s output), for the leakage checks.
        num_channels: image channels the dataset declares (its modalities).
        spatial_dims: 2 or 3; label maps of another dimensionality are errors (``None``: no check).
        cache_dir: folder of the per-file summary cache (``None``: no cache).
        source: the manifest (names the report and keys the cache file).
        affine_tol: largest allowed difference between image and label affine entries (mm).
        max_spacing: voxel sizes above this (mm) are reported as warnings.
        num_threads: threads reading files (default: up to 4, at most the CPU count).
        modalities: the name of each channel file's modality (messages name them).
        resample_channels: the channel files are resampled onto the first one's grid when
            loaded (a CSV manifest's modality columns): only the first must lie on the label's
            grid, the others must overlap it in world space.
        require_deidentified: identifying header fields are errors (default: warnings).

    Returns:
        The :class:`AuditReport`.
    """
    start = time.perf_counter()
    records = list(records)
    split_of: dict[int, str] = {i: name for name, idx in (splits or {}).items() for i in idx}
    problems: list[Problem] = []

    def add(severity: str, check: str, index: int | None, message: str, file: str = "", fix: str | None = None) -> None:
        case = records[index]["id"] if index is not None else ""
        problems.append(
            Problem(
                severity,
                check,
                message,
                fix or _FIX[check],
                str(case),
                file,  # type: ignore[arg-type]
                split_of.get(index, "") if index is not None else "",
                index,
            )
        )

    # 1. files exist; read (or recall) what is needed from each
    files = [{key: record_files(r, key) for key in ("image", "label")} for r in records]
    present: list[tuple[str, str]] = []

    def modality(k: int, what: str = "channel") -> str:
        """``modality t2 (channel 1)``, or ``channel 1`` when the channels are unnamed."""
        name = modalities[k] if modalities is not None and k < len(modalities) and len(modalities) > 1 else ""
        return f"modality {name} ({what} {k})" if name else f"{what} {k}"

    for i, case in enumerate(files):
        for key, paths in case.items():
            for k, path in enumerate(paths):
                several = key == "image" and len(paths) > 1
                if not path:
                    which = f"{modality(k)} of the case" if several else f"the {key}"
                    fix = _FIX["missing_modality"] if several else None
                    add("error", "missing", i, f"{which} is missing: its manifest cell is empty", str(source), fix)
                elif Path(path).is_file() or Path(path).is_dir():
                    present.append((path, key))
                elif several:
                    message = f"the image file of {modality(k)} does not exist"
                    add("error", "missing", i, message, path, _FIX["missing_modality"])
                else:
                    add("error", "missing", i, f"the {key} file does not exist", path)
    cache = _SummaryCache(cache_file(cache_dir, source or "records") if cache_dir else None)
    summaries, files_read = _summaries(list(dict.fromkeys(present)), cache, num_threads or min(4, os.cpu_count() or 1))
    cache.save()

    if label_names is None:
        tops = [
            int(max(s.get("values") or [0]))
            for (p, role), s in summaries.items()
            if role == "label" and "error" not in s
        ]
        label_names = default_label_names(max(tops, default=1))
    num_classes = len(label_names)

    # 2. each case on its own
    for i, case in enumerate(files):
        read = {key: [summaries.get((path, key)) for path in paths] for key, paths in case.items()}
        for key, found in read.items():
            for k, summary in enumerate(found):
                if summary is not None and "error" in summary:
                    which = f"the image (channel {k})" if len(found) > 1 else f"the {key}"
                    add("error", "readable", i, f"cannot read {which}: {summary['error']}", case[key][k])
        usable = {key: [s for s in found if s is not None and "error" not in s] for key, found in read.items()}
        if any(len(usable[key]) < len(case[key]) for key in case):
            continue
        several = len(case["image"]) > 1
        names = [modality(k, "channel file") for k in range(len(case["image"]))] if several else None
        checked = _pair_problems(
            usable["image"],
            usable["label"][0],
            num_classes,
            num_channels,
            spatial_dims,
            affine_tol,
            max_spacing,
            names=names,
            resample_channels=resample_channels and several,
        )
        for severity, check, which, message in checked:
            fix = _FIX.get(f"{check}_large" if severity == "warning" and check == "spacing" else check)
            if check in ("shape", "affine") and resample_channels and several:
                fix = _FIX["shape_first"]
            if check == "labels":
                fix = _FIX["labels_integer" if "integer" in message else "labels_range"]
            add(severity, check, i, message, case["label"][0] if which is None else case["image"][which], fix)

    # 3. the manifest and the split as a whole
    _dataset_problems(records, files, split_of, summaries, add)
    from medvision.data.privacy import IDENTIFIERS_FIX, identifier_findings

    for i, file, message in identifier_findings(files):
        add("error" if require_deidentified else "warning", "identifiers", i, message, file, IDENTIFIERS_FIX)

    problems.sort(key=lambda p: (p.index if p.index is not None else len(records), p.severity != "error"))
    return AuditReport(
        num_cases=len(records),
        num_files=sum(len([f for f in case["image"] if f]) + len(case["label"]) for case in files),
        label_names=list(label_names),
        problems=problems,
        files_read=files_read,
        files_cached=len(dict.fromkeys(present)) - files_read,
        seconds=time.perf_counter() - start,
        source=str(source),
        case_ids=[str(r["id"]) for r in records],
    )


def _split_rank(split: str) -> int:
    return _SPLIT_ORDER.index(split) if split in _SPLIT_ORDER else len(_SPLIT_ORDER)


def _dataset_problems(
    records: list[Record],
    files: list[dict[str, list[str]]],
    split_of: dict[int, str],
    summaries: dict[tuple[str, str], dict[str, Any]],
    add: Any,
) -> None:
    """Duplicate entries and leakage across splits (files, subjects, identical image content).

    ``files`` holds each record's image file(s) (one per channel, or one) and label file.
    """

    def first_first(indices: list[int]) -> list[int]:
        return sorted(indices, key=lambda i: (_split_rank(split_of.get(i, "")), i))

    images = ["\n".join(case["image"]) for case in files]  # a case's image: all its channel files
    for key in ("image", "label"):
        by_file: dict[str, list[int]] = {}
        for i, case in enumerate(files):
            for file in case[key]:
                if file:  # an empty cell (a missing modality) is reported as missing
                    by_file.setdefault(file, []).append(i)
        for file, listed in by_file.items():
            indices = list(dict.fromkeys(listed))
            if len(indices) < len(listed):  # one case names the file for two of its channels
                add("error", "unique", indices[0], f"the {key} file is listed for two channels of the case", file)
            if len(indices) < 2:
                continue
            keep, *others = first_first(indices)
            for i in others:
                if key == "label" and images[i] == images[keep]:
                    continue  # the whole entry is repeated: reported once, for the image
                where, there = split_of.get(i, ""), split_of.get(keep, "")
                if where and there and where != there:
                    add(
                        "error",
                        "leakage",
                        i,
                        f"the {key} file is also case {records[keep]['id']} of the {there} split (this case: {where})",
                        file,
                    )
                else:
                    add("error", "unique", i, f"the {key} file is listed twice (also case {records[keep]['id']})", file)

    by_subject: dict[str, set[str]] = {}
    for i, r in enumerate(records):
        if i in split_of:
            by_subject.setdefault(str(r["subject"]), set()).add(split_of[i])
    for subject, names in by_subject.items():
        if len(names) > 1:
            first = min(names, key=_split_rank)
            for i, r in enumerate(records):
                if str(r["subject"]) == subject and split_of.get(i) not in (None, first):
                    add("error", "leakage", i, f"subject {subject} is in the {first} and the {split_of[i]} split")

    by_content: dict[str, list[int]] = {}
    for i, case in enumerate(files):
        channels = [summaries.get((file, "image")) or {} for file in case["image"]]
        if all("content" in c for c in channels) and any(c["min"] != c["max"] for c in channels):
            # blank images are alike, not copies
            by_content.setdefault("+".join(c["content"] for c in channels), []).append(i)
    for indices in by_content.values():
        if len({images[i] for i in indices}) < 2:
            continue  # the same file(s) listed twice: reported above
        keep, *others = first_first(indices)
        for i in others:
            where, there = split_of.get(i, ""), split_of.get(keep, "")
            if images[i] == images[keep]:
                continue
            if where and there and where != there:
                add(
                    "error",
                    "leakage",
                    i,
                    f"the image has the same voxels as case {records[keep]['id']} of the "
                    f"{there} split (a copy of one scan under two names)",
                    files[i]["image"][0],
                )
            else:
                add(
                    "warning",
                    "unique",
                    i,
                    f"the image has the same voxels as case {records[keep]['id']} (a copy of one scan?)",
                    files[i]["image"][0],
                    _FIX["leakage"],
                )

    by_id: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_id.setdefault(str(r["id"]), []).append(i)
    for case_id, indices in by_id.items():
        for i in indices[1:]:
            if images[i] != images[indices[0]]:
                add("warning", "unique", i, f"case id {case_id} is used by {len(indices)} cases", fix=_FIX["unique_id"])
