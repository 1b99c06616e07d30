"""``medvision-train``: train and test an experiment (Hydra CLI: overrides, ``-m`` sweeps, ``--help``).

The library call is :func:`medvision.train.run`; its metric ``optimized_metric`` is what sweepers optimise.
``ckpt_path=<run>/checkpoints/<name>.ckpt`` continues ``<run>`` in its own folder
(``hydra.run.dir=<run>`` is added unless given; :func:`medvision.utils.resume.resume_overrides`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from medvision.utils.errors import report_user_errors


@report_user_errors
def _task(cfg: DictConfig) -> Any:
    from medvision.train import run

    metrics = run(cfg)
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


def main() -> None:
    """Console entry point ``medvision-train``."""
    import sys

    from medvision.utils.config import hydra_main
    from medvision.utils.resume import resume_overrides

    sys.argv[1:] = resume_overrides(sys.argv[1:])
    hydra_main("train", _task)


if __name__ == "__main__":
    main()
