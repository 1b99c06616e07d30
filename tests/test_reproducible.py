"""The same seed gives the same run; another seed another one."""

from __future__ import annotations

from pathlib import Path

from conftest import SHORT_RUN, FinishedRun, train_in


def _test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("test/")}


def test_same_seed_gives_identical_metrics(short_run: FinishedRun, medvision_home: Path, tmp_path: Path) -> None:
    again = train_in(medvision_home, tmp_path / "again", SHORT_RUN)
    assert again.output_dir != short_run.output_dir

    first, second = _test_metrics(short_run.metrics), _test_metrics(again.metrics)
    assert "test/dice_mean" in first and len(first) >= 5
    assert second == first, "the same seed must give identical test metrics"
    # training itself was identical, not just the test split
    for key in ("train/loss_epoch", "val/dice_mean", "val/loss"):
        assert again.metrics[key] == short_run.metrics[key], key


def test_other_seed_gives_other_training(short_run: FinishedRun, medvision_home: Path, tmp_path: Path) -> None:
    other = train_in(medvision_home, tmp_path / "other", [*SHORT_RUN, "seed=7"])
    assert other.cfg.seed == 7 and short_run.cfg.seed == 42
    # the seed changes initialisation and augmentation ...
    assert other.metrics["train/loss_epoch"] != short_run.metrics["train/loss_epoch"]
    assert other.metrics["test/dice_mean"] != short_run.metrics["test/dice_mean"]
    # ... but not the data split (split_seed is separate), so the test set is the same cases
    assert other.cfg.data.split_seed == short_run.cfg.data.split_seed
