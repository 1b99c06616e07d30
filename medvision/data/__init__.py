"""Data: manifests, splits, dataset sources and the DataModule."""

from __future__ import annotations

from typing import Any

__all__ = ["VolumeDataModule"]


def __getattr__(name: str) -> Any:
    # Lazy: importing medvision.data must not import Lightning/MONAI (fast CLI start-up).
    if name == "VolumeDataModule":
        from medvision.data.datamodule import VolumeDataModule

        return VolumeDataModule
    raise AttributeError(name)
