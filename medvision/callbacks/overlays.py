"""Segmentation overlays: image, true label and prediction side by side, during validation and at test.

For the first ``n_images`` validation cases (every ``every_n_epochs`` epochs, see
:class:`medvision.callbacks.images.EpochSchedule`) and the first ``n_images`` test cases, the
callback runs the module's own whole-image inference (``SegmenterModule.infer``: the sliding
window the metrics use), and draws one picture per case: columns ``image | label | prediction``,
one row for a 2D image, three rows for a volume (the middle slice across each axis; sagittal,
coronal and axial for the RAS-oriented volumes of ``conf/data/transforms/seg3d.yaml``). Each
label value has one colour (:data:`PALETTE`), blended over the grey image; a legend names them.

Outputs (global rank 0 only), always: PNG files in ``<output_dir>/<folder>/``
(``overlay_val_epoch0009_00_<case>.png``, ``overlay_test_00_<case>.png``; epochs 0-based as in
``metrics.csv``); with ``logger=tensorboard``: images ``overlay/<stage>/<k>``; with
``logger=wandb``: ``wandb.Image`` of each grey slice with the label and the prediction as
interactive masks (key ``overlay/<stage>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from medvision.callbacks.images import EpochSchedule, safe_stem, save_pictures

#: RGB colour of label value 1, 2, ... (value 0, the background, is not coloured); cycles after 10
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [255, 225, 25],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.uint8,
)

#: plane names of the middle slices of a volume, by the axis they cut (RAS arrays)
PLANES = ("sagittal", "coronal", "axial")

_GAP = 2  # pixels between panels
_BAR = 16  # height of the title bar and of the legend bar


def class_colour(value: int) -> np.ndarray:
    """The RGB colour (uint8) of label value ``value >= 1``."""
    return PALETTE[(value - 1) % len(PALETTE)]


def mid_slices(volume: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(plane name, 2D slice)`` pairs: the image itself for 2D, the middle slice across each axis for 3D.

    3D slices are rotated by 90 degrees so that the second remaining axis points up (superior
    up in sagittal and coronal views, anterior up in the axial view of a RAS array).

    Args:
        volume: (H, W) or (X, Y, Z), no channel axis.
    """
    if volume.ndim == 2:
        return [("image", volume)]
    if volume.ndim != 3:
        raise ValueError(f"expected a 2D or 3D array without channels, got shape {volume.shape}")
    out = []
    for axis, plane in enumerate(PLANES):
        section = np.take(volume, volume.shape[axis] // 2, axis=axis)
        out.append((plane, np.rot90(section)))
    return out


def grey(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Intensities clipped to ``[lo, hi]`` and scaled to 0..1."""
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float64)
    return np.clip((image.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)


def colour_mask(base: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """Blend the colour of each label value over an RGB image (0..1): ``(1 - alpha) * base + alpha * colour``."""
    out = base.copy()
    for value in np.unique(mask):
        if value <= 0:
            continue
        where = mask == value
        out[where] = (1.0 - alpha) * base[where] + alpha * class_colour(int(value)) / 255.0
    return out


def _text(picture: np.ndarray, items: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """Write white text at ``(x, y)`` positions onto an RGB ``uint8`` picture."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for x, y, text in items:
        draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas).copy()


def overlay_picture(
    image: np.ndarray,
    label: np.ndarray | None,
    prediction: np.ndarray,
    label_names: Sequence[str],
    alpha: float = 0.5,
    min_side: int = 128,
) -> np.ndarray:
    """``image | label | prediction`` panels, one row per plane, with titles and a colour legend.

    Args:
        image: (C, H, W) or (C, X, Y, Z); the first channel is shown.
        label: integer label map (H, W) / (X, Y, Z), or ``None`` (the label panel stays grey).
        prediction: integer label map of the same shape.
        label_names: name of each label value (background first), for the legend.
        alpha: weight of the label colours in the blend.
        min_side: each panel is enlarged (nearest neighbour) to at least this longer side.

    Returns:
        RGB ``uint8`` array.
    """
    volume = np.asarray(image, dtype=np.float64)[0]
    lo, hi = np.percentile(volume, [0.5, 99.5]) if volume.size else (0.0, 0.0)
    truth = np.zeros(volume.shape, dtype=np.int64) if label is None else np.asarray(label).astype(np.int64)
    pred = np.asarray(prediction).astype(np.int64)
    rows = []
    for (plane, img), (_, lab), (_, prd) in zip(mid_slices(volume), mid_slices(truth), mid_slices(pred), strict=False):
        base = np.repeat(grey(img, float(lo), float(hi))[..., None], 3, axis=-1)
        rows.append((plane, [base, colour_mask(base, lab, alpha), colour_mask(base, prd, alpha)]))
    scale = max(1, -(-min_side // max(max(p.shape[:2]) for _, panels in rows for p in panels)))
    height = max(p.shape[0] for _, panels in rows for p in panels) * scale
    width = max(p.shape[1] for _, panels in rows for p in panels) * scale
    width = max(width, 60)  # room for the column titles
    out_h = _BAR + len(rows) * (height + _GAP) + _BAR
    out_w = 3 * width + 2 * _GAP
    picture = np.full((out_h, out_w, 3), 32, dtype=np.uint8)
    texts: list[tuple[int, int, str]] = [
        (c * (width + _GAP) + 3, 2, title) for c, title in enumerate(("image", "label", "prediction"))
    ]
    for r, (plane, panels) in enumerate(rows):
        top = _BAR + r * (height + _GAP)
        for c, panel in enumerate(panels):
            big = (panel * 255.0 + 0.5).astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)
            y0 = top + (height - big.shape[0]) // 2
            x0 = c * (width + _GAP) + (width - big.shape[1]) // 2
            picture[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = big
        if len(rows) > 1:
            texts.append((3, top + 2, plane))
    # legend: a colour swatch and the name of each foreground label value
    x, y = 3, out_h - _BAR + 3
    for value, name in enumerate(label_names):
        if value == 0:
            continue
        picture[y : y + 10, x : x + 10] = class_colour(value)
        texts.append((x + 13, y - 1, str(name)))
        x += 13 + 7 * len(str(name)) + 12
        if x >= out_w - 20:
            break
    return _text(picture, texts)


class SegmentationOverlays(pl.Callback):
    """Overlays of image, label and prediction of the first validation and test cases.

    Applies to :class:`medvision.models.segmenter.SegmenterModule` runs; does nothing for other
    modules (it is on by default in ``conf/callbacks/default.yaml``). Cost: one extra inference
    of ``n_images`` cases per drawing.

    Args:
        output_dir: the run's folder (``${paths.output_dir}``).
        every_n_epochs: draw at the first validation at or after every multiple of this many
            epochs, and at the last epoch's validation; ``null``/``0``: never during validation.
        n_images: how many cases (the first ones of the loader) per drawing.
        at_test: also draw the first ``n_images`` test cases.
        folder: sub-folder of ``output_dir`` for the PNGs.
        alpha: weight of the label colours in the blend.
        min_side: panels are enlarged to at least this side (pixels).
    """

    def __init__(
        self,
        output_dir: str,
        every_n_epochs: int | None = 10,
        n_images: int = 1,
        at_test: bool = True,
        folder: str = "images",
        alpha: float = 0.5,
        min_side: int = 128,
    ) -> None:
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, not {n_images}")
        self.output_dir = Path(output_dir)
        self.schedule = EpochSchedule(every_n_epochs)
        self.n_images = n_images
        self.at_test = at_test
        self.folder = folder
        self.alpha = alpha
        self.min_side = min_side
        self._active = False
        self._pictures: list[tuple[np.ndarray, str, list[tuple[np.ndarray, dict[str, Any]]]]] = []
        #: the PNGs written so far
        self.written: list[Path] = []

    @staticmethod
    def applies_to(pl_module: pl.LightningModule) -> bool:
        """Whether ``pl_module`` is a segmenter (the only module this callback draws for)."""
        from medvision.models.segmenter import SegmenterModule

        return isinstance(pl_module, SegmenterModule)

    # validation
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = self.applies_to(pl_module) and self.schedule.due(trainer)
        self._pictures = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active and trainer.is_global_zero:
            self._collect(trainer, pl_module, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active:
            self.schedule.drawn(trainer)
            if trainer.is_global_zero:
                self._save(trainer, f"val_epoch{trainer.current_epoch:04d}", "val", pl_module)
        self._active = False

    # test
    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = self.at_test and self.applies_to(pl_module)
        self._pictures = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active and trainer.is_global_zero:
            self._collect(trainer, pl_module, batch)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active and trainer.is_global_zero:
            self._save(trainer, "test", "test", pl_module)
        self._active = False

    def _collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict[str, Any]) -> None:
        """Infer and draw the cases of ``batch`` still missing from this epoch's pictures."""
        images = batch["image"]
        labels = batch.get("label")
        ids = list(batch["id"]) if batch.get("id") is not None else [None] * len(images)
        names = list(pl_module.label_names)
        precision = trainer.precision_plugin
        for i in range(len(images)):
            if len(self._pictures) >= self.n_images:
                return
            with torch.no_grad(), precision.forward_context():
                logits = pl_module.infer(precision.convert_input(images[i : i + 1]))
            prediction = logits.argmax(dim=1)[0].cpu().numpy()
            image = _numpy(images[i])
            label = None if labels is None else _numpy(labels[i])[0]
            picture = overlay_picture(image, label, prediction, names, self.alpha, self.min_side)
            case = str(ids[i]) if ids[i] is not None else str(len(self._pictures))
            self._pictures.append((picture, case, _wandb_slices(image, label, prediction, names)))

    def _save(self, trainer: pl.Trainer, tag: str, stage: str, pl_module: pl.LightningModule) -> None:
        if not self._pictures:
            return
        paths = [
            self.output_dir / self.folder / f"overlay_{tag}_{k:02d}_{safe_stem(case)}.png"
            for k, (_, case, _) in enumerate(self._pictures)
        ]
        epoch = f" epoch {trainer.current_epoch}" if stage == "val" else ""
        slices = [
            (s, masks, f"{stage}{epoch} {case} {plane}")
            for _, case, planes in self._pictures
            for (s, masks), plane in zip(planes, _plane_names(planes), strict=True)
        ]
        self.written += save_pictures(
            trainer,
            f"overlay/{stage}",
            [p for p, _, _ in self._pictures],
            paths,
            captions=[c for _, _, c in slices],
            wandb_images=[s for s, _, _ in slices],
            wandb_extra={"masks": [m for _, m, _ in slices]},
        )
        self._pictures = []


def _numpy(x: Any) -> np.ndarray:
    x = x.as_tensor() if hasattr(x, "as_tensor") else x
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _plane_names(planes: list[Any]) -> tuple[str, ...]:
    return ("image",) if len(planes) == 1 else PLANES


def _wandb_slices(
    image: np.ndarray, label: np.ndarray | None, prediction: np.ndarray, names: Sequence[str]
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Per plane: the grey slice (uint8) and W&B masks ``{"label": ..., "prediction": ...}``."""
    volume = image[0]
    lo, hi = np.percentile(volume, [0.5, 99.5])
    class_labels = {i: str(n) for i, n in enumerate(names)}
    truth = mid_slices(label.astype(np.int64)) if label is not None else None
    predicted = mid_slices(prediction.astype(np.int64))
    out = []
    for k, (_, img) in enumerate(mid_slices(volume)):
        masks = {"prediction": {"mask_data": np.ascontiguousarray(predicted[k][1]), "class_labels": class_labels}}
        if truth is not None:
            masks["label"] = {"mask_data": np.ascontiguousarray(truth[k][1]), "class_labels": class_labels}
        out.append(((grey(img, float(lo), float(hi)) * 255.0 + 0.5).astype(np.uint8), masks))
    return out
