"""The DICOM modality demo: every image of the installed DICOM packages decodes through the one
loading path, and the split never puts one picture (in any encoding) in two splits."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medvision.data.dicom_modality import DicomModalityDataModule
from medvision.data.sources.dicom_modality import KNOWN_BROKEN, is_image, read_dataset, read_frames, source_dir

#: pydicom-data 1.0.0: 68 files; 67 hold pixel data. emri_small_jpeg_2k_lossless_too_short.dcm
#: ends inside its encapsulated PixelData (no sequence delimiter), so pydicom reads a dataset
#: without PixelData: not an image by the documented rule
PYDICOM_DATA_IMAGES = 67
PYDICOM_DATA_NOT_IMAGES = {"emri_small_jpeg_2k_lossless_too_short.dcm"}

#: transfer syntaxes the decode test must have met (UID -> what it is)
SYNTAXES = {
    "1.2.840.10008.1.2": "implicit VR little endian",
    "1.2.840.10008.1.2.1": "explicit VR little endian",
    "1.2.840.10008.1.2.2": "explicit VR big endian",
    "1.2.840.10008.1.2.1.99": "deflated explicit VR little endian",
    "1.2.840.10008.1.2.5": "RLE lossless",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}


@functools.cache
def _decode_all(source: str) -> tuple[dict[str, np.ndarray], dict[str, str], set[str], Counter]:
    folder = source_dir(source)
    decoded, failed, not_images, syntaxes = {}, {}, set(), Counter()
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ):
        ds = read_dataset(path)
        if not is_image(ds):
            not_images.add(path.relative_to(folder).as_posix())
            continue
        try:
            frames = read_frames(path, ds)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            failed[path.name] = f"{type(err).__name__}: {err}"
            continue
        assert frames.ndim == 3 and frames.shape[1:] == (ds.Rows, ds.Columns), (path.name, frames.shape)
        assert frames.shape[0] == int(ds.get("NumberOfFrames", 1) or 1), path.name
        assert np.isfinite(frames).all(), path.name
        decoded[path.relative_to(folder).as_posix()] = frames
        syntaxes[str(ds.file_meta.TransferSyntaxUID)] += 1
    return decoded, failed, not_images, syntaxes


def test_every_image_of_pydicom_data_decodes() -> None:
    decoded, failed, not_images, _syntaxes = _decode_all("pydicom_data")
    assert failed == {}, failed
    assert len(decoded) == PYDICOM_DATA_IMAGES, sorted(decoded)
    assert not_images == PYDICOM_DATA_NOT_IMAGES
    # one radiograph, three encodings: the same picture after decoding (lossy J2K: nearly)
    unci, j2kr, j2ki = (decoded[f"RG1_{k}.dcm"] for k in ("UNCI", "J2KR", "J2KI"))
    assert np.array_equal(decoded["RG1_UNCR.dcm"], j2kr)
    assert np.corrcoef(unci.ravel(), j2ki.ravel())[0, 1] > 0.999
    assert sum(f.std() > 0 for f in decoded.values()) >= PYDICOM_DATA_IMAGES - 2


def test_pydicom_test_files_decode_except_the_ones_broken_on_purpose() -> None:
    decoded, failed, _, syntaxes = _decode_all("pydicom")
    assert set(failed) == set(KNOWN_BROKEN), failed  # and every listed one still fails
    assert len(decoded) == 89, len(decoded)  # pydicom 3.0.2
    _, _, _, data_syntaxes = _decode_all("pydicom_data")
    missing = set(SYNTAXES) - set(syntaxes) - set(data_syntaxes)
    assert not missing, [SYNTAXES[m] for m in missing]


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory: pytest.TempPathFactory) -> DicomModalityDataModule:
    dm = DicomModalityDataModule(cache_dir=str(tmp_path_factory.mktemp("dicom_cache")))
    dm.prepare_data()
    return dm


def test_no_image_identity_in_two_splits(datamodule: DicomModalityDataModule) -> None:
    splits = datamodule.splits
    assert datamodule.label_names == ["CT", "MR", "XR", "US"] and datamodule.dropped == {}
    seen: dict[str, str] = {}
    for split, frames in splits.items():
        for f in frames:
            for key in (
                f"identity:{f.identity}",
                f"sop:{f.sop_uid}",
                f"series:{f.series_uid}",
                f"file:{f.source}/{f.file}",
            ):
                assert seen.setdefault(key, split) == split, f"{key} is in {seen[key]} and {split}"
    # the same picture in other encodings or under another SOP UID: one split
    where = {f"{f.source}/{f.file}": s for s, frames in splits.items() for f in frames}
    for family in (
        ["RG1_UNCI", "RG1_UNCR", "RG1_J2KR", "RG1_J2KI"],
        ["693_UNCI", "693_UNCR", "693_J2KR"],
        ["US1_UNCI", "US1_J2KI", "US1_J2KR"],
        ["emri_small", "emri_small_RLE", "emri_small_jpeg_ls_lossless"],
    ):
        assert len({where[f"pydicom_data/{name}.dcm"] for name in family}) == 1, family
    # no near-duplicate pixels across splits (checked on the samples themselves, not the grouping)
    arrays = datamodule.arrays
    flat = {s: arrays[s][0].reshape(len(arrays[s][0]), -1) for s in arrays}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        x = flat[a] - flat[a].mean(1, keepdims=True)
        y = flat[b] - flat[b].mean(1, keepdims=True)
        corr = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T
        assert corr.max() < 0.97, (a, b, float(corr.max()))
    # every class is in every split, and samples are normalised 64x64 frames
    for split, (images, labels) in arrays.items():
        assert set(labels.reshape(-1).tolist()) == {0, 1, 2, 3}, split
        assert images.shape[1:] == (64, 64) and images.min() >= 0.0 and images.max() <= 1.0


def test_the_decoded_index_is_cached(datamodule: DicomModalityDataModule) -> None:
    again = DicomModalityDataModule(cache_dir=str(datamodule.index_cache_dir))
    assert [f.id for f in again.splits["test"]] == [f.id for f in datamodule.splits["test"]]
    assert np.array_equal(again.arrays["train"][0], datamodule.arrays["train"][0])
    assert len(list(Path(datamodule.index_cache_dir).glob("dicom_modality_*.npz"))) == 1


def test_a_threaded_audit_of_dicom_files_leaves_pydicoms_reading_mode_as_it_was(tmp_path: Path) -> None:
    """MONAI's PydicomReader enters pydicom's process-wide strict reading for every file; reads in
    several threads once left it on for good, and a later file with one invalid value (pydicom-data's
    bad_sequence.dcm: a hex SOP Instance UID) then failed to index."""
    import shutil

    from pydicom import config, dcmread

    from medvision.data.audit import audit

    tests = source_dir("pydicom")
    records = []
    for i in range(16):
        name = ("CT_small.dcm", "MR_small.dcm")[i % 2]
        copy = tmp_path / f"case{i:02d}.dcm"
        shutil.copyfile(tests / name, copy)
        # the image read again as its "label": the audit then reads 32 DICOM files per round
        records.append({"image": str(copy), "label": str(copy), "id": f"case{i:02d}", "subject": f"s{i:02d}"})
    before = config.settings.reading_validation_mode
    try:
        for _ in range(5):
            report = audit(records, None, num_threads=4)
            assert report.files_read == 2 * len(records)
            assert config.settings.reading_validation_mode == before == config.WARN
        with pytest.warns(UserWarning, match="Invalid value for VR UI"):
            uid = dcmread(source_dir("pydicom_data") / "bad_sequence.dcm").SOPInstanceUID
        assert len(uid) == 64
    finally:
        config.settings._reading_validation_mode = None
