"""De-identify a folder of DICOM files into another folder (``medvision-data deidentify IN OUT``).

**Profile.** DICOM PS3.15 Annex E, the *Basic Application Level Confidentiality Profile*: the
action of every attribute comes from table E.1-1 as transcribed by the ``dicom-anonymizer``
package (Kitware; :data:`PROFILE_EDITION`, the standard's 2026c edition), applied by this module
with pydicom, with the *Retain Longitudinal Temporal Information with Modified Dates Option*:

========== ===============================================================================
action     what happens
========== ===============================================================================
X          removed (also: every private attribute, curve data 50xx, overlay data 60xx)
Z, X/Z     emptied (a sequence: emptied)
D, Z/D,    replaced by a dummy of the VR (``dicom-anonymizer``'s values); a sequence keeps its
X/D, X/Z/D items, each cleaned by the same table
U, X/Z/U*  UIDs replaced by keyed UIDs (pydicom's ``generate_uid`` of an HMAC of the UID,
           under pydicom's root): the same UID gives the same new UID in every file, so a series stays
           one series and references (Referenced SOP Instance UID, Frame of Reference) stay
           valid; any other non-standard UID (not ``1.2.840.10008.*``) is replaced the same way
========== ===============================================================================

- Patient's Name and Patient ID become the patient's pseudonym ``PAT-<12 hex>`` (an HMAC of
  the original Patient ID under the key); Patient's Birth Date is emptied (Z).
- Every date (DA) and date-time (DT) is shifted by one whole number of days per patient (365
  to 3652 days back, from an HMAC of the patient), so intervals between a patient's dates
  survive; times of day (TM) are kept. ``Longitudinal Temporal Information Modified`` = MODIFIED.
- ``Patient Identity Removed`` = YES (NO when ``Burned In Annotation`` = YES: the pixels still
  show identity), ``De-identification Method`` and its code sequence (DCM 113100, 113107) set.
- Pixel data are copied unchanged (same transfer syntax, same bytes).

**Burned-in text** cannot be found in headers: files with ``BurnedInAnnotation=YES``, secondary
captures (SOP classes 1.2.840.10008.5.1.4.1.1.7*), ultrasound (modality US or an ultrasound SOP
class) and ``RecognizableVisualFeatures=YES`` are listed in the report for a person to check.

**Output layout.** ``OUT/<patient pseudonym>/<ST-...>/<SE-...>/<IM-...>.dcm``: study, series and
instance folders and files are named by keyed digests of their original UIDs, never by the input's
file or folder names (which may hold a name or a record number). Each series is one folder (what
MONAI's DICOM reader reads as one volume). ``OUT/deidentification_report.json`` counts what was
written and lists the files that may hold burned-in text (by their output names).

**What is not copied:** files that are not DICOM Part 10 files (reports, PDFs, notes: they may
name the patient), DICOMDIRs (they index the input's file names) and files pydicom cannot read.
They are counted in the report and named in the mapping file only.

**The mapping** (``--mapping FILE``, for the data owner, never inside OUT or IN): one CSV row per
input file: its path under IN, its output under OUT, the original and new patient, study,
series and instance identifiers and the patient's date shift.

**Same key, same output.** Every pseudonym, UID, folder name and date shift is an HMAC-SHA256 of
the original value under the user's key: a re-run with the same input and key writes the same
files (byte for byte); another key gives other pseudonyms. Inputs are opened for reading only;
every output is written atomically.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvision.utils.errors import MedvisionError
from medvision.utils.privacy import key_fingerprint, keyed_digest

#: the table E.1-1 edition of ``dicom-anonymizer`` that this profile applies
PROFILE_EDITION = "dicomfields_2026c"
#: the report written into OUT
REPORT_NAME = "deidentification_report.json"
#: dates are shifted back by this many days at least and at most (one offset per patient)
MIN_SHIFT_DAYS, MAX_SHIFT_DAYS = 365, 3652
#: ``De-identification Method`` values (LO: at most 64 characters each)
METHOD = (
    "medvision deidentify: DICOM PS3.15 E.1-1 Basic Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "keyed HMAC-SHA256 pseudonyms and UIDs, private tags removed",
)
#: (code value, meaning) of the De-identification Method Code Sequence (scheme DCM, PS3.16 CID 7050)
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)

_CATEGORIES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
_REPLACE = ("D", "Z/D", "X/D", "X/Z/D")
_EMPTY = ("Z", "X/Z")
_STANDARD_UID = "1.2.840.10008."
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_ULTRASOUND_CLASSES = {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.3.1"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: UIDs of coding schemes and context groups: registered values, not instances (kept)
_CODE_UIDS = {"CodingSchemeUID", "ContextUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID"}
_PATIENT_NAME, _PATIENT_ID, _BIRTH_DATE = 0x00100010, 0x00100020, 0x00100030


# ----------------------------------------------------------------------------- the profile
@functools.cache
def profile_table() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """Table E.1-1: ``{tag: action}`` and the masked entries ``(group, element, group mask, element mask, action)``."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    tables = dicom_anonymization_database_selector(PROFILE_EDITION)
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in _CATEGORIES.items():
        for tag in tables[category]:
            if len(tag) == 2:
                exact[(tag[0] << 16) | tag[1]] = action
            else:
                masked.append((tag[0], tag[1], tag[2], tag[3], action))
    return exact, tuple(masked)


