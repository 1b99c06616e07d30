"""``medvision-gan-report PATH``: the answer and quality figures of a gan_augment folder or a synthetic store.

The library call is :func:`medvision.workflows.gan_report.report`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medvision.utils.errors import report_user_errors

DESCRIPTION = """``medvision-gan-report <store or pipeline dir>``: the quality figures of synthetic samples."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medvision-gan-report", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a gan_augment pipeline folder or a synthetic store folder")
    parser.add_argument(
        "--classifier", help="store only: classifier checkpoint trained on the same data (its features)"
    )
    parser.add_argument(
        "--tstr",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="store only: also train on synthetic / test on real for EPOCHS epochs",
    )
    parser.add_argument("--k", type=int, default=3, help="store only: k of the k-NN precision/recall (default 3)")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    return parser


@report_user_errors
def _main(args: argparse.Namespace) -> None:
    from medvision.utils.runs import json_safe
    from medvision.workflows.gan_report import report

    figures = report(args.path, args.classifier, args.tstr, args.k)
    if args.json_out:
        from medvision.utils.io import atomic_write_json, refuse_input_as_output

        inputs: list[str | None] = [args.path, args.classifier]
        folder = Path(args.path)
        inputs += [str(p) for p in folder.iterdir()] if folder.is_dir() else []
        refuse_input_as_output(args.json_out, inputs, what="--json")
        atomic_write_json(args.json_out, json_safe(figures))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``medvision-gan-report``."""
    _main(_parser().parse_args(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
    main()
