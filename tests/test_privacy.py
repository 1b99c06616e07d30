"""Patient privacy: ``medvision-data deidentify`` and no identifier in what a run writes or logs.

The identified data are real DICOM files written here with pydicom, carrying known PHI values
(name, patient ID, birth date, accession number, institution, referring physician, dates, UIDs)
in their headers *and* in their folder names (``<NAME>_<MRN>/<ACCESSION>/<Series UID>/``, as a
PACS export names them), plus real files of pydicom's and pydicom-data's test sets (CT, MR,
JPEG 2000, a multi-file CT series, ultrasound, secondary capture, an RT plan with references).
Every check is a byte search or a pixel comparison on the files themselves.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

KEY = "0123456789abcdef-test-key-one"
OTHER_KEY = "fedcba9876543210-test-key-two"
INSTITUTION = "ST ELSEWHERE GENERAL"
PHYSICIAN = "WESTPHALL^DONALD"
#: the real test files de-identified beside the written ones (name -> where pydicom finds it)
REAL_FILES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "SC_rgb.dcm", "US1_J2KR.dcm")
#: a real multi-file series of pydicom's test files (4 CT slices of one Series Instance UID)
REAL_SERIES = "dicomdirtests/77654033/CT2"
SHAPE = (16, 16, 6)  # columns, rows, slices of the written series


def patient(k: int) -> dict[str, str]:
    """The PHI of written patient ``k`` (every value distinctive enough for a byte search)."""
    return {
        "PatientName": f"QUILLFEATHER^AGATHA{k}",
        "PatientID": f"MRN7731{k:03d}",
        "PatientBirthDate": f"1951031{k}",
        "AccessionNumber": f"ACC90210{k}",
        "StudyDate": f"2019051{k}",
        "SeriesDate": f"2019051{k}",
        "AcquisitionDate": f"2019051{k}",
        "ContentDate": f"2019051{k}",
    }


def write_series(folder: Path, k: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """An axial CT series of patient ``k`` (one file per slice, a private tag, a reference to the
    first slice in every other slice), in ``folder``.

    Returns:
        The label (columns, rows, slices: MONAI's voxel order of the series) and the UIDs written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    cols, rows, slices = SHAPE
    label = np.zeros(SHAPE, np.uint8)
    label[4:11, 5:12, 1:5] = 1
    image = (label.astype(np.int16) * 400 + rng.integers(0, 80, SHAPE)).astype(np.int16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(slices)]
    folder.mkdir(parents=True)
    for s in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sops[s]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sops[s]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        for keyword, value in patient(k).items():
            setattr(ds, keyword, value)
        ds.InstitutionName, ds.ReferringPhysicianName = INSTITUTION, PHYSICIAN
        ds.StudyTime, ds.Modality, ds.InstanceNumber = "101500", "CT", s + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * s]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        if s:
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, sops[0]
            ds.ReferencedImageSequence = [ref]
        ds.private_block(0x0011, "ACME HOSPITAL PACS", create=True).add_new(0x01, "LO", patient(k)["PatientName"])
        ds.PixelData = np.ascontiguousarray(image[:, :, s].T).tobytes()  # (rows, columns) in the file
        ds.save_as(folder / f"IM{s:04d}.dcm", enforce_file_format=True)
    return label, [study, series, frame, *sops]


