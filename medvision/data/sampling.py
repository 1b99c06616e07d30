"""Sampling that makes a run a function of its seed: DDP-safe samplers and per-sample augmentation seeds.

Every random choice of the data pipeline is a function of ``(seed, epoch, position)``:

- :class:`EpochSampler` orders (or draws, with class weights) the training samples of an epoch
  from ``(seed, epoch)`` and yields ``(index, sample_seed)`` pairs, split over DDP ranks;
- :class:`SeededDataset` makes sample ``index`` after seeding the dataset's MONAI transforms
  with ``sample_seed`` (``Compose.set_random_state``).

So the same seed gives the same batches whether samples are loaded in the main process or in
worker processes (``num_workers`` 0 or 1), and a run resumed at epoch ``k`` sees the batches
the uninterrupted run saw at epoch ``k``. Validation and test use :func:`eval_sampler`: MONAI's
``DistributedSampler(even_divisible=False)`` under DDP, so every case is scored exactly once
(torch's sampler pads the last rank with repeated cases).

The run's seed is the one :func:`medvision.utils.seeding.seed_everything` published in
``PL_GLOBAL_SEED`` (inherited by DDP ranks and dataloader workers), as Lightning's own samplers do.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from medvision.utils.seeding import derive_seed, run_seed


def distributed() -> tuple[int, int]:
    """``(world_size, rank)`` of the initialised process group, ``(1, 0)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(Sampler):
    """Training sampler whose epoch is a function of ``(seed, epoch)``; yields ``(index, sample_seed)``.

    The epoch's order is a permutation (or, with ``weights``, a draw with replacement) made by a
    generator seeded from ``(seed, epoch)``. Under DDP the order is padded to a multiple of the
    world size (every rank takes the same number of batches, as gradient sync needs) and rank
    ``r`` takes positions ``r, r + world, ...``. Each position gets its own augmentation seed
    from ``(seed, epoch, position)``, so a sample drawn twice is augmented twice differently.

    Lightning calls :meth:`set_epoch` at the start of every training epoch.

    Args:
        num_samples: length of the dataset.
        seed: the run's seed (default: :func:`run_seed`).
        shuffle: permute the samples each epoch (else dataset order).
        weights: per-sample drawing weights (class balancing); ``num_samples`` are drawn with
            replacement each epoch.
        num_replicas: DDP world size (default: the initialised process group's, else 1).
        rank: this process's rank (default: the process group's, else 0).
        skip: samples of this rank to leave out of the first epoch iterated (a run resumed
            mid-epoch: those were trained on before it stopped; see :func:`resumed_batches`).
        epoch_length: samples an epoch draws (``None``: ``num_samples``); a longer epoch
            concatenates permutations (each sample equally often, as far as the length allows).
    """

    def __init__(
        self,
        num_samples: int,
        seed: int | None = None,
        shuffle: bool = True,
        weights: Sequence[float] | torch.Tensor | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        skip: int = 0,
        epoch_length: int | None = None,
    ) -> None:
        world, this_rank = distributed()
        self.num_samples = int(num_samples)
        self.epoch_length = int(epoch_length) if epoch_length else self.num_samples
        self.seed = run_seed() if seed is None else int(seed)
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.num_replicas = num_replicas or world
        self.rank = this_rank if rank is None else rank
        self.epoch = 0
        self.skip = int(skip)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.epoch_length / self.num_replicas)

    def order(self) -> list[int]:
        """Sample indices of the whole epoch (all ranks), padded to a multiple of the world size."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        rounds = math.ceil(self.epoch_length / max(self.num_samples, 1))
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.epoch_length, replacement=True, generator=generator).tolist()
        elif self.shuffle:
            order = [i for _ in range(rounds) for i in torch.randperm(self.num_samples, generator=generator).tolist()]
        else:
            order = list(range(self.num_samples)) * rounds
        order = order[: self.epoch_length]
        total = len(self) * self.num_replicas
        return (order * math.ceil(total / max(len(order), 1)))[:total]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.order()
        first, self.skip = self.rank + self.skip * self.num_replicas, 0
        for position in range(first, len(order), self.num_replicas):
            yield order[position], derive_seed(self.seed, self.epoch, position)


def resumed_batches(trainer: Any) -> int:
    """Training batches of the current epoch done before the checkpoint a fit resumes from.

    Non-zero only while Lightning restarts from a mid-epoch checkpoint (a pre-empted run,
    :class:`medvision.callbacks.preemption.PreemptionCheckpoint`); called when the training
    dataloader is built, which Lightning does after restoring the loops' state.
    """
    loop = getattr(trainer, "fit_loop", None)
    if loop is None or not loop.restarting:
        return 0
    epochs = loop.epoch_progress.total
    mid_epoch = epochs.started == epochs.ready and epochs.processed == epochs.started - 1
    return int(loop.epoch_loop.batch_progress.current.completed) if mid_epoch else 0


class SeededDataset(Dataset):
    """A MONAI dataset whose random transforms are seeded per sample: ``dataset[(index, seed)]``.

    Before sample ``index`` is made, the dataset's ``transform`` (a MONAI ``Compose``) gets
    ``set_random_state(seed)``; MONAI's ``Dataset``, ``CacheDataset`` (the random transforms
    after the cached prefix) and ``PersistentDataset`` all apply that same ``Compose``.

    Args:
        base: a MONAI dataset with a ``transform`` attribute, or a ``ConcatDataset`` of them.
    """

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None:
            _seed_transform(self.base, index, seed)
        return self.base[index]


def _seed_transform(dataset: Any, index: int, seed: int) -> None:
    """Seed the transform that will make ``dataset[index]`` (through ``ConcatDataset`` parts)."""
    if isinstance(dataset, ConcatDataset):
        part = bisect.bisect_right(dataset.cumulative_sizes, index)
        start = dataset.cumulative_sizes[part - 1] if part else 0
        _seed_transform(dataset.datasets[part], index - start, seed)
        return
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed)


def eval_sampler(dataset: Any) -> Sampler | None:
    """Validation/test sampler: every case exactly once over all DDP ranks, in order (``None`` without DDP)."""
    world, rank = distributed()
    if world == 1:
        return None
    from monai.data import DistributedSampler

    return DistributedSampler(dataset, even_divisible=False, num_replicas=world, rank=rank, shuffle=False)
