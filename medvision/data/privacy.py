"""Privacy on the data side: which data come from DICOM, pseudonymous records, and the data
audit's check for identifying header fields.

- :func:`use_privacy`: a run's :class:`~medvision.utils.privacy.Privacy` (``privacy.log_ids``;
  ``auto`` is ``pseudonym`` when the DataModule reads DICOM), handed to its DataModule.
- :func:`pseudonymize_records`: case ids and subjects as pseudonyms, before the split, so that
  ``splits.json``, the audit report and every batch carry pseudonyms only.
- :func:`identifier_findings` (the audit's ``identifiers`` check): DICOM files whose header still
  holds attributes the PS3.15 Basic Profile removes or replaces (unless ``PatientIdentityRemoved``
  is ``YES``), files marked ``BurnedInAnnotation=YES``, and NIfTI/Analyze headers with free text
  (``descrip``, ``db_name``, ``aux_file``). A warning; with ``data.require_deidentified=true``
  an error. Field names are reported, never their values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medvision.data.records import DatasetInfo, Record, record_files
from medvision.utils.privacy import Privacy

#: file endings read as DICOM without looking inside
DICOM_SUFFIXES = (".dcm", ".dicom")
#: nibabel formats whose headers carry free text
_TEXT_HEADERS = (".nii", ".nii.gz", ".hdr", ".img")
_TEXT_FIELDS = ("descrip", "db_name", "aux_file")
#: files of a series folder whose headers are read (evenly spaced; all of a shorter series)
_SERIES_SAMPLE = 32
#: fields named in one finding at most; direct identifiers first
_SHOWN_FIELDS = 10
_FIRST_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "BurnedInAnnotation=YES",
    "private tags",
)

IDENTIFIERS_FIX = (
    "de-identify the DICOM files first (medvision-data deidentify IN OUT --key KEYFILE) and train on OUT; "
    "clear NIfTI text fields (nibabel: img.header['descrip'] = b''). These findings are errors with "
    "data.require_deidentified=true; either way privacy.log_ids keeps case ids and data paths out of the logs"
)


# ----------------------------------------------------------------------------- DICOM or not
def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """A ``.dcm`` file, or a file with the DICOM Part 10 marker (``DICM`` at byte 128)."""
    path = Path(path)
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(path: str | os.PathLike[str]) -> list[Path]:
    """The DICOM files of ``path``: itself (a file), or the files directly inside it (a series folder)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and is_dicom_file(p))
    return [path] if path.is_file() and is_dicom_file(path) else []


def _is_text_header(path: str) -> bool:
    return path.lower().endswith(_TEXT_HEADERS)


def records_are_dicom(records: Sequence[Record]) -> bool:
    """Whether any image or label of ``records`` is a DICOM file or series folder."""
    for record in records:
        for key in ("image", "label"):
            for file in record_files(record, key) if key in record else []:
                if not _is_text_header(file) and dicom_files(file):
                    return True
    return False


# ----------------------------------------------------------------------------- the run's privacy
def use_privacy(node: Mapping[str, Any] | None, datamodule: Any) -> Privacy:
    """The run's privacy settings from its ``privacy`` config node, given to ``datamodule``.

    ``auto`` asks the DataModule whether it reads DICOM (``reads_dicom``; a volume DataModule
    reads its manifest for that, no image).
    """
    auto = str((node or {}).get("log_ids") or "auto") == "auto"
    from_dicom = bool(getattr(datamodule, "reads_dicom", False)) if auto else False
    privacy = Privacy.from_config(node, from_dicom=from_dicom)
    if hasattr(datamodule, "privacy"):
        datamodule.privacy = privacy
    return privacy


def pseudonymize_records(info: DatasetInfo, privacy: Privacy) -> DatasetInfo:
    """``info`` with each record's ``id`` and ``subject`` as pseudonyms (unchanged with ``log_ids=path``).

    With ``log_ids=none`` too: ids are still needed to write and read ``splits.json``; the
    batches then carry no id at all (:meth:`~medvision.utils.privacy.Privacy.shown_samples`).
    """
    if not privacy.active:
        return info
    records = [
        {**r, "id": privacy.pseudonym(str(r["id"])), "subject": privacy.subject(str(r["subject"]))}
        for r in info.records
    ]
    return replace(info, records=records)


