"""``medvision-auto <train overrides> [--folds 5] [--out DIR] [--launcher joblib]``: folder -> evaluated ensemble.

Plans the data, cross-validates, chooses the postprocessing on the CV predictions, writes the
ensemble folder and the report (:mod:`medvision.workflows.auto`). The same command again
continues an interrupted run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from medvision.utils.errors import report_user_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medvision-auto",
        description="Audit, fingerprint and plan a dataset, cross-validate, choose the postprocessing on the CV "
        "predictions, and write the ensemble folder and a report. Run the same command again to continue.",
        epilog="example: medvision-auto data=msd data.root=/data/Task04_Hippocampus plan.time_budget=10min; then "
        "medvision-predict ckpt_path=<out>/ensemble input=<images> output=<masks>",
    )
    parser.add_argument("overrides", nargs="*", help="medvision-train overrides of every fold (data=..., plan.*)")
    parser.add_argument("--folds", type=int, default=5, help="folds of the cross-validation (default 5)")
    parser.add_argument(
        "--out", type=Path, default=None, help="pipeline folder (default: <paths.log_dir>/auto/<dataset>_<k>fold)"
    )
    parser.add_argument(
        "--launcher", default=None, help="hydra/launcher of the folds (default: the configured one; joblib, ...)"
    )
    parser.add_argument("--tta", default="mirror", choices=["mirror", "none"], help="TTA of the CV predictions")
    return parser


def _default_out(overrides: Sequence[str], folds: int) -> Path:
    """``<paths.log_dir>/auto/<data root's name or data choice>_<k>fold``: the same command, the same folder."""
    import tempfile

    from hydra.core.hydra_config import HydraConfig

    from medvision.utils.config import compose

    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose(list(overrides), output_dir=scratch)
        root = cfg.data.get("root")
        name = Path(str(root)).name if root else str(HydraConfig.get().runtime.choices.get("data"))
        return Path(str(cfg.paths.log_dir)) / "auto" / f"{name}_{folds}fold"


@report_user_errors
def _auto(args: argparse.Namespace) -> int:
    from medvision.utils.config import quiet_library_loggers
    from medvision.workflows.auto import auto

    quiet_library_loggers()
    out = (args.out or _default_out(args.overrides, args.folds)).expanduser().resolve()
    report = auto(list(args.overrides), out, num_folds=args.folds, launcher=args.launcher, tta=args.tta)
    print(f"medvision-auto: report {out / 'auto_report.md'}, ensemble {report['ensemble']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``medvision-auto``."""
    return _auto(_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
