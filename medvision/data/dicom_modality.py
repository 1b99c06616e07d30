"""``DicomModalityDataModule``: classify the imaging modality of real DICOM frames (an offline demo).

The frames come from :mod:`medvision.data.sources.dicom_modality` (the ``pydicom-data``
package and pydicom's own test files, decoded through one loading path). The label is the
DICOM Modality tag mapped to a class (``classes``: CT, MR, XR = CR/DX, US by default). The
split is drawn per class over image *identities* (SOP/Series Instance UID and near-duplicate
pixels), so no picture, in any encoding, is in two splits. Classes with fewer than
``min_identities`` identities are dropped (each split needs one). There are only a handful of
distinct pictures per class: this is a pipeline and IO demo, not an accuracy claim.

The decoded index is cached in ``cache_dir`` (one ``.npz`` per file list and options).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medvision.data.arrays import ArrayCacheMode, ArrayClassificationDataModule
from medvision.data.loaders import LoaderKind
from medvision.data.sources.dicom_modality import (
    DEFAULT_CLASSES,
    SOURCES,
    DicomFrame,
    DicomIndex,
    DicomSource,
    class_of,
    fingerprint,
    index_dicom,
)
from medvision.data.splits import SPLITS, group_split
from medvision.utils.errors import MedvisionError


def load_or_build_index(cache_dir: Path | None, sources: Sequence[str], **options: Any) -> DicomIndex:
    """:func:`index_dicom` with an ``.npz`` cache in ``cache_dir`` (``None``: no cache)."""
    path = None
    if cache_dir is not None:
        path = cache_dir / f"dicom_modality_{fingerprint(sources, **options)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as saved:
                frames = [DicomFrame(**f) for f in json.loads(str(saved["frames"]))]
                return DicomIndex(frames, saved["images"], json.loads(str(saved["skipped"])))
    index = index_dicom(sources, **options)
    if path is not None:
        from medvision.utils.io import atomic_output

        with atomic_output(path) as tmp:
            np.savez_compressed(
                tmp,
                images=index.images,
                frames=json.dumps([asdict(f) for f in index.frames]),
                skipped=json.dumps(index.skipped),
            )
    return index


class DicomModalityDataModule(ArrayClassificationDataModule):
    """Modality classification of real DICOM frames, split by image identity.

    Args:
        sources: installed DICOM sources (``pydicom_data``, ``pydicom``).
        classes: class name -> DICOM Modality values (e.g. ``XR: [CR, DX]``); order = label index.
        size: side of the resized frames (pixels).
        max_frames: at most this many evenly spaced frames per multi-frame file.
        min_identities: a class is used only with at least this many distinct images.
        val_fraction: fraction of each class's identities for validation (at least one).
        test_fraction: fraction of each class's identities for test (at least one).
        split_seed: seed of the identity shuffle.
        near_duplicate: thumbnail correlation from which two frames are one picture.
        group_by_series: also keep the files of one Series Instance UID together.
        spatial_dims: what the config declares for the nets; must be 2.
        cache_dir: folder of the decoded-index cache (``None``: decode every time).
        transforms, as_rgb, batch_size, val_batch_size, num_workers, pin_memory,
            balanced_sampler, cache, imbalance, synthetic, counts_report, loader: see
            :class:`medvision.data.arrays.ArrayClassificationDataModule`.
    """

    def __init__(
        self,
        sources: Sequence[DicomSource] = SOURCES,
        classes: Mapping[str, Sequence[str]] | None = None,
        size: int = 64,
        max_frames: int | None = 16,
        min_identities: int = 3,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        near_duplicate: float = 0.97,
        group_by_series: bool = True,
        spatial_dims: Literal[2] | None = 2,
        cache_dir: str | None = None,
        transforms: Mapping[str, Any] | None = None,
        as_rgb: bool = False,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        balanced_sampler: bool = False,
        cache: ArrayCacheMode = "none",
        imbalance: Mapping[str, Any] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        counts_report: str | None = None,
        loader: LoaderKind = "torch",
    ) -> None:
        super().__init__(
            transforms=transforms,
            as_rgb=as_rgb,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            balanced_sampler=balanced_sampler,
            cache=cache,
            cache_dir=Path(cache_dir) / "dicom_modality_samples" if cache_dir else None,
            imbalance=imbalance,
            synthetic=synthetic,
            counts_report=counts_report,
            loader=loader,
        )
        if spatial_dims not in (None, 2):
            raise MedvisionError(
                f"data.spatial_dims={spatial_dims} but the DICOM modality frames are 2D", fix="set data.spatial_dims=2"
            )
        if min_identities < 3:
            raise MedvisionError(
                f"data.min_identities={min_identities}: train, val and test each need an image of every class",
                fix="data.min_identities=3 (or more)",
            )
        self.sources = list(sources)
        self.classes = {str(k): [str(v) for v in vals] for k, vals in (classes or DEFAULT_CLASSES).items()}
        self.size = size
        self.max_frames = max_frames
        self.min_identities = min_identities
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.near_duplicate = near_duplicate
        self.group_by_series = group_by_series
        self.index_cache_dir = Path(cache_dir) if cache_dir else None
        self._index: DicomIndex | None = None
        self._split: dict[str, list[int]] | None = None
        self._labels: np.ndarray | None = None
        self._names: list[str] | None = None
        #: classes left out (too few distinct images) -> their identity count
        self.dropped: dict[str, int] = {}

    # -- the index and the split ---------------------------------------------------------------
    @property
    def index(self) -> DicomIndex:
        """The decoded frames of the sources (decoded once, then read from the cache)."""
        if self._index is None:
            modalities = sorted({m for values in self.classes.values() for m in values})
            self._index = load_or_build_index(
                self.index_cache_dir,
                self.sources,
                size=self.size,
                modalities=modalities,
                max_frames=self.max_frames,
                near_duplicate=self.near_duplicate,
                by_series=self.group_by_series,
            )
        return self._index

    def prepare_data(self) -> None:
        """Decode and cache the index."""
        _ = self.index

    def _build_split(self) -> None:
        frames = self.index.frames
        per_class: dict[str, list[int]] = {}
        for i, f in enumerate(frames):
            name = class_of(f.modality, self.classes)
            if name is not None:
                per_class.setdefault(name, []).append(i)
        kept = []
        for name in self.classes:
            identities = {frames[i].identity for i in per_class.get(name, [])}
            if len(identities) >= self.min_identities:
                kept.append(name)
            else:
                self.dropped[name] = len(identities)
        if len(kept) < 2:
            raise MedvisionError(
                f"only {kept} of the DICOM classes {list(self.classes)} have {self.min_identities} distinct images",
                fix="install pydicom-data, use data.sources=[pydicom_data,pydicom], or change data.classes",
            )
        split: dict[str, list[int]] = {s: [] for s in SPLITS}
        labels = np.full(len(frames), -1, dtype=np.int64)
        for label, name in enumerate(kept):
            members = per_class[name]
            chosen = group_split(
                [frames[i].identity for i in members], self.val_fraction, self.test_fraction, seed=self.split_seed
            )
            for s in SPLITS:
                split[s].extend(members[k] for k in chosen[s])
            labels[members] = label
        self._split = {s: sorted(v) for s, v in split.items()}
        self._labels, self._names = labels, kept

    @property
    def splits(self) -> dict[str, list[DicomFrame]]:
        """The frames of each split."""
        if self._split is None:
            self._build_split()
        assert self._split is not None
        return {s: [self.index.frames[i] for i in self._split[s]] for s in SPLITS}

    # -- ArrayClassificationDataModule ---------------------------------------------------------
    @property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{split: (images (N, size, size) in 0..1, labels (N, 1))}``."""
        if self._split is None:
            self._build_split()
        assert self._split is not None and self._labels is not None
        return {s: (self.index.images[idx], self._labels[idx].reshape(-1, 1)) for s, idx in self._split.items()}

    def sample_ids(self, split: str) -> list[str]:
        """``<source>/<file>#<frame>`` of every sample."""
        return [f.id for f in self.splits[split]]

    @property
    def label_names(self) -> list[str]:
        """The classes with enough distinct images, in ``classes`` order."""
        if self._names is None:
            self._build_split()
        assert self._names is not None
        return list(self._names)

    @property
    def task(self) -> str:
        """``multiclass`` (``binary`` when only two classes are left)."""
        return "binary" if len(self.label_names) == 2 else "multiclass"

    @property
    def spatial_dims(self) -> int:
        """2."""
        return 2

    @property
    def reads_dicom(self) -> bool:
        """True: with ``privacy.log_ids=auto`` sample ids (``<source>/<file>#<frame>``) are pseudonyms."""
        return True

    @property
    def source_channels(self) -> int:
        """1 (colour frames are reduced to luminance)."""
        return 1

    @property
    def cache_name(self) -> str:
        """The disk cache is per file list and options."""
        return "dicom_modality_" + fingerprint(
            self.sources,
            size=self.size,
            max_frames=self.max_frames,
            classes=sorted(self.classes.items()),
            seed=self.split_seed,
        )

    def summary(self) -> dict[str, dict[str, int]]:
        """Per split and class: ``frames`` and distinct ``images`` (identities)."""
        out: dict[str, dict[str, int]] = {}
        for s, frames in self.splits.items():
            for name in self.label_names:
                members = [f for f in frames if class_of(f.modality, self.classes) == name]
                out.setdefault(s, {})[f"{name}_frames"] = len(members)
                out[s][f"{name}_images"] = len({f.identity for f in members})
        return out
