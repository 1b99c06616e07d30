"""``medvision-compare PATH...``: finished runs of any problem in one table, one row per setting.

``--paper medmnist`` puts finished MedMNIST runs beside the published MedMNIST v2 numbers instead.
The library calls are :func:`medvision.workflows.compare_runs.report` and, for ``--paper``,
:mod:`medvision.baselines.compare`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from medvision.utils.errors import report_user_errors


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``medvision-compare``."""
    parser = argparse.ArgumentParser(
        prog="medvision-compare",
        description="Compare finished runs (metrics.json + config_resolved.yaml): one table per problem, one row "
        "per setting (the runs that differ only in seed or fold: mean ± std, n), the setting's swept keys, the "
        "monitor's best value and the test metrics, sorted by the monitor. With --paper medmnist: MedMNIST runs "
        "beside the published MedMNIST v2 test ACC/AUC.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="run folders, or folders holding runs (a multirun folder, logs/)"
    )
    parser.add_argument(
        "--paper", choices=["medmnist"], default=None, help="compare with a paper's published numbers instead"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--all-metrics", action="store_true", help="every test metric (default: Dice/HD95, ACC/AUC, FD)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="also write DIR/compare.md, compare.csv, compare.json"
    )
    return parser


def _paper(paths: Sequence[str], as_json: bool) -> int:
    """Finished MedMNIST runs beside the paper's ACC/AUC; exit code 1 when there are none."""
    from medvision.baselines.compare import comparison_rows, find_runs, print_table

    runs = list({run.path: run for path in paths for run in find_runs(path)}.values())
    rows = comparison_rows(runs)
    if not rows:
        print(f"no finished MedMNIST runs (metrics.json + config_resolved.yaml) under {', '.join(paths)}")
        return 1
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ", ".join(paths))
    return 0


@report_user_errors
def _main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.paper:
        if args.out is not None or args.all_metrics:
            parser.error("--out and --all-metrics are options of the runs table, not of --paper")
        for path in args.paths:
            if not Path(path).is_dir():
                parser.error(f"{path} is not a folder")
        return _paper(args.paths, args.json)
    from medvision.workflows.compare_runs import report

    report(args.paths, all_metrics=args.all_metrics, out=args.out, as_json=args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``medvision-compare``."""
    return _main(sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    raise SystemExit(main())
