"""``medvision-compare LOG_DIR``: finished MedMNIST runs beside the published MedMNIST v2 numbers.

The library calls are :func:`medvision.baselines.compare.find_runs`, ``comparison_rows`` and ``print_table``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``medvision-compare``."""
    parser = argparse.ArgumentParser(
        prog="medvision-compare",
        description="Print finished MedMNIST runs (metrics.json + config_resolved.yaml under LOG_DIR) beside the "
        "published MedMNIST v2 test ACC/AUC, with the differences.",
    )
    parser.add_argument("log_dir", help="folder searched recursively for finished runs (e.g. logs/)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args(argv)
    if not Path(args.log_dir).is_dir():
        parser.error(f"{args.log_dir} is not a folder")
    from medvision.baselines.compare import comparison_rows, find_runs, print_table

    rows = comparison_rows(find_runs(args.log_dir))
    if not rows:
        print(f"no finished MedMNIST runs (metrics.json + config_resolved.yaml) under {args.log_dir}")
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, args.log_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
