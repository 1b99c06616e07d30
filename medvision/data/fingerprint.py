"""Dataset fingerprint: what a plan needs to know of a dataset, read once per file and cached.

Per case (in the frame the training transforms put it in: channel first, reoriented to
``axcodes``): voxel spacing, shape, the shape of the bounding box of the nonzero region (any
channel != 0, holes filled, as nnU-Net crops) and its fraction of the image, and the voxel count
of every label value. Per channel: the intensities of the foreground (label > 0 inside that box),
sampled with the same number of samples from every case (so each case weighs the same,
whatever its foreground size; the rule of nnU-Net v2's fingerprint extractor), summarised as
mean, std, median, min, max and the 0.5/99.5 percentiles. Modality and label names come from the
manifest.

Each case's summary (and its intensity samples) is cached under ``cache_dir`` keyed by its
files' fingerprint (path, size, mtime) and the settings, so a second call on unchanged files
reads no image.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medvision.data import dicom_threads
from medvision.data.records import Record

#: bump when a case summary changes: older cache entries are then ignored
CACHE_VERSION = 1
#: foreground intensity samples drawn per case and channel (with replacement)
SAMPLES_PER_CASE = 10_000


@dataclass
class CaseFingerprint:
    """What the plan needs of one case (axes in the reoriented frame).

    Args:
        id: the case id.
        spacing: voxel size in mm per spatial axis.
        shape: image shape (spatial axes).
        shape_after_crop: shape of the nonzero region's bounding box.
        relative_size: voxels of that box / voxels of the image.
        label_voxels: voxel count of each label value 0..K-1 (whole image).
        seconds: time it took to read and summarise the case (a planning estimate of load cost).
    """

    id: str
    spacing: list[float]
    shape: list[int]
    shape_after_crop: list[int]
    relative_size: float
    label_voxels: list[int]
    seconds: float = 0.0


@dataclass
class ChannelIntensity:
    """Foreground intensity statistics of one channel over the dataset (equal weight per case)."""

    mean: float
    std: float
    median: float
    min: float
    max: float
    p00_5: float
    p99_5: float


@dataclass
class DatasetFingerprint:
    """Fingerprint of a labelled dataset (see module docstring).

    Args:
        name: dataset name.
        modalities: one name per channel (``CT`` selects CT normalisation in the planner).
        label_names: name of each label value, background first.
        axcodes: orientation the spacings and shapes are expressed in.
        cases: one :class:`CaseFingerprint` per case.
        intensity: one :class:`ChannelIntensity` per channel.
    """

    name: str
    modalities: list[str]
    label_names: list[str]
    axcodes: str
    cases: list[CaseFingerprint]
    intensity: list[ChannelIntensity] = field(default_factory=list)

    @property
    def spacings(self) -> np.ndarray:
        """(cases, axes) voxel sizes in mm."""
        return np.array([c.spacing for c in self.cases], dtype=float)

    @property
    def shapes_after_crop(self) -> np.ndarray:
        """(cases, axes) shapes of the nonzero bounding boxes."""
        return np.array([c.shape_after_crop for c in self.cases], dtype=float)

    @property
    def median_spacing(self) -> list[float]:
        """Per-axis median voxel size."""
        return [float(v) for v in np.median(self.spacings, axis=0)]

    @property
    def median_shape_after_crop(self) -> list[float]:
        """Per-axis median shape of the nonzero bounding box."""
        return [float(v) for v in np.median(self.shapes_after_crop, axis=0)]

    @property
    def median_relative_size(self) -> float:
        """Median fraction of the image kept by cropping to the nonzero region."""
        return float(np.median([c.relative_size for c in self.cases]))

    @property
    def label_fractions(self) -> dict[str, float]:
        """Fraction of all voxels holding each label."""
        counts = np.sum([c.label_voxels for c in self.cases], axis=0).astype(float)
        total = counts.sum() or 1.0
        return {name: float(n / total) for name, n in zip(self.label_names, counts, strict=False)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with the medians and label fractions)."""
        out = asdict(self)
        out["median_spacing"] = self.median_spacing
        out["median_shape_after_crop"] = self.median_shape_after_crop
        out["median_relative_size"] = self.median_relative_size
        out["label_fractions"] = self.label_fractions
        return out


