"""LightningModules: one per problem (segment, classify, generate)."""

from __future__ import annotations

from typing import Any

__all__ = ["ClassifierModule", "GANModule", "SegmenterModule"]


def __getattr__(name: str) -> Any:
    # Lazy: importing medvision.models must not import Lightning/MONAI (fast CLI start-up).
    if name == "SegmenterModule":
        from medvision.models.segmenter import SegmenterModule

        return SegmenterModule
    if name == "ClassifierModule":
        from medvision.models.classifier import ClassifierModule

        return ClassifierModule
    if name == "GANModule":
        from medvision.models.gan import GANModule

        return GANModule
    raise AttributeError(name)