def profile_action(tag: int) -> str | None:
    """The Basic Profile's action for ``tag`` (``X``, ``Z``, ``D``, ``U``, ``Z/D``, ...), ``None``: kept."""
    exact, masked = profile_table()
    action = exact.get(int(tag))
    if action is not None:
        return action
    group, element = int(tag) >> 16, int(tag) & 0xFFFF
    for g, e, gmask, emask, act in masked:
        if group & gmask == g & gmask and element & emask == e & emask:
            return act
    return None


# ----------------------------------------------------------------------------- keyed values
@dataclass(frozen=True)
class Pseudonyms:
    """Every replacement value, as a function of the key and the original value."""

    key: bytes

    def digest(self, kind: str, value: str) -> str:
        return keyed_digest(self.key, kind, value)

    def uid(self, original: str) -> str:
        """A new UID for ``original``: pydicom's ``generate_uid`` (its root, 64 characters) of its HMAC."""
        from pydicom.uid import generate_uid

        return str(generate_uid(entropy_srcs=[self.digest("uid", original)]))

    def patient(self, patient_key: str) -> str:
        """The patient's pseudonym (Patient ID and Name): ``PAT-<12 hex>``."""
        return "PAT-" + self.digest("patient", patient_key)[:12].upper()

    def date_shift(self, patient_key: str) -> int:
        """The patient's date shift in days (negative: into the past)."""
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        return -(MIN_SHIFT_DAYS + int(self.digest("date", patient_key)[:12], 16) % span)

    def name(self, prefix: str, kind: str, original: str, length: int = 10) -> str:
        """A folder or file name for an original identifier: ``<prefix>-<hex>``."""
        return f"{prefix}-{self.digest(kind, original)[:length].upper()}"


