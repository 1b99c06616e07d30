"""``medvision-data``: dataset commands (subcommands; each answers ``--help`` fast).

    medvision-data fetch medmnist pathmnist [--size 64] [--dest DIR]
    medvision-data validate [--report FILE] [overrides ...]
    medvision-data deidentify IN OUT [--key KEYFILE] [--mapping FILE]

Imports stay inside the subcommands so that ``--help`` does not load torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from medvision.utils.errors import report_user_errors


def _fetch(args: argparse.Namespace) -> int:

    from medvision.data.fetch import fetch_medmnist

    dest = Path(args.dest) if args.dest else _default_data_dir() / "medmnist"
    path = fetch_medmnist(args.flag, args.size, dest)
    print(f"{args.flag} ({args.size} px): {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    """Compose the train config with the overrides, prepare the data, audit every case."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from medvision.utils.config import compose
    from medvision.utils.errors import MedvisionError
    from medvision.utils.validate import validate_config

    report = Path(args.report or "data_audit.json").resolve()
    cfg = compose(list(args.overrides), output_dir=Path.cwd())
    validate_config(cfg, groups=("data",))
    if "audit_report" not in cfg.data:
        raise MedvisionError(
            f"{cfg.data._target_} has no file-by-file audit (its reader checks the files it loads)",
            fix="medvision-data validate checks datasets of images and label maps (data=msd, data=csv, ...)",
        )
    with open_dict(cfg.data):
        cfg.data.audit = True
        cfg.data.audit_report = str(report)
    datamodule = instantiate(cfg.data)
    if str(cfg.privacy.log_ids) != "auto":  # the report is the user's own check: paths shown unless asked not to
        from medvision.data.privacy import use_privacy

        use_privacy(cfg.privacy, datamodule)
    else:
        from medvision.utils.privacy import Privacy

        datamodule.privacy = Privacy(log_ids="path")
    result = datamodule.run_audit()
    print(f"report: {report}")
    if not result.ok:
        raise result.error(str(report))
    return 0


def _deidentify(args: argparse.Namespace) -> int:
    """De-identify the DICOM files of IN into OUT (:mod:`medvision.data.deidentify`); print what was done."""
    from medvision.data.deidentify import REPORT_NAME, deidentify_folder
    from medvision.utils.privacy import read_key

    key, where = read_key(args.key, create=False)
    report = deidentify_folder(args.input, args.output, key, mapping=args.mapping)
    out = Path(args.output)
    skipped = ", ".join(f"{n} {why}" for why, n in report.not_copied.items())
    print(
        f"{len(report.written)} DICOM file(s) de-identified into {out} ({report.patients} patient(s), "
        f"{report.studies} study(ies), {report.series} series); key {report.key_fingerprint} from {where}"
    )
    if skipped:
        print(f"not copied: {skipped}")
    if report.burned_in:
        print(f"{len(report.burned_in)} file(s) may show burned-in text or a face (pixels are copied as they are):")
        for file, reasons in sorted(report.burned_in.items()):
            print(f"  {file}: {', '.join(reasons)}")
    print(f"report: {out / REPORT_NAME}" + (f"; mapping (keep it private): {args.mapping}" if args.mapping else ""))
    return 0


def _default_data_dir() -> Path:
    """``paths.data_dir`` of the default config: ``$MEDVISION_HOME/data`` or ``./data``."""
    import os

    return Path(os.environ.get("MEDVISION_HOME") or os.getcwd()) / "data"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``medvision-data`` (subcommands register here)."""
    parser = argparse.ArgumentParser(prog="medvision-data", description="medvision dataset commands")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download an official dataset file (checksum-verified)")
    fetch_sets = fetch.add_subparsers(dest="dataset", required=True)
    medmnist = fetch_sets.add_parser(
        "medmnist",
        help="a MedMNIST v2/+ .npz from Zenodo (record 10519652)",
        description="Download <flag>.npz / <flag>_<size>.npz into DEST (default: $MEDVISION_HOME/data/medmnist, "
        "where data=medmnist reads it). Offline, it fails with the file's address and where to put it.",
    )
    medmnist.add_argument("flag", help="e.g. pathmnist, chestmnist, organmnist3d")
    medmnist.add_argument("--size", type=int, default=28, help="28, 64, 128, 224 (2D); 28, 64 (3D); default 28")
    medmnist.add_argument("--dest", default=None, help="folder of the .npz files")
    medmnist.set_defaults(func=_fetch)
    validate = sub.add_parser(
        "validate",
        help="audit every case of a dataset (files, shapes, affines, labels, NaNs, leakage)",
        description="Compose the training config with OVERRIDES (as medvision-train takes them, e.g. "
        "data=msd data.root=/data/Task04_Hippocampus), prepare the data, check every case, print a table "
        "of all problems and write them as JSON. Exit 0 when no error is found, 2 otherwise.",
    )
    validate.add_argument("--report", default=None, help="JSON report to write (default: ./data_audit.json)")
    validate.add_argument("overrides", nargs="*", help="Hydra overrides of the training config")
    validate.set_defaults(func=_validate)
    deidentify = sub.add_parser(
        "deidentify",
        help="copy a DICOM folder without patient identifiers (DICOM PS3.15 Basic Profile)",
        description="Copy every DICOM file under IN to OUT (a new folder) de-identified by the DICOM PS3.15 Basic "
        "Application Level Confidentiality Profile: identifying attributes removed or replaced, private tags removed, "
        "UIDs replaced consistently (series and references stay intact), dates shifted by one offset per patient. "
        "Pseudonyms, UIDs and date shifts are keyed hashes of the originals under your key: the same input and key "
        "give the same output. Pixel data are copied as they are: files that may show burned-in text (or a face) "
        "are listed. Files that are not DICOM are not copied. IN is never written to.",
    )
    deidentify.add_argument("input", metavar="IN", help="folder of DICOM files (any depth, any file names)")
    deidentify.add_argument("output", metavar="OUT", help="new (or empty) folder for the de-identified files")
    deidentify.add_argument(
        "--key",
        default=None,
        metavar="KEYFILE",
        help="file holding your secret key (default: $MEDVISION_PRIVACY_KEY, else the file "
        "$MEDVISION_PRIVACY_KEY_FILE)",
    )
    deidentify.add_argument(
        "--mapping",
        default=None,
        metavar="FILE",
        help="write the table original -> pseudonym (CSV) here, for the data owner (never inside OUT or IN)",
    )
    deidentify.set_defaults(func=_deidentify)
    return parser


@report_user_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``medvision-data``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