def write_audit_report(report: Any, path: str | os.PathLike[str], policy: str | None, privacy: Privacy) -> Path:
    """Write an :class:`~medvision.data.audit.AuditReport` as JSON; with ids hidden, its file names
    and the manifest's path are hidden too (the report lies in the run folder)."""
    from medvision.utils.io import atomic_write_json

    data = report.to_dict(policy)
    if privacy.active:
        files = [str(data.get("source") or "")] + [p["file"] for p in data["problems"] if p.get("file")]
        data["source"] = privacy.shown_path(data["source"]) if data.get("source") else data.get("source")
        for problem in data["problems"]:
            problem["file"] = privacy.shown_path(problem["file"]) if problem.get("file") else ""
            problem["message"] = privacy.scrub(problem["message"], files)
    return atomic_write_json(path, data)


# ----------------------------------------------------------------------------- the audit check
def dicom_identifying_fields(ds: Any) -> list[str]:
    """Header fields of a DICOM dataset that identify its patient (names, not values).

    Every top-level attribute with a value that the Basic Profile removes or replaces (UIDs
    aside: every file has them), ``private tags``, and ``BurnedInAnnotation=YES``. A dataset with
    ``PatientIdentityRemoved=YES`` has been de-identified: only the burned-in mark counts.
    """
    from medvision.data.deidentify import profile_action

    fields: list[str] = []
    if str(ds.get("PatientIdentityRemoved", "") or "").upper() != "YES":
        private = False
        for tag in list(ds.keys()):
            if tag.is_private:
                private = True
                continue
            action = profile_action(tag)
            if action is None or action.startswith("U") or action.endswith("U*"):
                continue
            try:
                value = ds[tag].value
            except Exception:  # noqa: BLE001 - an element pydicom cannot read still counts as present
                value = "?"
            if value not in (None, "", b"") and not (isinstance(value, (list, tuple)) and not len(value)):
                fields.append(ds[tag].keyword or str(tag))
        if private:
            fields.append("private tags")
    if str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES":
        fields.append("BurnedInAnnotation=YES")
    return fields


def _dicom_finding(path: str) -> str | None:
    import pydicom

    files = dicom_files(path)
    total = len(files)
    if total > _SERIES_SAMPLE:  # a series: its files share patient and study attributes
        files = [files[round(k)] for k in np.linspace(0, len(files) - 1, _SERIES_SAMPLE)]
    fields: dict[str, None] = {}
    flagged = 0
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - an unreadable file is the `readable` check's business
            continue
        found = dicom_identifying_fields(ds)
        flagged += bool(found)
        fields.update(dict.fromkeys(found))
    if not fields:
        return None
    names = sorted(fields, key=lambda f: _FIRST_FIELDS.index(f) if f in _FIRST_FIELDS else len(_FIRST_FIELDS))
    shown = ", ".join(names[:_SHOWN_FIELDS]) + (
        f" (+{len(names) - _SHOWN_FIELDS} more)" if len(names) > _SHOWN_FIELDS else ""
    )
    read = f" (of {total}, evenly spaced)" if total > len(files) else ""
    where = f"{flagged} of {len(files)} DICOM files{read}" if len(files) > 1 else "the DICOM header"
    return f"{where} hold(s) identifying fields: {shown}"


def _text_finding(path: str) -> str | None:
    import nibabel as nib

    try:
        header = nib.load(path).header
    except Exception:  # noqa: BLE001 - an unreadable file is the `readable` check's business
        return None
    found = []
    for name in _TEXT_FIELDS:
        try:
            value = header[name]
        except (KeyError, ValueError):
            continue
        raw = value.tobytes() if hasattr(value, "tobytes") else bytes(str(value), "utf-8")
        if raw.strip(b"\0 \t\r\n"):
            found.append(name)
    return f"the header holds free text in {', '.join(found)} (it may name the patient)" if found else None


def identifier_findings(files: Sequence[Mapping[str, Sequence[str]]]) -> list[tuple[int, str, str]]:
    """``(case index, file, message)`` for every image or label file with identifying header fields.

    Args:
        files: per case, ``{"image": [files], "label": [files]}`` (a file or a DICOM series folder).
    """
    found: list[tuple[int, str, str]] = []
    for index, case in enumerate(files):
        for key in ("image", "label"):
            for file in case.get(key, []):
                if not file or not Path(file).exists():
                    continue
                message = _text_finding(file) if _is_text_header(file) else _dicom_finding(file)
                if message:
                    found.append((index, file, f"{key}: {message}"))
    return found
