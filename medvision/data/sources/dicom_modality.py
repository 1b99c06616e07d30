"""Real DICOM files that install offline, indexed for an imaging-modality classifier.

Sources (both installed from PyPI, no network at run time):

- ``pydicom_data``: the ``pydicom-data`` package (``data_store/data``): real CT, MR, CR, US,
  NM, ... images in many transfer syntaxes (uncompressed little/big endian, deflate, RLE, JPEG
  baseline/extended/lossless, JPEG-LS, JPEG 2000).
- ``pydicom``: pydicom's own ``pydicom/data/test_files`` (including ``dicomdirtests``: real
  CR/CT/MR series stored at 16x16 pixels).

**One loading path**: :func:`read_frames` (``pydicom.dcmread(path, force=True)`` then
``Dataset.pixel_array``, decoded by pydicom with the pylibjpeg plugins; palette colour through
its LUT, MONOCHROME1 inverted, colour reduced to luminance). The demo, the identity grouping
and the decode test all go through it.

**What is an image** (the documented exclusion rule): a file pydicom parses whose dataset
holds ``PixelData`` (a dataset without file meta is decoded in the encoding it was read with).
Files that are not DICOM (README, JSON, dumps, archives), DICOM objects
without pixels (structured reports, RT plans, DICOMDIRs, waveforms) and datasets that pydicom
cannot parse are not images. pydicom's *test* files include images that are broken on
purpose; they are listed by name in :data:`KNOWN_BROKEN` and are the only files allowed to
fail decoding. Every image of ``pydicom-data`` must decode.

**Identity**: the package stores one picture many times (``RG1_UNCI``, ``RG1_J2KR``,
``RG1_J2KI`` are one radiograph; ``693_UNCI`` has its own SOP Instance UID but the pixels of
``693_J2KR``). Files are linked when they share a SOP Instance UID or a Series Instance UID, or
when two of their frames are near-duplicates (Pearson correlation of 16x16 thumbnails >=
``near_duplicate``); an identity is a connected component of these links. All frames of a file
share its identity; splits are drawn over identities.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from medvision.utils.errors import MedvisionError

#: pydicom test files that are broken on purpose (pydicom's own tests check that they fail)
KNOWN_BROKEN: dict[str, str] = {
    "MR_truncated.dcm": "pixel data shorter than the header says",
    "JPEG-lossy.dcm": "JPEG extended 12-bit stream no pylibjpeg plugin decodes (pydicom tests it with GDCM)",
    "JPEG2000-embedded-sequence-delimiter.dcm": "J2K stream with a sequence delimiter inside the fragment",
    "badVR.dcm": "NumberOfFrames is '1A'",
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID in the file meta",
    "nested_priv_SQ.dcm": "pixel data without Bits Allocated",
}

#: default classes: name -> DICOM Modality values (X-ray: computed and digital radiography)
DEFAULT_CLASSES: dict[str, list[str]] = {"CT": ["CT"], "MR": ["MR"], "XR": ["CR", "DX"], "US": ["US"]}

#: the installed DICOM sources (``data.sources``)
DicomSource = Literal["pydicom_data", "pydicom"]
SOURCES: tuple[DicomSource, ...] = get_args(DicomSource)


def source_dir(name: str) -> Path:
    """The folder of an installed source (``pydicom_data`` or ``pydicom``).

    Raises:
        MedvisionError: the package is not installed.
    """
    if name == "pydicom_data":
        try:
            import data_store
        except ImportError as err:
            raise MedvisionError("the pydicom-data package is not installed", fix="pip install pydicom-data") from err
        return Path(data_store.__file__).parent / "data"
    if name == "pydicom":
        import pydicom

        return Path(pydicom.__file__).parent / "data" / "test_files"
    raise MedvisionError(f"unknown DICOM source {name!r}", fix=f"use one of {list(SOURCES)}")


def read_dataset(path: str | Path):
    """``pydicom.dcmread(path, force=True)``, or ``None`` when the file is not a DICOM dataset."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), force=True)
    except Exception:  # noqa: BLE001 - anything pydicom cannot parse is "not DICOM"
        return None
    if not len(ds):
        return None
    if "PixelData" in ds and "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # a dataset without file meta (ACR-NEMA style): its encoding is the one it was read with
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        if implicit is not None:
            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
    return ds


