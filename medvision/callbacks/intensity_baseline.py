"""Log a trivial intensity look-up-table baseline beside the network's test Dice."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np

from medvision.baselines.intensity_lut import IntensityLUT
from medvision.metrics.segmentation import SegmentationMetrics


class IntensityBaseline(pl.Callback):
    """At the end of testing, fit :class:`IntensityLUT` on the training split and score it on
    the test split with the same Dice code as the network, in the preprocessed space:
    ``test_preprocessed/lut_dice_<label>`` and ``..._mean`` beside the network's
    ``test_preprocessed/dice_*`` when the network's test metrics are on the label files' grids
    (``SegmenterModule.original_space``), else ``test/lut_dice_*`` beside ``test/dice_*``.

    Args:
        bins: intensity bins of the table.
    """

    def __init__(self, bins: int = 256) -> None:
        self.bins = bins

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import torch

        dm = trainer.datamodule
        names = dm.label_names
        pairs = [(np.asarray(s["image"])[0], np.asarray(s["label"])[0]) for s in dm.deterministic_dataset("train")]
        lut = IntensityLUT(len(names), self.bins).fit(pairs)
        metrics = SegmentationMetrics(names, hd95=False)
        for sample in dm.deterministic_dataset("test"):
            pred = torch.as_tensor(lut.predict(np.asarray(sample["image"])[0]))
            logits = torch.nn.functional.one_hot(pred, len(names)).movedim(-1, 0)[None].float()
            metrics.update(logits, torch.as_tensor(np.asarray(sample["label"]))[None])
        prefix = _space(pl_module)
        values = metrics.compute(prefix)
        pl_module.log_dict({k.replace(f"{prefix}/dice", f"{prefix}/lut_dice"): v for k, v in values.items()})

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from rich.console import Console
        from rich.table import Table

        found, prefix = trainer.callback_metrics, _space(pl_module)
        table = Table(
            title=f"{prefix} Dice: network vs intensity look-up table (fit on the training split; same space)"
        )
        for column in ("class", "network", "intensity LUT"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name in [*trainer.datamodule.label_names[1:], "mean"]:
            net, lut = found.get(f"{prefix}/dice_{name}"), found.get(f"{prefix}/lut_dice_{name}")
            if net is not None and lut is not None:
                table.add_row(name, f"{float(net):.4f}", f"{float(lut):.4f}")
        Console().print(table)


def _space(pl_module: pl.LightningModule) -> str:
    """Where the network's comparable test Dice is: ``test_preprocessed`` when its ``test/`` is on
    the label files' own grids, else ``test``."""
    return "test_preprocessed" if getattr(pl_module, "original_space", None) is not None else "test"
