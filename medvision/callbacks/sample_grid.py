"""A per-class grid of GAN samples from fixed noise, every few epochs (``GANModule`` runs).

Row ``c`` holds ``n_per_class`` samples of class ``c``; column ``j`` uses the same noise vector
in every row (seed ``seed + j``), so a column shows what the class label alone changes and a
row across epochs shows what training changed. Samples come from the EMA generator when the
module has one. 3D images show their middle slice along the last axis. The grid is written to
``<output_dir>/<folder>/samples_epoch<NNN>.png`` and sent to TensorBoard/W&B when those loggers
are on (:func:`medvision.callbacks.images.save_pictures`).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from medvision.callbacks.images import enlarge, save_pictures


def grid_picture(
    images: np.ndarray, rows: int, low: float, high: float, pad: int = 2, min_side: int = 256
) -> np.ndarray:
    """Tile images (rows * cols, C, H, W[, D]) into one RGB ``uint8`` picture.

    Args:
        images: samples in row-major order; C is 1 (grey) or 3 (RGB); 3D: the middle slice.
        rows: number of rows (classes).
        low: value shown black (the data's lower bound in model-input space).
        high: value shown white.
        pad: white pixels between tiles.
        min_side: the picture is enlarged (nearest neighbour) to at least this longer side.
    """
    if images.ndim == 5:
        images = images[..., images.shape[-1] // 2]
    n, channels, height, width = images.shape
    cols = -(-n // rows)
    unit = np.clip((images.astype(np.float64) - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat(unit[:, :1], 3, axis=1) if channels != 3 else unit
    picture = np.ones((rows * (height + pad) + pad, cols * (width + pad) + pad, 3))
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        picture[top : top + height, left : left + width] = np.moveaxis(rgb[k], 0, -1)
    return enlarge((picture * 255.0 + 0.5).astype(np.uint8), min_side)


class SampleGrid(pl.Callback):
    """Fixed-noise samples of every class at the end of every ``every_n_epochs``-th training epoch.

    Args:
        output_dir: the run's folder (``${paths.output_dir}``).
        n_per_class: samples (columns) per class.
        seed: seed of the first column's noise (column ``j``: ``seed + j``).
        folder: sub-folder of ``output_dir`` for the PNGs.
        every_n_epochs: draw after every this many epochs (and after the last one).
    """

    def __init__(
        self, output_dir: str, n_per_class: int = 8, seed: int = 0, folder: str = "images", every_n_epochs: int = 1
    ) -> None:
        if n_per_class < 1 or every_n_epochs < 1:
            raise ValueError(f"n_per_class ({n_per_class}) and every_n_epochs ({every_n_epochs}) must be >= 1")
        self.output_dir = Path(output_dir)
        self.n_per_class = n_per_class
        self.seed = seed
        self.folder = folder
        self.every_n_epochs = every_n_epochs
        #: the PNGs written in this process
        self.written: list[Path] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(pl_module, "sample"):
            return
        done = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and done >= trainer.max_epochs
        if done % self.every_n_epochs and not last:
            return
        from medvision.models.gan import noise_for_seeds

        classes = pl_module.num_classes
        noise = noise_for_seeds(range(self.seed, self.seed + self.n_per_class), pl_module.latent_dim).repeat(classes, 1)
        labels = torch.arange(classes).repeat_interleave(self.n_per_class)
        images = pl_module.sample(labels, noise).cpu().numpy()
        picture = grid_picture(images, classes, pl_module.low, pl_module.high)
        names = ", ".join(f"row {c}: {name}" for c, name in enumerate(pl_module.label_names))
        path = self.output_dir / self.folder / f"samples_epoch{trainer.current_epoch:03d}.png"
        self.written += save_pictures(
            trainer, "samples", [picture], [path], captions=[f"epoch {trainer.current_epoch}; {names}"]
        )
