"""BudgetPace: a planned run's epoch count fitted to the pace it really trains at, within max_time.

Real Lightning Trainer runs of a small regression module whose steps take a known time (a short
sleep stands for a slow network), with ``max_epochs`` planned far too high or far too low.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from medvision.callbacks.budget_pace import BudgetPace

BASE_LR = 0.1
ETA_MIN = 1e-4
STEP_S = 0.02
BATCHES = 5  # 0.1 s of training per epoch


class SlowRegression(pl.LightningModule):
    """A linear regression whose training steps take at least ``STEP_S`` seconds; cosine schedule."""

    def __init__(self, t_max: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.t_max = t_max
        self.lrs: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        time.sleep(STEP_S)
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def on_train_epoch_start(self) -> None:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.SGD(self.parameters(), lr=BASE_LR)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.t_max, eta_min=ETA_MIN)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * 4, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _fit(
    tmp_path: Path, planned_epochs: int, seconds: int, ckpt_path: str | None = None
) -> tuple[SlowRegression, pl.Trainer, BudgetPace, float]:
    pace = BudgetPace(after_epochs=2, safety=0.8)
    model = SlowRegression(t_max=planned_epochs)
    trainer = pl.Trainer(
        max_epochs=planned_epochs,
        max_time={"seconds": seconds},
        callbacks=[pace, pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=2,
        num_sanity_val_steps=0,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    start = time.perf_counter()
    trainer.fit(model, _loader(), _loader(), ckpt_path=ckpt_path)
    return model, trainer, pace, time.perf_counter() - start


@pytest.mark.parametrize("planned_epochs", [400, 4])
def test_the_epochs_fit_the_time_and_the_schedule_anneals_in_it(tmp_path: Path, planned_epochs: int) -> None:
    """Planned far too long (400 epochs: the time would cut the run with a high rate) or far too short
    (4 epochs: most of the budget unused), the run trains the epochs that fit, ends by its epoch
    count inside max_time, and its learning rate reaches the floor in the last epochs."""
    seconds = 4
    model, trainer, pace, wall = _fit(tmp_path, planned_epochs, seconds)
    assert pace.decision is not None, "no pace decision was made"
    epochs = pace.decision["epochs"]
    assert pace.decision["planned_epochs"] == planned_epochs
    # at least 0.1 s per epoch: 4 s hold at most 40; a decision that used most of the time holds > 15
    assert 15 < epochs < 40, pace.decision
    assert (epochs < planned_epochs) == (planned_epochs == 400)
    assert trainer.current_epoch == epochs, "the run did not end by its fitted epoch count"
    assert wall < seconds + 1.0
    # the schedule was stretched or shrunk with the epochs: from the decision on the rate only falls,
    # and it is near the floor in the last epoch
    lrs = model.lrs
    assert len(lrs) == epochs
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lrs[2:])), lrs
    assert lrs[-1] < 0.02 * BASE_LR, lrs[-3:]


def test_a_resumed_run_keeps_the_decision(tmp_path: Path) -> None:
    """The decision is in the checkpoint: resumed from an epoch after it with far more time left,
    the run trains to the decided epoch count (not the config's 400) without deciding again."""
    _, _, pace, _ = _fit(tmp_path, 400, 4)
    assert pace.decision is not None
    after = pace.decision["decided_after_epoch"] + 1
    after += 1 - after % 2  # checkpoints are written at validation, every second epoch (odd indices)
    _, trainer, resumed, _ = _fit(tmp_path / "resumed", 400, 30, ckpt_path=str(tmp_path / f"epoch={after}.ckpt"))
    assert resumed.decision == pace.decision
    assert trainer.current_epoch == pace.decision["epochs"]
