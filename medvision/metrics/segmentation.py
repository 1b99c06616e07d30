"""Segmentation metrics: per-class and mean Dice and HD95, named by the dataset's labels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai.networks.utils import one_hot

# MONAI 1.6's own HD95 code passes an argument it deprecated; nothing for users to act on
warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)


class SegmentationMetrics:
    """Accumulates Dice (and optionally HD95) over an epoch, foreground classes only.

    Uses MONAI's cumulative metrics, whose ``aggregate()`` gathers across DDP ranks: call
    :meth:`compute` on every rank.

    Args:
        label_names: name of each label value, background first.
        hd95: also compute the 95th-percentile Hausdorff distance (in mm when :meth:`update`
            is given the voxel spacing, else in voxels).
    """

    def __init__(self, label_names: Sequence[str], hd95: bool = True) -> None:
        self.label_names = list(label_names)
        self.num_classes = len(self.label_names)
        self.dice = DiceMetric(include_background=False, reduction="mean_batch")
        self.hd95 = (
            HausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean_batch") if hd95 else None
        )

    def update(
        self, logits: torch.Tensor, label: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> list[dict[str, float]]:
        """Add one batch: ``logits`` (B, C, ...) of the network (or class probabilities: only their
        arg-max counts), ``label`` (B, 1, ...) integer map on the same grid.

        Returns:
            Per case of the batch, ``{"dice_<label>": ..., "hd95_<label>": ...}`` (foreground
            classes; NaN where a class is absent from both masks).
        """
        pred = one_hot(torch.argmax(logits, dim=1, keepdim=True), self.num_classes)
        target = one_hot(label.long(), self.num_classes)
        values = {"dice": self.dice(pred, target)}
        if self.hd95 is not None:
            values["hd95"] = self.hd95(pred, target, spacing=list(spacing) if spacing is not None else None)
        rows: list[dict[str, float]] = [{} for _ in range(pred.shape[0])]
        for name, per_case in values.items():
            for row, case in zip(rows, per_case.detach().cpu().float().tolist(), strict=True):
                row.update({f"{name}_{label}": v for label, v in zip(self.label_names[1:], case, strict=False)})
        return rows

    def compute(self, prefix: str) -> dict[str, float]:
        """``{prefix}/dice_<label>`` per class, ``{prefix}/dice_mean``, and the same for ``hd95``."""
        out: dict[str, float] = {}
        metrics = [("dice", self.dice)] + ([("hd95", self.hd95)] if self.hd95 is not None else [])
        for name, metric in metrics:
            per_class = metric.aggregate().detach().cpu().float()
            for label, value in zip(self.label_names[1:], per_class.tolist(), strict=False):
                out[f"{prefix}/{name}_{label}"] = value
            finite = per_class[torch.isfinite(per_class)]
            out[f"{prefix}/{name}_mean"] = float(finite.mean()) if finite.numel() else float("nan")
        return out

    def reset(self) -> None:
        """Forget the accumulated batches (once per epoch)."""
        self.dice.reset()
        if self.hd95 is not None:
            self.hd95.reset()
