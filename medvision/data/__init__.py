"""Data: one DataModule base, the DataModules that supply records, manifests, splits, sampling,
transforms, the data audit and dataset sources."""

from __future__ import annotations

from typing import Any

__all__ = ["MedvisionDataModule", "VolumeDataModule"]


def __getattr__(name: str) -> Any:
    # Lazy: importing medvision.data must not import Lightning/MONAI (fast CLI start-up).
    if name == "VolumeDataModule":
        from medvision.data.datamodule import VolumeDataModule

        return VolumeDataModule
    if name == "MedvisionDataModule":
        from medvision.data.base import MedvisionDataModule

        return MedvisionDataModule
    raise AttributeError(name)
