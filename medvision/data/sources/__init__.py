"""Dataset sources: each writes a real Medical Segmentation Decathlon folder once, atomically.

A source is a small object with ``name``, ``params()`` and ``write(folder)``. The DataModule
calls :func:`prepare` on first use; later runs find the folder ready. A source whose folder is
no MSD folder (images and a CSV manifest: :mod:`medvision.data.sources.synthetic_fusion`) names
the file that marks it written in ``manifest_name``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from medvision.utils.errors import MedvisionError

#: file in a prepared folder recording which source (and parameters) wrote it
SOURCE_FILE = "medvision_source.json"


class DatasetSource(Protocol):
    """Something that can write an MSD-style dataset folder."""

    name: str

    def params(self) -> dict[str, Any]:
        """The parameters that determine the written files."""

    def write(self, folder: Path) -> None:
        """Write ``dataset.json``, ``imagesTr/`` and ``labelsTr/`` into the empty ``folder``."""


def prepare(source: DatasetSource, root: str | Path) -> Path:
    """Write ``source`` into ``root`` unless it is already there.

    The folder is written under a temporary name and renamed into place, so an interrupted
    preparation leaves nothing half-written and concurrent processes (DDP ranks) do not clash.

    Raises:
        MedvisionError: ``root`` holds data written by another source or other parameters.
    """
    root = Path(root)
    stamp = {"source": source.name, "params": source.params()}
    marker = root / SOURCE_FILE
    # the file that marks a written folder: MSD's dataset.json, or the source's own manifest (a CSV)
    written = getattr(source, "manifest_name", "dataset.json")
    if (root / written).is_file():
        if marker.is_file() and json.loads(marker.read_text()) != stamp:
            raise MedvisionError(
                f"{root} was prepared by {marker.read_text().strip()}, not by {json.dumps(stamp)}",
                fix="point data.root at another folder, or delete that folder to prepare it again",
            )
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        source.write(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(stamp) + "\n")
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / written).is_file():  # not a concurrent writer: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_msd_manifest(
    folder: Path, name: str, label_names: list[str], modalities: list[str], cases: list[dict[str, Any]]
) -> None:
    """Write an MSD ``dataset.json`` (``labels`` maps value -> name, as in MSD v1)."""
    manifest = {
        "name": name,
        "labels": {str(i): n for i, n in enumerate(label_names)},
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "numTraining": len(cases),
        "training": cases,
        "test": [],
    }
    (folder / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
