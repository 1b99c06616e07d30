"""``medvision-eval``: test a checkpoint on the test split of the run that made it.

The library call is :func:`medvision.evaluate.evaluate`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from medvision.utils.errors import report_user_errors


@report_user_errors
def _task(cfg: DictConfig) -> Any:
    from medvision.evaluate import evaluate

    return evaluate(cfg)


def main() -> None:
    """Console entry point ``medvision-eval``."""
    from medvision.utils.config import hydra_main

    hydra_main("eval", _task)


if __name__ == "__main__":
    main()