def is_image(ds) -> bool:
    """The exclusion rule: a parsed dataset is an image when it holds ``PixelData``."""
    return ds is not None and "PixelData" in ds


def read_frames(path: str | Path, ds=None) -> np.ndarray:
    """Decode a DICOM image to grey frames: the one loading path of this demo.

    Args:
        path: the file.
        ds: its dataset if already read (``read_dataset``).

    Returns:
        float32 array (frames, rows, columns): palette colour through its LUT, MONOCHROME1
        inverted, RGB/YBR reduced to luminance (ITU-R 601 weights).

    Raises:
        Exception: whatever pydicom raises for a file it cannot decode.
    """
    from pydicom.pixels import apply_color_lut

    ds = ds if ds is not None else read_dataset(path)
    if not is_image(ds):
        raise ValueError(f"{path} holds no image (no PixelData)")
    pixels = ds.pixel_array  # YBR is converted to RGB by pydicom
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    colour = int(ds.get("SamplesPerPixel", 1)) == 3 or photometric == "PALETTE COLOR"
    pixels = pixels.astype(np.float32)
    if colour:
        pixels = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
    if frames == 1 and pixels.ndim == 2:
        pixels = pixels[None]
    if photometric == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return pixels


def thumbnail(frame: np.ndarray, size: int) -> np.ndarray:
    """A frame resized to ``size`` x ``size`` (area averaging) with intensities scaled to 0..1
    between its 1st and 99th percentiles (MONAI ``Resize`` and ``ScaleIntensityRangePercentiles``)."""
    from monai.transforms import Resize, ScaleIntensityRangePercentiles

    small = Resize((size, size), mode="area")(frame[None].astype(np.float32))
    scaled = ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True)(small)
    return np.asarray(scaled, dtype=np.float32)[0]


@dataclass
class DicomFrame:
    """One sample: a frame of a DICOM image file."""

    source: str
    file: str  # path relative to its source folder
    frame: int
    modality: str
    sop_uid: str
    series_uid: str
    transfer_syntax: str
    identity: str = ""

    @property
    def id(self) -> str:
        """``<source>/<file>#<frame>``."""
        return f"{self.source}/{self.file}#{self.frame}"


@dataclass
class DicomIndex:
    """The decoded frames of the indexed sources.

    Attributes:
        frames: one entry per sample.
        images: (N, size, size) float32 in 0..1.
        skipped: file -> why it is not a sample (not an image, known broken, ...).
    """

    frames: list[DicomFrame]
    images: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py")


def _near_duplicate_pairs(thumbs: np.ndarray, threshold: float) -> Iterable[tuple[int, int]]:
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float64)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    flat = np.where(norm > 0, flat / np.maximum(norm, 1e-12), 0.0)
    corr = flat @ flat.T
    rows, cols = np.nonzero(np.triu(corr >= threshold, k=1))
    return zip(rows.tolist(), cols.tolist(), strict=True)