def nonzero_box(image: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the nonzero region of a channel-first image (any channel != 0, holes filled).

    An image with no nonzero voxel keeps its whole extent.
    """
    from scipy.ndimage import binary_fill_holes

    mask = binary_fill_holes(np.any(image != 0, axis=0))
    if not mask.any():
        return tuple(slice(0, n) for n in image.shape[1:])
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _file_key(paths: Sequence[str]) -> list[list[Any]]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def _files(record: Record) -> list[str]:
    image = record["image"]
    return [*(image if isinstance(image, (list, tuple)) else [image]), record["label"]]


@functools.lru_cache(maxsize=4)
def _loader(axcodes: str) -> Any:
    """Load (modalities on different grids resampled onto the first's), channel first, reorient:
    the start of the training transforms (built once: MONAI's readers announce themselves when
    constructed)."""
    from monai.transforms import Compose, EnsureChannelFirstd, Orientationd

    from medvision.data.multimodal import LoadModalitiesd

    return Compose(
        [
            LoadModalitiesd(keys=["image", "label"], image_only=True),  # modalities on the first one's grid
            EnsureChannelFirstd(keys=["image", "label"]),
            Orientationd(keys=["image", "label"], axcodes=axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        ]
    )


def _read_case(record: Record, axcodes: str) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Channel-first image and label, reoriented as the training transforms do, and the spacing."""
    data = _loader(axcodes)({"image": record["image"], "label": record["label"]})
    image, label = data["image"], data["label"]
    spacing = [float(v) for v in np.asarray(image.pixdim)]
    return np.asarray(image.array, dtype=np.float32), np.asarray(label.array), spacing


def case_fingerprint(record: Record, axcodes: str, num_classes: int, samples: int, seed: int) -> tuple[Any, Any]:
    """Summarise one case: ``(CaseFingerprint, foreground samples (channels, samples) or None)``."""
    start = time.perf_counter()
    image, label, spacing = _read_case(record, axcodes)
    box = nonzero_box(image)
    cropped = image[(slice(None), *box)]
    foreground = label[(0, *box)] > 0
    counts = np.bincount(np.clip(label.astype(np.int64).ravel(), 0, None), minlength=num_classes)[:num_classes]
    shape_after_crop = [s.stop - s.start for s in box]
    fg_samples = None
    if foreground.any():
        rng = np.random.default_rng([seed, int(hashlib.sha1(record["id"].encode()).hexdigest()[:8], 16)])
        picks = rng.integers(0, int(foreground.sum()), samples)
        fg_samples = np.stack([channel[foreground][picks] for channel in cropped]).astype(np.float32)
    case = CaseFingerprint(
        id=str(record["id"]),
        spacing=spacing,
        shape=[int(n) for n in image.shape[1:]],
        shape_after_crop=shape_after_crop,
        relative_size=float(np.prod(shape_after_crop) / np.prod(image.shape[1:])),
        label_voxels=[int(n) for n in counts],
        seconds=time.perf_counter() - start,
    )
    return case, fg_samples


class _CaseCache:
    """One ``.npz`` per case under ``folder``, named by the hash of its files and settings."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder else None

    def _path(self, record: Record, settings: dict[str, Any]) -> Path | None:
        if self.folder is None:
            return None
        key = json.dumps([CACHE_VERSION, _file_key(_files(record)), settings], sort_keys=True)
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"

    def get(self, record: Record, settings: dict[str, Any]) -> tuple[Any, Any] | None:
        path = self._path(record, settings)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as npz:
                case = CaseFingerprint(**json.loads(str(npz["case"])))
                case.id = str(record["id"])
                return case, (npz["samples"] if npz["samples"].size else None)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is recomputed

    def put(self, record: Record, settings: dict[str, Any], case: CaseFingerprint, samples: Any) -> None:
        path = self._path(record, settings)
        if path is None:
            return
        from medvision.utils.io import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(
            buffer,
            case=np.array(json.dumps(asdict(case))),
            samples=samples if samples is not None else np.zeros((0, 0), np.float32),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())


def channel_intensity(values: np.ndarray) -> ChannelIntensity:
    """Summary statistics of one channel's pooled foreground samples."""
    values = values.astype(np.float64)
    return ChannelIntensity(
        mean=float(values.mean()),
        std=float(values.std()),
        median=float(np.median(values)),
        min=float(values.min()),
        max=float(values.max()),
        p00_5=float(np.percentile(values, 0.5)),
        p99_5=float(np.percentile(values, 99.5)),
    )


def fingerprint(
    records: Sequence[Record],
    modalities: Sequence[str],
    label_names: Sequence[str],
    name: str = "dataset",
    axcodes: str = "RAS",
    cache_dir: str | Path | None = None,
    samples_per_case: int = SAMPLES_PER_CASE,
    seed: int = 1234,
    workers: int = 2,
    progress: bool = True,
) -> DatasetFingerprint:
    """The fingerprint of ``records`` (see module docstring); cases already cached are not read.

    Args:
        records: the cases (``image``: a path or one path per channel, ``label``, ``id``).
        modalities: one name per channel.
        label_names: name of each label value, background first.
        name: the dataset's name.
        axcodes: orientation of the training transforms (spacings and shapes are given in it).
        cache_dir: folder caching each case's summary (``None``: no cache).
        samples_per_case: foreground intensity samples per case and channel.
        seed: seed of the intensity sampling.
        workers: threads reading cases.
        progress: show a progress bar while cases are read.
    """
    settings = {"axcodes": axcodes, "samples": samples_per_case, "seed": seed, "classes": len(label_names)}
    cache = _CaseCache(cache_dir)
    results: list[tuple[Any, Any] | None] = [cache.get(r, settings) for r in records]
    todo = [i for i, r in enumerate(results) if r is None]

    def work(i: int) -> tuple[Any, Any]:
        out = case_fingerprint(records[i], axcodes, len(label_names), samples_per_case, seed)
        cache.put(records[i], settings, *out)
        return out

    if todo:
        dicom_threads.install()
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            jobs = pool.map(work, todo)
            if progress:
                from rich.progress import track

                jobs = track(jobs, total=len(todo), description=f"fingerprint of {name}", transient=True)
            for i, out in zip(todo, jobs, strict=True):
                results[i] = out
    cases = [r[0] for r in results if r is not None]
    pooled = [r[1] for r in results if r is not None and r[1] is not None]
    intensity = []
    if pooled:
        stacked = np.concatenate(pooled, axis=1)
        intensity = [channel_intensity(stacked[c]) for c in range(stacked.shape[0])]
    return DatasetFingerprint(name, list(modalities), list(label_names), axcodes, cases, intensity)
