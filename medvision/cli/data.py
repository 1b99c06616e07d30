"""``medvision-data``: dataset commands (subcommands; each answers ``--help`` fast).

    medvision-data fetch medmnist pathmnist [--size 64] [--dest DIR]
    medvision-data validate [--report FILE] [overrides ...]

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
    result = instantiate(cfg.data).run_audit()
    print(f"report: {report}")
    if not result.ok:
        raise result.error(str(report))
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
    return parser


@report_user_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``medvision-data``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