def assign_identities(
    frames: Sequence[DicomFrame], thumbs: np.ndarray, near_duplicate: float = 0.97, by_series: bool = True
) -> list[str]:
    """Group frames into image identities (connected components of the links described above).

    Args:
        frames: the samples.
        thumbs: (N, 16, 16) thumbnails of the frames (any intensity scale).
        near_duplicate: correlation from which two frames count as the same picture.
        by_series: also link files of one Series Instance UID.

    Returns:
        One identity per frame: the sorted first file id of its component.
    """
    parent = list(range(len(frames)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, f in enumerate(frames):
        keys = [("file", f.source, f.file), ("sop", f.sop_uid)] + ([("series", f.series_uid)] if by_series else [])
        for key in keys:
            if key[-1]:
                j = first.setdefault(repr(key), i)
                union(i, j)
    for i, j in _near_duplicate_pairs(thumbs, near_duplicate):
        union(i, j)
    names: dict[int, str] = {}
    for i in range(len(frames)):
        root = find(i)
        names.setdefault(root, frames[i].source + "/" + frames[i].file)
    return [names[find(i)] for i in range(len(frames))]


def index_dicom(
    sources: Sequence[str] = SOURCES,
    size: int = 64,
    modalities: Iterable[str] | None = None,
    max_frames: int | None = 16,
    near_duplicate: float = 0.97,
    by_series: bool = True,
) -> DicomIndex:
    """Decode every image of ``sources`` into ``size`` x ``size`` frames with their identity.

    Args:
        sources: which installed sources (:data:`SOURCES`).
        size: side of the resized frames.
        modalities: keep files of these DICOM Modality values (``None``: all).
        max_frames: at most this many frames per file, evenly spaced (``None``: all).
        near_duplicate: see :func:`assign_identities`.
        by_series: see :func:`assign_identities`.

    Raises:
        MedvisionError: an image outside :data:`KNOWN_BROKEN` does not decode.
    """
    wanted = set(modalities) if modalities is not None else None
    frames: list[DicomFrame] = []
    images: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    skipped: dict[str, str] = {}
    for source in sources:
        folder = source_dir(source)
        for path in _files(folder):
            rel = path.relative_to(folder).as_posix()
            ds = read_dataset(path)
            if not is_image(ds):
                skipped[f"{source}/{rel}"] = "not an image (not DICOM, or no PixelData)"
                continue
            modality = str(ds.get("Modality", "") or "")
            if wanted is not None and modality not in wanted:
                skipped[f"{source}/{rel}"] = f"modality {modality or '(none)'} not used"
                continue
            try:
                pixels = read_frames(path, ds)
            except Exception as err:
                if source == "pydicom" and path.name in KNOWN_BROKEN:
                    skipped[f"{source}/{rel}"] = f"broken on purpose: {KNOWN_BROKEN[path.name]}"
                    continue
                raise MedvisionError(
                    f"{path} does not decode ({type(err).__name__}: {err})",
                    fix="install the decoders: pip install 'medvision' (pylibjpeg plugins)",
                ) from err
            chosen = range(len(pixels))
            if max_frames is not None and len(pixels) > max_frames:
                chosen = sorted(set(np.linspace(0, len(pixels) - 1, max_frames).round().astype(int).tolist()))
            syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
            for k in chosen:
                frames.append(
                    DicomFrame(
                        source,
                        rel,
                        int(k),
                        modality,
                        str(ds.get("SOPInstanceUID", "") or ""),
                        str(ds.get("SeriesInstanceUID", "") or ""),
                        syntax,
                    )
                )
                images.append(thumbnail(pixels[k], size))
                thumbs.append(thumbnail(pixels[k], 16))
    stack = np.stack(images) if images else np.zeros((0, size, size), np.float32)
    identities = assign_identities(
        frames, np.stack(thumbs) if thumbs else np.zeros((0, 16, 16)), near_duplicate, by_series
    )
    for f, identity in zip(frames, identities, strict=True):
        f.identity = identity
    return DicomIndex(frames, stack, skipped)


def class_of(modality: str, classes: Mapping[str, Sequence[str]]) -> str | None:
    """The class name of a DICOM Modality value, or ``None``."""
    for name, values in classes.items():
        if modality in values:
            return name
    return None


def fingerprint(sources: Sequence[str], **options: object) -> str:
    """A short hash of the installed sources' file list and the indexing options (cache key)."""
    h = hashlib.sha1(repr(sorted(options.items())).encode())
    for source in sources:
        folder = source_dir(source)
        for path in _files(folder):
            h.update(f"{source}/{path.relative_to(folder).as_posix()}:{path.stat().st_size}".encode())
    return h.hexdigest()[:12]
