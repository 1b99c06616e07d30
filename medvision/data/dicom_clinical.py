"""The DICOM modality demo with the header's patient age and sex as clinical columns: a pipeline check.

:class:`DicomClinical` is a dataset source (``prepare``) that writes the frames of the DICOM
modality demo (:class:`medvision.data.dicom_modality.DicomModalityDataModule`: the real files of
``pydicom-data`` and pydicom's tests, decoded, resized, scaled to 0..1) as PNG files, with a CSV
whose clinical columns come from each file's header: ``age`` (``PatientAge``, ``045Y`` -> 45,
months/weeks/days as fractions of a year) and ``sex`` (``PatientSex``: F, M, O), empty where the
header has none, which is most files. The label is the modality class; the split is the demo's own
(by image identity: no picture, in any encoding, in two splits), written as ``splits.json``.

**A pipeline demo, not an accuracy claim**: a handful of distinct pictures per class, and the
header values say more about which test file set a frame came from than about a patient. It shows
real headers with real gaps (missing values, the missing indicators, a category seen in one split
only) going through the image + clinical classifier, Grad-CAM and permutation importance.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medvision.data.dicom_modality import DicomModalityDataModule
from medvision.data.sources.dicom_modality import SOURCES, source_dir
from medvision.data.splits import SPLITS

#: DICOM Age String (AS): nnnD, nnnW, nnnM or nnnY -> years per unit
_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def dicom_age(value: Any) -> float | None:
    """``PatientAge`` (DICOM AS, ``045Y``, ``006M``) in years; ``None`` when absent or malformed."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", str(value or "").upper())
    if match is None:
        return None
    return round(int(match.group(1)) * _AGE_UNITS[match.group(2)], 3)


class DicomClinical:
    """Writes the DICOM modality frames as PNGs + ``cases.csv`` (age, sex from the headers) + ``splits.json``.

    Args:
        sources, classes, size, max_frames, min_identities, val_fraction, test_fraction, split_seed,
            near_duplicate, group_by_series: the DICOM modality demo's
            (:class:`~medvision.data.dicom_modality.DicomModalityDataModule`).
        cache_dir: folder of the decoded-index cache (not a parameter of the written files).
    """

    manifest_name = "cases.csv"
    name = "dicom_clinical"

    def __init__(
        self,
        sources: Sequence[str] = SOURCES,
        classes: Mapping[str, Sequence[str]] | None = None,
        size: int = 64,
        max_frames: int | None = 16,
        min_identities: int = 3,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        near_duplicate: float = 0.97,
        group_by_series: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        self.options: dict[str, Any] = dict(
            sources=list(sources),
            classes={str(k): [str(v) for v in vals] for k, vals in classes.items()} if classes else None,
            size=size,
            max_frames=max_frames,
            min_identities=min_identities,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            near_duplicate=near_duplicate,
            group_by_series=group_by_series,
        )
        self.cache_dir = cache_dir

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""
        return dict(self.options)

    def write(self, folder: Path) -> None:
        """Write ``images/frame_XXXX.png``, ``cases.csv`` and ``splits.json`` into ``folder``."""
        import pydicom
        from PIL import Image

        demo = DicomModalityDataModule(**self.options, cache_dir=self.cache_dir)
        (folder / "images").mkdir()
        headers: dict[tuple[str, str], tuple[str, str]] = {}
        rows, split = [], {s: [] for s in SPLITS}
        arrays = demo.arrays
        for name in SPLITS:
            images, labels = arrays[name]
            for frame, image, label in zip(demo.splits[name], images, labels.reshape(-1), strict=True):
                case = f"frame_{len(rows):04d}"
                Image.fromarray((np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)).save(
                    folder / "images" / f"{case}.png"
                )
                key = (frame.source, frame.file)
                if key not in headers:
                    ds = pydicom.dcmread(
                        source_dir(frame.source) / frame.file,
                        stop_before_pixels=True,
                        force=True,
                        specific_tags=["PatientAge", "PatientSex"],
                    )
                    age = dicom_age(ds.get("PatientAge", ""))
                    sex = str(ds.get("PatientSex", "") or "").strip().upper()
                    headers[key] = ("" if age is None else f"{age:g}", sex if sex in ("F", "M", "O") else "")
                age, sex = headers[key]
                rows.append([f"images/{case}.png", age, sex, demo.label_names[int(label)], case, frame.identity])
                split[name].append(case)
        with (folder / self.manifest_name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "age", "sex", "label", "id", "subject"])
            writer.writerows(rows)
        meta = {"format": "medvision-splits", "version": 1, "seed": self.options["split_seed"], "num_folds": None}
        content = {**meta, "fold": 0, **split, "splits_file": None}
        (folder / "splits.json").write_text(json.dumps(content, indent=1) + "\n")