def write_identified(root: Path, n: int = 5) -> dict[str, object]:
    """``n`` patients' series (folders named by name, MRN, accession and Series UID), their label
    maps (NIfTI on the series' grid, the patient's name in ``descrip``) and a manifest.

    Returns:
        ``{"manifest", "phi" (every PHI string), "series" (series folders)}``.
    """
    import nibabel as nib
    from monai.transforms import LoadImage

    export = root / "ST_ELSEWHERE_GENERAL_export"
    rng = np.random.default_rng(0)
    phi: set[str] = {INSTITUTION, PHYSICIAN, "ACME HOSPITAL PACS", "ELSEWHERE"}
    rows, folders = [], []
    for k in range(n):
        values = patient(k)
        phi |= set(values.values()) | {values["PatientName"].split("^")[0]}
        folder = export / f"{values['PatientName'].replace('^', '_')}_{values['PatientID']}"
        series_dir = folder / values["AccessionNumber"] / f"series_{k}"
        label, uids = write_series(series_dir, k, rng)
        series_dir = series_dir.rename(series_dir.parent / uids[1])  # folders named by Series UID
        phi |= set(uids)
        affine = np.asarray(LoadImage(image_only=True)(str(series_dir)).affine)
        label_file = folder / values["AccessionNumber"] / "label.nii.gz"
        img = nib.Nifti1Image(label, affine)
        img.header["descrip"] = values["PatientName"].encode()
        nib.save(img, label_file)
        rows.append([str(series_dir), str(label_file), values["PatientID"], values["AccessionNumber"]])
        folders.append(series_dir)
    manifest = export / "cases.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["image", "label", "subject", "id"], *rows])
    return {"manifest": manifest, "phi": sorted(phi), "series": folders}


