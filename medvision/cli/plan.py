"""``medvision-plan <data overrides> [--write my_conf/experiment/mydata.yaml]``: a dataset's plan.

Prints every planned choice (value and the rule that made it) for the data and budget the
overrides describe (``data=msd data.root=DIR plan.time_budget=2h``), and writes it as an editable
experiment file with ``--write`` (:mod:`medvision.planning.experiment`). The fingerprint and the
measured step times are cached: a second call on the same data reads no image.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from medvision.utils.errors import report_user_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medvision-plan",
        description="Fingerprint a dataset and print the training plan for a budget (choice, value, rule).",
        epilog="example: medvision-plan data=msd data.root=/data/Task04_Hippocampus plan.time_budget=10min "
        "--write my_conf/experiment/hippocampus.yaml  then  medvision-train --config-dir my_conf "
        "experiment=hippocampus",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, as for medvision-train (data=..., plan.*)")
    parser.add_argument("--write", metavar="FILE", help="write the plan as an experiment file")
    parser.add_argument("--force", action="store_true", help="replace an existing --write file")
    return parser


@report_user_errors
def _plan(args: argparse.Namespace) -> int:
    import tempfile

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from medvision.planning.apply import command_line_keys, kept_keys, plan_for, set_planned
    from medvision.planning.experiment import experiment_name, experiment_text, write_experiment
    from medvision.utils.config import compose, config_dir, quiet_library_loggers

    quiet_library_loggers()
    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose(list(args.overrides), output_dir=scratch)
        if cfg.get("plan") is None or cfg.plan.get("mode") != "auto":  # the demos have no plan: plan anyway
            with open_dict(cfg):
                cfg.plan = OmegaConf.merge(OmegaConf.load(config_dir() / "plan" / "auto.yaml"), {"keep": []})
        plan = plan_for(cfg)
        set_planned(cfg, plan.overrides(), kept_keys(cfg))
        plan.print()
        if args.write:
            data_keys = [k for k in command_line_keys() if k.startswith("data.")]
            choice = str(HydraConfig.get().runtime.choices.get("data"))
            path = write_experiment(args.write, experiment_text(cfg, plan, choice, data_keys), force=args.force)
            folder, name = experiment_name(path)
            where = f"--config-dir {folder} " if folder is not None else "--config-dir <folder holding experiment/> "
            print(f"wrote {path}\nrun it: medvision-train {where}experiment={name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``medvision-plan``."""
    args = _parser().parse_args(argv)
    return _plan(args)


if __name__ == "__main__":
    raise SystemExit(main())
