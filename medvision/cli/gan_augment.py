"""``medvision-gan-augment``: does GAN augmentation of a rare class help a classifier?

The library call is :func:`medvision.workflows.gan_augment.gan_augment` (primary config ``gan_augment``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from medvision.utils.errors import report_user_errors


@report_user_errors
def _task(cfg: DictConfig) -> Any:
    from medvision.workflows.gan_augment import gan_augment

    gan_augment(cfg)


def main() -> None:
    """Console entry point ``medvision-gan-augment``."""
    from medvision.utils.config import hydra_main

    hydra_main("gan_augment", _task)


if __name__ == "__main__":
    main()
