"""``medvision-predict``: segment or classify new cases with a trained model.

The library call is :func:`medvision.inference.predict.predict`. Exit 0: every case written; 3: some
cases skipped (named, with their problem); 2: a user error.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from medvision.utils.errors import report_user_errors


@report_user_errors
def _task(cfg: DictConfig) -> Any:
    import sys

    from medvision.inference.predict import predict

    code = predict(cfg).exit_code
    if code:
        sys.exit(code)


def main() -> None:
    """Console entry point ``medvision-predict`` (exit 0: all written; 3: some cases skipped; 2: user error)."""
    from medvision.utils.config import hydra_main

    hydra_main("predict", _task)


if __name__ == "__main__":
    main()
