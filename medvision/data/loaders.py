"""DataLoaders of the DataModules, in one place: MONAI's ``DataLoader`` or its ``ThreadDataLoader``.

``loader="thread"`` (``data.loader=thread``) runs the loader in a background thread
(:class:`monai.data.ThreadDataLoader`: the batches of the next ``buffer_size`` steps are made
while the network trains on the current one). It is the choice where worker processes cost more
than they give: small CPU machines, cached datasets whose per-step work is the random
augmentation. MONAI's transforms spend their time in NumPy/torch code that releases the GIL, so
the thread overlaps with the training step; with ``num_workers=0`` there is one producer thread,
and the samples stay a function of ``(seed, epoch, position)`` (:mod:`medvision.data.sampling`),
so results do not depend on the loader.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from medvision.utils.validate import check_choice

#: the training loaders (``data.loader``)
LoaderKind = Literal["torch", "thread"]
LOADERS: tuple[str, ...] = get_args(LoaderKind)


def check_loader(kind: str) -> str:
    """``kind`` if it names a loader, else a :class:`MedvisionError` naming ``data.loader`` and the choices."""
    return check_choice("data.loader", kind, LoaderKind)


def make_loader(
    dataset: Any,
    batch_size: int,
    sampler: Any = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    kind: LoaderKind = "torch",
    buffer_size: int = 1,
) -> Any:
    """A DataLoader over ``dataset`` in the given order (``sampler``; ``None``: in order).

    Args:
        dataset: the dataset.
        batch_size: samples per batch.
        sampler: the order (the DataModules' seeded or DDP-aware samplers).
        num_workers: worker processes (both kinds; for ``thread``, the thread iterates them).
        pin_memory: pin host memory (useful on GPU).
        kind: ``torch`` (MONAI's ``DataLoader``) or ``thread`` (MONAI's ``ThreadDataLoader``).
        buffer_size: batches the background thread makes ahead (``thread`` only).
    """
    from monai.data import DataLoader, ThreadDataLoader

    common: dict[str, Any] = dict(
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
    if check_loader(kind) == "thread":
        return ThreadDataLoader(dataset, buffer_size=buffer_size, **common)
    return DataLoader(dataset, **common)
