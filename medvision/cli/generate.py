"""``medvision-generate``: write a synthetic sample store from a GAN checkpoint.

The library call is :func:`medvision.inference.generate.generate`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from medvision.utils.errors import report_user_errors


@report_user_errors
def _task(cfg: DictConfig) -> Any:
    from medvision.inference.generate import generate

    generate(cfg)


def main() -> None:
    """Console entry point ``medvision-generate``."""
    from medvision.utils.config import hydra_main

    hydra_main("generate", _task)


if __name__ == "__main__":
    main()