def copy_real_files(dest: Path) -> dict[str, list[str]]:
    """The real test files into ``dest``; returns their identifying header values by file."""
    import pydicom
    from pydicom.data import get_testdata_file

    dest.mkdir(parents=True, exist_ok=True)
    for name in REAL_FILES:
        shutil.copy(get_testdata_file(name), dest / name)
    shutil.copytree(Path(pydicom.data.__file__).parent / "test_files" / REAL_SERIES, dest / "ct_series")
    found = {}
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        values = [
            str(ds.get(k, "") or "")
            for k in (
                "PatientName",
                "PatientID",
                "PatientBirthDate",
                "AccessionNumber",
                "StudyDate",
                "ReferringPhysicianName",
            )
        ]
        values += [str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        institution, maker = (str(ds.get(k, "") or "").upper() for k in ("InstitutionName", "Manufacturer"))
        if institution not in maker:  # a test file naming its scanner's maker as institution (kept: not PHI)
            values.append(str(ds.InstitutionName))
        # short values (e.g. ID "1CT1") may occur in any pixel stream by chance: their replacement is
        # checked on the parsed headers (Patient Name and ID are the pseudonym)
        found[path.relative_to(dest).as_posix()] = [v for v in values if len(v) >= 6]
    return found


def tree_hash(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leaks(folder: Path, values: list[str]) -> dict[str, list[str]]:
    """``{value: [files holding it]}``: a byte search of every file under ``folder`` (and of their paths)."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = path.read_bytes() + str(path.relative_to(folder)).encode()
        for value in values:
            if value.encode() in blob:
                found.setdefault(value, []).append(str(path.relative_to(folder)))
    return found


def deidentify(src: Path, out: Path, cwd: Path, key: str = KEY, *extra: str):
    return run_cli(
        "medvision-data", ["deidentify", str(src), str(out), *extra], cwd=cwd, env={"MEDVISION_PRIVACY_KEY": key}
    )


@pytest.fixture(scope="module")
def identified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("identified")
    written = write_identified(root / "hospital")
    written["real"] = copy_real_files(root / "hospital" / "pydicom_files")
    written["root"] = root / "hospital"
    return written


@pytest.fixture(scope="module")
def deidentified(identified: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``medvision-data deidentify`` of the identified folder (key :data:`KEY`), with its mapping."""
    work = tmp_path_factory.mktemp("deidentified")
    src, out = identified["root"], work / "out"
    before = tree_hash(src)
    proc = deidentify(src, out, work, KEY, "--mapping", str(work / "mapping.csv"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert tree_hash(src) == before, "the input folder changed"
    rows = list(csv.DictReader((work / "mapping.csv").open()))
    return {"out": out, "rows": rows, "stdout": proc.stdout, "work": work}


# ----------------------------------------------------------------------------- de-identification
def test_deidentify_removes_every_identifier_and_keeps_pixels_and_series(identified: dict, deidentified: dict) -> None:
    import pydicom
    from monai.transforms import LoadImage

    src, out, rows = identified["root"], deidentified["out"], deidentified["rows"]
    # every written PHI value and every identifying value of the real files: nowhere in OUT
    real = sorted({v for values in identified["real"].values() for v in values})
    assert len(real) > 20
    assert leaks(out, identified["phi"] + real) == {}
    assert leaks(src, identified["phi"]), "the search must find the values in the input"
    written = [r for r in rows if r["output"]]
    assert len(written) == 5 * SHAPE[2] + len(REAL_FILES) + 4
    report = json.loads((out / "deidentification_report.json").read_text())
    assert report["files_written"] == len(written) and report["patients"] == len({r["pseudonym"] for r in written})
    flagged = {item["file"]: item["reasons"] for item in report["may_show_burned_in_text"]}
    by_input = {r["input"]: r["output"] for r in written}
    assert flagged == {  # the ultrasound and the two secondary captures (SOP class), nothing else
        by_input["pydicom_files/US1_J2KR.dcm"]: ["ultrasound"],
        by_input["pydicom_files/SC_rgb.dcm"]: ["secondary capture"],
        by_input["pydicom_files/JPEG2000.dcm"]: ["secondary capture"],
    }
    in_series: dict[str, set[str]] = {}
    out_series: dict[str, set[str]] = {}
    for row in written:
        a, b = pydicom.dcmread(src / row["input"]), pydicom.dcmread(out / row["output"])
        # pixels unchanged: the same bytes, the same decoded array
        assert (
            a.get("PixelData") == b.get("PixelData") and a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
        )
        if "PixelData" in a:  # all but the RT plan
            assert np.array_equal(a.pixel_array, b.pixel_array), row["input"]
        # de-identified, headers as the profile says
        assert b.PatientIdentityRemoved == "YES" and "Basic Profile" in str(b.DeidentificationMethod)
        assert b.PatientName == b.PatientID == row["pseudonym"] and not b.get("PatientBirthDate")
        assert not any(tag.is_private for tag in list(b.keys())), row["input"]
        assert b.SOPInstanceUID == b.file_meta.MediaStorageSOPInstanceUID == row["new_sop_uid"]
        # dates moved by one offset per patient: intervals survive
        if a.get("StudyDate") and a.get("ContentDate"):
            days = lambda d: np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:8]}")  # noqa: E731
            assert days(b.ContentDate) - days(b.StudyDate) == days(a.ContentDate) - days(a.StudyDate)
            assert int((days(b.StudyDate) - days(a.StudyDate)).astype(int)) == int(row["date_shift_days"]) < 0
        in_series.setdefault(str(a.SeriesInstanceUID), set()).add(row["output"])
        out_series.setdefault(str(b.SeriesInstanceUID), set()).add(row["output"])
        # references point at the new UIDs of the same files
        for ref in b.get("ReferencedImageSequence", []):
            assert ref.ReferencedSOPInstanceUID in {r["new_sop_uid"] for r in written}
    # one series in = one series out = one folder
    assert sorted(map(sorted, in_series.values())) == sorted(map(sorted, out_series.values()))
    assert all(len({str(Path(f).parent) for f in files}) == 1 for files in out_series.values())
    # MONAI's reader reads each written series as the volume it was
    for folder in identified["series"]:
        outputs = {str(Path(by_input[p.relative_to(src).as_posix()]).parent) for p in folder.iterdir()}
        (series_dir,) = outputs
        before, after = (LoadImage(image_only=True)(str(d)) for d in (folder, out / series_dir))
        assert np.array_equal(np.asarray(before), np.asarray(after)) and np.allclose(before.affine, after.affine)
    real_series = {
        str(Path(by_input[f"pydicom_files/ct_series/{p.name}"]).parent)
        for p in (src / "pydicom_files" / "ct_series").iterdir()
    }
    assert len(real_series) == 1 and LoadImage(image_only=True)(str(out / real_series.pop())).shape[-1] == 4
    # names in OUT are pseudonymous: no input file or folder name is reused
    names = {part for r in written for part in Path(r["input"]).parts}
    assert not names & {part for r in written for part in Path(r["output"]).parts}


def test_mapping_must_stay_outside_out_and_a_key_is_needed(identified: dict, tmp_path: Path) -> None:
    proc = deidentify(
        identified["root"], tmp_path / "out", tmp_path, KEY, "--mapping", str(tmp_path / "out" / "map.csv")
    )
    assert proc.returncode == 2 and proc.stdout.count("medvision error:") == 1, proc.stdout
    assert "inside OUT" in proc.stdout and not (tmp_path / "out").exists()
    # no key named, and no default key file (an empty config folder)
    no_key = {
        "MEDVISION_PRIVACY_KEY": "",
        "MEDVISION_PRIVACY_KEY_FILE": "",
        "XDG_CONFIG_HOME": str(tmp_path / "no_config"),
    }
    proc = run_cli(
        "medvision-data", ["deidentify", str(identified["root"]), str(tmp_path / "out")], tmp_path, env=no_key
    )
    assert proc.returncode == 2 and "no privacy key" in proc.stdout, proc.stdout


def test_same_key_same_pseudonyms_another_key_others(identified: dict, deidentified: dict, tmp_path: Path) -> None:
    from medvision.data.deidentify import Pseudonyms
    from medvision.utils.privacy import Privacy

    src, first = identified["root"], deidentified["out"]
    again, other = tmp_path / "again", tmp_path / "other"
    assert deidentify(src, again, tmp_path, KEY).returncode == 0
    assert deidentify(src, other, tmp_path, OTHER_KEY).returncode == 0
    assert tree_hash(again) == tree_hash(first)  # the same names and the same bytes
    mine, theirs = set(tree_hash(first)), set(tree_hash(other))
    assert mine.isdisjoint(theirs - {"deidentification_report.json"})
    patients = {r["pseudonym"] for r in deidentified["rows"] if r["output"]}
    assert not patients & {Path(f).parts[0] for f in theirs}
    # the keyed pieces one by one
    one, two = Pseudonyms(KEY.encode()), Pseudonyms(OTHER_KEY.encode())
    assert one.uid("1.2.3") == Pseudonyms(KEY.encode()).uid("1.2.3") != two.uid("1.2.3")
    assert one.patient("id:MRN7731000") != two.patient("id:MRN7731000")
    a, b = (Privacy(log_ids="pseudonym", _key=k.encode()) for k in (KEY, OTHER_KEY))
    assert a.pseudonym("case_7") == Privacy(log_ids="pseudonym", _key=KEY.encode()).pseudonym("case_7")
    assert a.pseudonym("case_7") != b.pseudonym("case_7") and a.token("/data/x") != b.token("/data/x")


# ----------------------------------------------------------------------------- runs and logs
def test_a_run_on_identified_dicom_writes_no_identifier_anywhere(
    identified: dict, medvision_home: Path, tmp_path: Path
) -> None:
    """A training run (every logger: CSV, TensorBoard, W&B offline) on identified DICOM series, then a
    prediction into the run folder: a byte search of every file there finds no PHI value."""
    from conftest import compose_in
    from medvision.evaluate import eval_config
    from medvision.inference.predict import predict
    from medvision.utils.errors import MedvisionError
    from medvision.utils.privacy import Privacy

    run = tmp_path / "run"
    proc = run_cli(
        "medvision-train",
        [
            "data=csv",
            f"data.manifest={identified['manifest']}",
            "data.num_workers=0",
            "logger=many",
            "debug=limit",
            "trainer.max_epochs=1",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        home=medvision_home,
        env={"MEDVISION_PRIVACY_KEY": KEY},
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "privacy.log_ids=pseudonym (auto: the data come from DICOM)" in proc.stdout
    series = identified["series"][0]
    cfg = compose_in(
        medvision_home,
        run / "predict",
        [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"input={series}", f"output={tmp_path / 'masks'}"],
        config_name="predict",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDVISION_PRIVACY_KEY", KEY)
        summary = predict(cfg)
    assert list(summary.written) == [series.name]  # the API keeps names; what it writes does not
    # every file the run wrote: configs (.hydra, config_resolved.yaml, checkpoints), logs (CSV,
    # TensorBoard events, W&B's offline run), pictures (names and PNG bytes), test_cases.csv,
    # splits.json, the audit report, the prediction summary
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    for expected in (
        ".hydra/overrides.yaml",
        "config_resolved.yaml",
        "checkpoints/best.ckpt",
        "csv/metrics.csv",
        "csv/hparams.yaml",
        "test_cases.csv",
        "splits.json",
        "data_audit.json",
        "run_info.json",
        "predict/predict_summary.json",
    ):
        assert expected in files, sorted(files)
    assert any(f.startswith("tensorboard/events.out") for f in files)
    assert any(f.startswith("wandb/offline-run-") and f.endswith(".wandb") for f in files)
    assert any(f.startswith("images/overlay_test_") for f in files)
    assert leaks(run, identified["phi"]) == {}
    assert leaks(identified["root"], identified["phi"]), "the search must find the values where they are"
    # the pseudonyms are the key's: the test case's accession number, hashed under KEY
    pseudonyms = Privacy(log_ids="pseudonym", _key=KEY.encode())
    accessions = [patient(k)["AccessionNumber"] for k in range(5)]
    splits = json.loads((run / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == sorted(map(pseudonyms.pseudonym, accessions))
    rows = list(csv.DictReader((run / "test_cases.csv").open()))
    assert [r["id"] for r in rows] == splits["test"]
    stored = (run / "config_resolved.yaml").read_text()
    assert f"manifest: {pseudonyms.token(str(identified['manifest']))}" in stored
    # medvision-eval cannot guess the hidden data path: it asks for it
    eval_cfg = compose_in(medvision_home, tmp_path / "eval", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}"], "eval")
    with pytest.raises(MedvisionError, match=r"data\.manifest hidden by the training run's privacy"):
        eval_config(eval_cfg, [])
    again = eval_config(eval_cfg, [f"data.manifest={identified['manifest']}"])
    assert again.data.manifest == str(identified["manifest"])


def test_require_deidentified_names_files_and_fields_and_passes_on_the_deidentified_copy(
    identified: dict, deidentified: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import nibabel as nib

    from medvision.cli.data import main

    args = ["validate", "--report", str(tmp_path / "audit.json"), "data=csv", "data.require_deidentified=true"]
    with pytest.raises(SystemExit) as stop:
        main([*args, f"data.manifest={identified['manifest']}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("medvision error:") == 1 and "10 error(s) in 5 of 5 cases" in err, err
    for folder in identified["series"]:
        assert str(folder) in err and str(folder.parent / "label.nii.gz") in err
    for field in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName", "private tags"):
        assert field in err
    assert "free text in descrip" in err
    # the de-identified copy, with the label maps written again without text: no finding
    out, rows = deidentified["out"], deidentified["rows"]
    lines = [["image", "label", "subject"]]
    for k, folder in enumerate(identified["series"]):
        relative = folder.relative_to(identified["root"]).as_posix()
        (output,) = {str(Path(r["output"]).parent) for r in rows if r["input"].startswith(relative + "/")}
        label = nib.load(folder.parent / "label.nii.gz")
        label_file = tmp_path / "labels" / f"case{k}.nii.gz"
        label_file.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(np.asarray(label.dataobj), label.affine), label_file)
        lines.append([str(out / output), str(label_file), output.split("/")[0]])
    manifest = tmp_path / "deidentified.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows(lines)
    assert main([*args, f"data.manifest={manifest}"]) == 0
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["ok"] and not [p for p in report["problems"] if p["check"] == "identifiers"], report["problems"]


# ----------------------------------------------------------------------------- the settings
def test_what_each_log_ids_mode_shows() -> None:
    from medvision.data.dicom_modality import DicomModalityDataModule
    from medvision.inference.predict import Case, probabilities_csv
    from medvision.utils.errors import MedvisionError
    from medvision.utils.privacy import Privacy

    key = KEY.encode()
    samples = [
        {"image": "/data/DOE_JOHN_MRN1/ct", "id": "DOE_JOHN_MRN1"},
        {"image": "/data/x", "id": "case-0123456789ab"},
    ]
    config = {"data": {"manifest": "/data/DOE_JOHN_MRN1/cases.csv", "root": None}, "input": "/scans/DOE", "seed": 1}
    cases = [(Case("DOE_JOHN_MRN1", Path("/data/DOE_JOHN_MRN1/ct.dcm")), [0.25, 0.75])]
    shown = {}
    for mode in ("path", "pseudonym", "none"):
        privacy = Privacy(log_ids=mode, _key=key)
        shown[mode] = (
            list(privacy.shown_samples(samples)),
            privacy.redact_config(config),
            probabilities_csv(cases, ["a", "b"], "multiclass", privacy),
        )
    assert shown["path"][0] == samples and shown["path"][1] == config
    assert shown["path"][2].splitlines()[1] == "DOE_JOHN_MRN1,/data/DOE_JOHN_MRN1/ct.dcm,b,0.25,0.75"
    pseudonym = Privacy(log_ids="pseudonym", _key=key).pseudonym("DOE_JOHN_MRN1")
    assert [s["id"] for s in shown["pseudonym"][0]] == [pseudonym, "case-0123456789ab"]  # pseudonyms kept
    assert [("id" in s) for s in shown["none"][0]] == [False, False]
    for mode in ("pseudonym", "none"):
        assert "DOE" not in json.dumps(shown[mode][1]) + shown[mode][2] and shown[mode][1]["seed"] == 1
        assert shown[mode][1]["data"]["manifest"].startswith("<private:") and shown[mode][1]["data"]["root"] is None
    assert shown["pseudonym"][2].splitlines()[1].startswith(f"{pseudonym},<private:")
    assert shown["none"][2].splitlines()[1].startswith("case_0000,<private:")
    # auto: pseudonyms for DICOM data (the DICOM demo says so), ids as named otherwise
    assert Privacy(from_dicom=True).mode == "pseudonym" and Privacy(from_dicom=False).mode == "path"
    assert DicomModalityDataModule().privacy.mode == "pseudonym"
    with pytest.raises(MedvisionError, match=r"privacy\.log_ids='names'"):
        Privacy(log_ids="names")


def test_the_key_is_made_once_kept_private_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medvision.utils.errors import MedvisionError
    from medvision.utils.privacy import new_key_file, read_key

    for var in ("MEDVISION_PRIVACY_KEY", "MEDVISION_PRIVACY_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with pytest.raises(MedvisionError, match="no privacy key is given"):
        read_key(create=False)
    key, where = read_key()
    assert where == str(tmp_path / "config" / "medvision" / "privacy.key") and len(key) == 64
    assert (Path(where).stat().st_mode & 0o777) == 0o600
    assert read_key() == (key, where)
    new_key_file(where)  # another process racing to make it: the first key stays
    assert read_key()[0] == key
    monkeypatch.setenv("MEDVISION_PRIVACY_KEY", "short")
    with pytest.raises(MedvisionError, match="at least 16"):
        read_key()
    with pytest.raises(MedvisionError, match="does not exist"):
        read_key(tmp_path / "missing.key")
