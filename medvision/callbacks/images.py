"""Pictures of a run, in one place: PNG files written atomically, and the same pictures sent to
the run's TensorBoard and W&B loggers.

The overlay, confusion-matrix, ROC and Grad-CAM callbacks all go through :func:`save_pictures`,
so a picture is always a PNG under the run folder (also in csv-only runs) and, when those
loggers are on, a TensorBoard image and a W&B image.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medvision.utils.io import atomic_write_bytes


def to_unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to 0..1 between its minimum and maximum (a constant array gives zeros)."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=np.float64)


def enlarge(picture: np.ndarray, min_side: int) -> np.ndarray:
    """Repeat pixels (nearest neighbour, an integer factor) until the longer side is ``>= min_side``."""
    scale = max(1, -(-min_side // max(picture.shape[:2])))
    return picture.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else picture


def safe_stem(text: str) -> str:
    """``text`` as a file-name stem: runs of characters other than ``A-Za-z0-9_.-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "image"


def png_bytes(picture: np.ndarray) -> bytes:
    """``picture`` (H, W, 3) ``uint8`` RGB, or (H, W) grey, encoded as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | os.PathLike[str], picture: np.ndarray) -> Path:
    """Write ``picture`` (RGB ``uint8``) as a PNG file, atomically."""
    return atomic_write_bytes(path, png_bytes(picture))


def figure_to_array(figure: Any) -> np.ndarray:
    """Render a matplotlib ``Figure`` with the Agg canvas (no pyplot, no display) to RGB ``uint8``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_pictures(
    trainer: Any,
    key: str,
    pictures: Sequence[np.ndarray],
    paths: Sequence[str | os.PathLike[str]],
    captions: Sequence[str] | None = None,
    wandb_images: Sequence[np.ndarray] | None = None,
    wandb_extra: dict[str, Sequence[Any]] | None = None,
) -> list[Path]:
    """Write each picture as a PNG and send the pictures to the trainer's TensorBoard/W&B loggers.

    Call on global rank 0 only (the callbacks check ``trainer.is_global_zero``).

    Args:
        trainer: the Lightning ``Trainer`` (its ``loggers`` and ``global_step`` are used).
        key: the logger key; TensorBoard tags are ``<key>/<k>`` (``k`` = index, 2 digits).
        pictures: RGB ``uint8`` arrays (H, W, 3), one per file.
        paths: one PNG path per picture.
        captions: one caption per W&B image.
        wandb_images: what W&B receives instead of ``pictures`` (e.g. grey slices whose label and
            prediction go as interactive masks); default: ``pictures``.
        wandb_extra: further per-image lists for ``wandb.Image`` (e.g. ``masks``).

    Returns:
        The PNG paths written.
    """
    if len(paths) != len(pictures):
        raise ValueError(f"{len(pictures)} pictures but {len(paths)} paths")
    written = [write_png(path, picture) for path, picture in zip(paths, pictures, strict=True)]
    step = int(trainer.global_step)
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            for k, picture in enumerate(pictures):
                logger.experiment.add_image(f"{key}/{k:02d}", picture, step, dataformats="HWC")
            logger.experiment.flush()
        elif kind == "WandbLogger":
            images = list(wandb_images if wandb_images is not None else pictures)
            extra = {name: list(values) for name, values in (wandb_extra or {}).items()}
            if captions is not None and len(captions) == len(images):
                extra["caption"] = list(captions)
            logger.log_image(key=key, images=images, step=step, **extra)
    return written


class EpochSchedule:
    """When a picture callback draws during validation: at the first validation at or after
    each multiple of ``every_n_epochs`` epochs, and at the validation of the last epoch.

    Independent of ``check_val_every_n_epoch``: with validation every 3 epochs and
    ``every_n_epochs=10``, pictures come at epochs 12, 21, 30, ... (1-based) and at the end.
    The sanity-check validation never draws.

    Args:
        every_n_epochs: the period in epochs; ``None`` or ``0``: never during validation.
    """

    def __init__(self, every_n_epochs: int | None) -> None:
        if every_n_epochs is not None and every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0 or null, not {every_n_epochs}")
        self.every_n_epochs = every_n_epochs or 0
        self.next_due = self.every_n_epochs

    def due(self, trainer: Any) -> bool:
        """Whether this validation (``trainer.current_epoch``, 0-based) draws pictures."""
        if not self.every_n_epochs or trainer.sanity_checking:
            return False
        done = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and done >= trainer.max_epochs
        return done >= self.next_due or last

    def drawn(self, trainer: Any) -> None:
        """Record that this validation drew: the next pictures come at the next multiple."""
        done = trainer.current_epoch + 1
        self.next_due = (done // self.every_n_epochs + 1) * self.every_n_epochs
