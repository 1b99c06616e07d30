"""``medvision-export``: export a trained network to TorchScript or ONNX, checked against PyTorch.

The library call is :func:`medvision.inference.export.export`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from medvision.utils.errors import report_user_errors


@report_user_errors
def _task(cfg: DictConfig) -> Any:
    from medvision.inference.export import export

    export(cfg)


def main() -> None:
    """Console entry point ``medvision-export``."""
    from medvision.utils.config import hydra_main

    hydra_main("export", _task)


if __name__ == "__main__":
    main()
