"""``medvision-cv-report SWEEP_DIR``: mean and spread of every metric over the folds of a k-fold multirun.

The library call is :func:`medvision.workflows.cv_report.write_report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medvision.utils.errors import MedvisionError, report_user_errors


@report_user_errors
def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="medvision-cv-report",
        description="Mean and standard deviation of every metric over the folds of a k-fold multirun "
        "(medvision-train -m data.num_folds=5 data.fold=0,1,2,3,4 ...), and one row per fold. "
        "Writes cv_report.json and cv_report.md.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder (logs/train/multiruns/<date_time>)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where to write the report (default: sweep_dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise MedvisionError(f"{args.sweep_dir} is not a folder", fix="pass the sweep dir of a medvision-train -m run")
    from medvision.workflows.cv_report import to_markdown, write_report

    report = write_report(args.sweep_dir, args.output_dir)
    print(to_markdown(report))


def main() -> None:
    """Console entry point ``medvision-cv-report``."""
    _main(sys.argv[1:])


if __name__ == "__main__":
    main()