def patient_key(ds: Any, fallback: str) -> str:
    """What identifies the patient of ``ds``: Patient ID, else name and birth date, else the study."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return "id:" + pid
    name, birth = str(ds.get("PatientName", "") or "").strip(), str(ds.get("PatientBirthDate", "") or "").strip()
    if name or birth:
        return f"name:{name}|{birth}"
    study = str(ds.get("StudyInstanceUID", "") or "").strip()
    return "study:" + study if study else "file:" + fallback


# ----------------------------------------------------------------------------- dates
def shift_date(value: str, days: int) -> str:
    """A DA value (``YYYYMMDD``, ACR-NEMA ``YYYY.MM.DD``, or a range ``A-B``) shifted by ``days``;
    an unreadable value becomes empty."""
    value = value.strip()
    if "-" in value:
        return "-".join(shift_date(part, days) if part else "" for part in value.split("-", 1))
    digits = value.replace(".", "")
    try:
        day = dt.datetime.strptime(digits, "%Y%m%d").date()  # a calendar date
    except ValueError:
        return ""
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """A DT value (``YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]``) whose date is shifted by ``days``
    (a year or month alone: the 1st is shifted, the precision kept); unreadable: empty."""
    value = value.strip()
    precision = min(len(value) - len(value.lstrip("0123456789")), 8)
    if precision not in (4, 6, 8):
        return ""
    head, rest = value[:precision], value[precision:]
    padded = head + "0101"[precision - 4 :] if precision < 8 else head
    try:
        day = dt.datetime.strptime(padded, "%Y%m%d").date()  # a calendar date
    except ValueError:
        return ""
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")[:precision] + rest


# ----------------------------------------------------------------------------- one dataset
@dataclass
class CleanedFile:
    """What de-identifying one dataset changed (for the mapping and the report)."""

    patient: str
    date_shift: int
    uids: dict[str, tuple[str, str]] = field(default_factory=dict)  # keyword -> (original, new)
    burned_in: list[str] = field(default_factory=list)
    original_patient_id: str = ""
    original_patient_name: str = ""


def burned_in_reasons(ds: Any) -> list[str]:
    """Why the pixels of ``ds`` may show identifying text or a face (empty: no reason known)."""
    reasons = []
    if str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES":
        reasons.append("BurnedInAnnotation=YES")
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop.startswith(_SECONDARY_CAPTURE):
        reasons.append("secondary capture")
    if str(ds.get("Modality", "") or "").upper() == "US" or sop in _ULTRASOUND_CLASSES:
        reasons.append("ultrasound")
    if str(ds.get("RecognizableVisualFeatures", "") or "").upper() == "YES":
        reasons.append("RecognizableVisualFeatures=YES")
    return reasons


class _Cleaner:
    """Applies the profile to one dataset, recursively (sequence items are cleaned by the same table)."""

    def __init__(self, pseudonyms: Pseudonyms, patient: str, days: int) -> None:
        self.pseudonyms, self.patient, self.days = pseudonyms, patient, days

    def new_uid(self, value: Any) -> Any:
        from pydicom.multival import MultiValue

        if isinstance(value, (list, MultiValue)):
            return [self.new_uid(v) for v in value]
        value = str(value or "").strip()
        return self.pseudonyms.uid(value) if value else value

    def clean(self, ds: Any) -> None:
        for tag in list(ds.keys()):
            if tag.is_private:
                del ds[tag]
                continue
            try:
                elem = ds[tag]
            except Exception:  # noqa: BLE001 - an element pydicom cannot read is dropped, not kept
                del ds[tag]
                continue
            self.element(ds, tag, elem)

    def element(self, ds: Any, tag: Any, elem: Any) -> None:
        from dicomanonymizer.simpledicomanonymizer import empty_element, replace_element

        action = profile_action(tag)
        vr = elem.VR
        if vr == "SQ":
            if action == "X":
                del ds[tag]
            elif action in _EMPTY:
                elem.value = []
            else:
                for item in elem.value:
                    self.clean(item)
            return
        if action == "X" and int(tag) != 0x7FE00010:
            del ds[tag]
        elif int(tag) in (_PATIENT_NAME, _PATIENT_ID):
            elem.value = self.patient
        elif vr == "UI":
            value = str(elem.value or "")
            standard = (
                value.startswith(_STANDARD_UID) or elem.keyword.endswith("ClassUID") or elem.keyword in _CODE_UIDS
            )
            if action is not None or not standard:
                elem.value = self.new_uid(elem.value)
        elif vr in ("DA", "DT"):
            if int(tag) == _BIRTH_DATE:
                elem.value = ""
            elif elem.value:
                shift = shift_date if vr == "DA" else shift_datetime
                values = elem.value if elem.VM > 1 else [elem.value]
                shifted = [shift(str(v), self.days) for v in values]
                elem.value = shifted if elem.VM > 1 else shifted[0]
        elif vr == "TM" or action is None or action == "U":
            return  # times of day are kept (dates are shifted by whole days); others: the profile keeps them
        elif action in _EMPTY:
            empty_element(elem)
        elif action in _REPLACE:
            try:
                replace_element(elem)
            except NotImplementedError:
                del ds[tag]


def deidentify_dataset(ds: Any, pseudonyms: Pseudonyms, fallback: str = "") -> CleanedFile:
    """Apply the profile to ``ds`` in place (see the module docstring).

    Args:
        ds: a pydicom dataset read from a Part 10 file.
        pseudonyms: the keyed replacement values.
        fallback: identifies the patient when the file names none (its path under IN).
    """
    from pydicom.dataset import Dataset, FileMetaDataset

    key = patient_key(ds, fallback)
    cleaned = CleanedFile(
        patient=pseudonyms.patient(key),
        date_shift=pseudonyms.date_shift(key),
        burned_in=burned_in_reasons(ds),
        original_patient_id=str(ds.get("PatientID", "") or ""),
        original_patient_name=str(ds.get("PatientName", "") or ""),
    )
    cleaner = _Cleaner(pseudonyms, cleaned.patient, cleaned.date_shift)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        original = str(ds.get(keyword, "") or "")
        cleaned.uids[keyword] = (original, pseudonyms.uid(original) if original else "")
    cleaner.clean(ds)
    ds.PatientName = ds.PatientID = cleaned.patient
    burned = "BurnedInAnnotation=YES" in cleaned.burned_in
    ds.PatientIdentityRemoved = "NO" if burned else "YES"
    old = ds.get("DeidentificationMethod")
    previous = [str(v) for v in ([old] if isinstance(old, str) else list(old or [])) if str(v) and str(v) not in METHOD]
    ds.DeidentificationMethod = [*previous, *METHOD]
    codes = []
    for value, meaning in METHOD_CODES:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    old_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta = FileMetaDataset()
    sop_class = ds.get("SOPClassUID") or old_meta.get("MediaStorageSOPClassUID")
    if sop_class:
        meta.MediaStorageSOPClassUID = sop_class
    if ds.get("SOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if old_meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = old_meta.TransferSyntaxUID
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return cleaned


# ----------------------------------------------------------------------------- a folder
@dataclass
class DeidentificationReport:
    """What :func:`deidentify_folder` did (also written as ``OUT/deidentification_report.json``).

    Attributes:
        written: output files (paths relative to OUT).
        not_copied: why input files were not copied -> how many.
        burned_in: output file -> why its pixels may show identity.
        patients, studies, series: distinct pseudonyms, studies and series written.
        key_fingerprint: tells keys apart without revealing them.
        rows: one mapping row per input file (for ``--mapping``; never written into OUT).
    """

    written: list[str] = field(default_factory=list)
    not_copied: dict[str, int] = field(default_factory=dict)
    burned_in: dict[str, list[str]] = field(default_factory=dict)
    patients: int = 0
    studies: int = 0
    series: int = 0
    key_fingerprint: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as ``deidentification_report.json`` holds it (no input names, no original value)."""
        return {
            "profile": f"DICOM PS3.15 Basic Application Level Confidentiality Profile ({PROFILE_EDITION})",
            "options": ["Retain Longitudinal Temporal Information with Modified Dates"],
            "method": list(METHOD),
            "key_fingerprint": self.key_fingerprint,
            "files_written": len(self.written),
            "patients": self.patients,
            "studies": self.studies,
            "series": self.series,
            "not_copied": dict(sorted(self.not_copied.items())),
            "may_show_burned_in_text": [{"file": f, "reasons": r} for f, r in sorted(self.burned_in.items())],
            "not_handled": "pixel data are copied as they are: burned-in text and faces are not removed",
        }

    def mapping_csv(self) -> str:
        """The mapping table (original -> pseudonymous identifiers) as CSV text."""
        columns = [
            "input",
            "output",
            "note",
            "patient_id",
            "patient_name",
            "pseudonym",
            "date_shift_days",
            "study_uid",
            "new_study_uid",
            "series_uid",
            "new_series_uid",
            "sop_uid",
            "new_sop_uid",
        ]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_locations(source: Path, dest: Path, mapping: Path | None) -> None:
    """Refuse an OUT that is IN, inside IN or holds IN, an OUT that holds files, and a mapping file
    inside OUT or IN (it would publish the pseudonym table, or change the input folder)."""
    if not source.is_dir():
        raise MedvisionError(f"{source} is not a folder", fix="medvision-data deidentify <DICOM folder> <new folder>")
    if _inside(dest, source) or _inside(source, dest):
        raise MedvisionError(
            f"OUT={dest} and IN={source} overlap; the input folder is never written to",
            fix="choose an output folder outside the input folder",
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise MedvisionError(f"OUT={dest} exists and is not an empty folder", fix="choose a new (or empty) folder")
    if mapping is not None:
        if _inside(mapping, dest):
            raise MedvisionError(
                f"--mapping {mapping} is inside OUT={dest}: the pseudonym table must stay with the data owner",
                fix="write the mapping outside the de-identified folder (it links pseudonyms to patients)",
            )
        if _inside(mapping, source):
            raise MedvisionError(
                f"--mapping {mapping} is inside IN={source}; the input folder is never written to",
                fix="write the mapping elsewhere",
            )


def _files(source: Path) -> Iterator[Path]:
    yield from sorted(p for p in source.rglob("*") if p.is_file())


def _read(path: Path) -> tuple[Any, str | None]:
    """``(dataset, None)``, or ``(None, why it is not copied)``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        return None, "not a DICOM file"
    except Exception:  # noqa: BLE001 - any file pydicom cannot parse is left out and counted
        return None, "unreadable DICOM"
    sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", "") or "")
    if sop_class == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return None, "DICOMDIR (indexes the input's file names)"
    return ds, None


def _write(ds: Any, dest: Path) -> None:
    from medvision.utils.io import atomic_output

    with atomic_output(dest) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def deidentify_folder(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    key: bytes,
    mapping: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DeidentificationReport:
    """De-identify every DICOM file under ``source`` into ``dest`` (see the module docstring).

    Args:
        source: IN, a folder of DICOM files (any depth, any names); never written to.
        dest: OUT, a new or empty folder.
        key: the user's key (:func:`medvision.utils.privacy.read_key`).
        mapping: a CSV file for the pseudonym table (outside OUT and IN), or ``None``.
        progress: called with (files done, files in all) after each file.

    Returns:
        The report (also written to ``OUT/deidentification_report.json``).

    Raises:
        MedvisionError: IN is no folder, OUT overlaps IN or holds files, the mapping is inside
            OUT or IN, or IN holds no DICOM file.
    """
    from medvision.utils.io import atomic_write_json, atomic_write_text

    source, dest = Path(source).expanduser().resolve(), Path(dest).expanduser().resolve()
    mapping_path = Path(mapping).expanduser().resolve() if mapping is not None else None
    check_locations(source, dest, mapping_path)
    pseudonyms = Pseudonyms(key)
    report = DeidentificationReport(key_fingerprint=key_fingerprint(key))
    files = list(_files(source))
    taken: set[str] = set()
    patients, studies, series = set(), set(), set()
    for n, path in enumerate(files):
        relative = path.relative_to(source).as_posix()
        ds, why = _read(path)
        if ds is None:
            report.not_copied[why or ""] = report.not_copied.get(why or "", 0) + 1
            report.rows.append({"input": relative, "output": "", "note": f"not copied: {why}"})
        else:
            cleaned = deidentify_dataset(ds, pseudonyms, fallback=relative)
            (study, new_study), (serie, new_series), (sop, new_sop) = (
                cleaned.uids[k] for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            )
            stem = pseudonyms.name("IM", "instance", sop or relative, 12)
            parts = [
                cleaned.patient,
                pseudonyms.name("ST", "study", study or f"{cleaned.patient}/none"),
                pseudonyms.name("SE", "series", serie or f"{study}/none"),
            ]
            out = "/".join([*parts, f"{stem}.dcm"])
            k = 2
            while out in taken:  # two input files with one SOP Instance UID (copies, other encodings)
                out, k = "/".join([*parts, f"{stem}-{k}.dcm"]), k + 1
            taken.add(out)
            _write(ds, dest / out)
            report.written.append(out)
            patients.add(cleaned.patient)
            studies.add(parts[1] if not study else new_study)
            series.add("/".join(parts[:3]) if not serie else new_series)
            if cleaned.burned_in:
                report.burned_in[out] = cleaned.burned_in
            note = "may show burned-in text: " + ", ".join(cleaned.burned_in) if cleaned.burned_in else ""
            report.rows.append(
                {
                    "input": relative,
                    "output": out,
                    "note": note,
                    "patient_id": cleaned.original_patient_id,
                    "patient_name": cleaned.original_patient_name,
                    "pseudonym": cleaned.patient,
                    "date_shift_days": cleaned.date_shift,
                    "study_uid": study,
                    "new_study_uid": new_study,
                    "series_uid": serie,
                    "new_series_uid": new_series,
                    "sop_uid": sop,
                    "new_sop_uid": new_sop,
                }
            )
        if progress is not None:
            progress(n + 1, len(files))
    if not report.written:
        raise MedvisionError(
            f"IN={source} holds no DICOM file pydicom reads ({len(files)} file(s) looked at)",
            fix="point IN at a folder of DICOM (Part 10) files",
        )
    report.patients, report.studies, report.series = len(patients), len(studies), len(series)
    atomic_write_json(dest / REPORT_NAME, report.to_dict())
    if mapping_path is not None:
        atomic_write_text(mapping_path, report.mapping_csv())
    return report
