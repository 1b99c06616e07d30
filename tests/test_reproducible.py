"""The same seed gives the same run (also with a dataloader worker process or the thread loader); another seed
another one."""

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


def test_num_workers_0_and_1_give_identical_metrics(
    short_run: FinishedRun, medvision_home: Path, tmp_path: Path
) -> None:
    # the augmentation is seeded per sample from (seed, epoch, position), not per worker process
    assert short_run.cfg.data.num_workers == 0
    worker = train_in(medvision_home, tmp_path / "one_worker", [*SHORT_RUN, "data.num_workers=1"])
    assert worker.cfg.data.num_workers == 1
    assert worker.metrics == short_run.metrics


def test_thread_loader_gives_identical_metrics(short_run: FinishedRun, medvision_home: Path, tmp_path: Path) -> None:
    # data.loader=thread makes the next batch in a background thread: the same samples, the same run
    from monai.data import ThreadDataLoader

    assert short_run.cfg.data.loader == "torch"
    threaded = train_in(medvision_home, tmp_path / "thread", [*SHORT_RUN, "data.loader=thread"])
    from hydra.utils import instantiate

    datamodule = instantiate(threaded.cfg.data)
    datamodule.setup("fit")
    assert isinstance(datamodule.train_dataloader(), ThreadDataLoader)
    assert threaded.metrics == short_run.metrics


def test_epoch_sampler_is_a_function_of_seed_and_epoch_split_over_ranks() -> None:
    from medvision.data.sampling import EpochSampler

    one = EpochSampler(7, seed=42)
    one.set_epoch(3)
    again = EpochSampler(7, seed=42)
    again.set_epoch(3)
    assert list(one) == list(again)
    assert sorted(i for i, _ in one) == list(range(7))  # a permutation: every sample once
    other_epoch = EpochSampler(7, seed=42)
    other_epoch.set_epoch(4)
    assert [i for i, _ in other_epoch] != [i for i, _ in one]

    # 2 ranks: same global order (padded to 8), positions interleaved, the same augmentation seeds
    ranks = [EpochSampler(7, seed=42, num_replicas=2, rank=r) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(3)
    assert [len(r) for r in ranks] == [4, 4]
    merged = [pair for pairs in zip(*(list(r) for r in ranks), strict=True) for pair in pairs]
    assert merged[:7] == list(one) and merged[7][0] == merged[0][0]

    # a resumed epoch skips the batches already done: the rest is what the full epoch had there
    resumed = EpochSampler(7, seed=42, skip=3)
    resumed.set_epoch(3)
    assert list(resumed) == list(one)[3:]
    assert list(resumed) == list(one), "skip applies to the first epoch iterated only"

    # class-balanced draws are seeded the same way
    weighted = [EpochSampler(6, seed=1, weights=[1, 1, 1, 1, 1, 10]) for _ in range(2)]
    assert list(weighted[0]) == list(weighted[1])


def test_eval_sampler_is_off_without_ddp() -> None:
    from medvision.data.sampling import eval_sampler

    assert eval_sampler(list(range(3))) is None
