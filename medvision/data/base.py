"""``MedvisionDataModule``: the one DataModule base: samples -> MONAI transforms -> cache -> loaders.

Every medvision DataModule is one of these. A subclass says what each split holds
(:meth:`~MedvisionDataModule.samples`: MONAI sample dictionaries, or records a ``LoadImaged``
step reads) and what a model must know of it (:attr:`~MedvisionDataModule.label_names`,
:attr:`~MedvisionDataModule.in_channels`, and more in :meth:`~MedvisionDataModule.model_kwargs`);
this class owns the rest, the same way for volumes and arrays:

- transforms: ``{"load": ..., "augment": ...}`` of the config (:mod:`medvision.data.transforms`);
  ``load`` is the deterministic preprocessing (cached), ``augment`` the random augmentation
  (training only);
- caching: ``data.cache`` ``none`` | ``memory`` | ``disk`` | ``preprocessed`` -> MONAI's ``Dataset`` |
  ``CacheDataset`` | ``PersistentDataset`` | :class:`~medvision.data.preprocessed.PreprocessedDataset`
  (each case's ``load`` result stored once as ``.npy`` arrays and read memory-mapped, shared by
  every worker and DDP rank; filled by :meth:`~MedvisionDataModule.prepare_data` before training);
- samplers (:mod:`medvision.data.sampling`): the training epoch a function of the run's seed and
  the epoch (:class:`~medvision.data.sampling.EpochSampler`), validation and test each case once
  over all DDP ranks (:func:`~medvision.data.sampling.eval_sampler`);
- loaders (:mod:`medvision.data.loaders`): ``data.loader`` ``torch`` | ``thread`` for training,
  batch sizes, ``num_workers``, ``pin_memory``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import lightning.pytorch as pl

from medvision.data import dicom_threads
from medvision.data.loaders import LoaderKind, check_loader, make_loader
from medvision.data.sampling import EpochSampler, SeededDataset, eval_sampler, resumed_batches
from medvision.data.splits import SPLITS
from medvision.data.transforms import transform_hash, transform_state, transform_steps
from medvision.utils.privacy import Privacy
from medvision.utils.validate import check_choice

if TYPE_CHECKING:
    from monai.data import Dataset
    from monai.transforms import Compose

    from medvision.data.original_space import OriginalSpace

#: what ``data.cache`` chooses: no cache, MONAI's ``CacheDataset``, its ``PersistentDataset``, or
#: memory-mapped ``.npy`` entries (:class:`~medvision.data.preprocessed.PreprocessedDataset`)
CacheMode = Literal["none", "memory", "disk", "preprocessed"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)

#: the spatial dimensions of the images (``data.spatial_dims``)
SpatialDims = Literal[2, 3]

#: the splits each Lightning stage builds (``setup(None)``: every split)
STAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}

log = logging.getLogger(__name__)


class MedvisionDataModule(pl.LightningDataModule):
    """Transforms, caching, samplers and loaders of a medvision DataModule; subclasses supply the samples.

    A subclass implements :meth:`samples`, :attr:`label_names` and :attr:`in_channels`, and may
    override :meth:`model_kwargs`, :meth:`cache_folder` and :meth:`sample_weights`.

    Args:
        transforms: ``{"load": ..., "augment": ...}``, each an ordered mapping name -> MONAI dict
            transform (``None`` entries are dropped) or a list of transforms. Other keys are
            settings the transform configs interpolate (``pixdim``, ...).
        batch_size: training batch size.
        val_batch_size: batch size of validation, test and prediction (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory (useful on GPU).
        loader: the training loader: ``torch`` (MONAI's ``DataLoader``) or ``thread`` (the next
            batch made in a background thread; :mod:`medvision.data.loaders`). Validation and
            test always use ``torch``.
        cache: ``none``, ``memory`` (``CacheDataset``: the deterministic transforms once),
            ``disk`` (``PersistentDataset`` in :meth:`cache_folder`) or ``preprocessed`` (the
            deterministic transforms once per case, stored as ``.npy`` arrays in
            ``<cache_folder>/preprocessed`` and read memory-mapped:
            :mod:`medvision.data.preprocessed`).
        cache_dir: folder of the disk and preprocessed caches (``None``: the subclass's default).
        samples_per_epoch: training samples an epoch draws (``None``: each sample once); a plan
            sets it so that small datasets still make epochs of many steps.
    """

    def __init__(
        self,
        transforms: Mapping[str, Any] | None = None,
        batch_size: int = 2,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        loader: LoaderKind = "torch",
        cache: CacheMode = "none",
        cache_dir: str | Path | None = None,
        samples_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.samples_per_epoch = samples_per_epoch
        transforms = transforms or {}
        self.load_transforms = transform_steps(transforms.get("load"))
        self.augment_transforms = transform_steps(transforms.get("augment"))
        self.cache = check_choice("data.cache", cache, CacheMode)
        # what each transform does, taken before any runs: the key of the disk and preprocessed
        # caches (some transforms record their last call, which must not change the key)
        self._transform_states = (
            [(t, transform_state(t)) for t in self.load_transforms + self.augment_transforms]
            if self.cache in ("disk", "preprocessed")
            else []
        )
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.loader = check_loader(loader)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        #: the datasets built by :meth:`setup`, by split
        self.datasets: dict[str, Dataset] = {}

    # ----------------------------------------------------------------- what a subclass supplies
    def samples(self, split: str) -> Sequence[Mapping[str, Any]]:
        """The samples of ``split`` (``train``, ``val`` or ``test``) before any transform."""
        raise NotImplementedError

    @property
    def label_names(self) -> list[str]:
        """Name of each label value (index = value), or of each label of a multi-label task."""
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        """Channels of the network input."""
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """What a model must know of this data: passed by ``run()`` to the model's constructor."""
        return {"label_names": self.label_names, "in_channels": self.in_channels}

    def input_files(self) -> list[str]:
        """The files the data are read from (what a run's ``data_hash`` fingerprints); none known: empty."""
        return []

    @property
    def reads_dicom(self) -> bool:
        """Whether the data come from DICOM files (``privacy.log_ids=auto`` then hides case ids)."""
        return False

    @property
    def privacy(self) -> Privacy:
        """What outputs may show of the cases (:mod:`medvision.utils.privacy`): ``run()`` sets the
        run's; by default ``privacy.log_ids=auto`` with the default key. Sample ids go through it."""
        if getattr(self, "_privacy", None) is None:
            self._privacy = Privacy(from_dicom=self.reads_dicom)
        return self._privacy

    @privacy.setter
    def privacy(self, value: Privacy) -> None:
        self._privacy = value

    def cache_folder(self, split: str) -> Path:
        """Folder of ``split``'s disk cache (``data.cache=disk``; ``preprocessed``: its ``preprocessed`` subfolder)."""
        return (self.cache_dir or Path(".cache")) / split

    def sample_weights(self) -> Sequence[float] | None:
        """Drawing weights of the training samples (class balancing; ``None``: a permutation per epoch)."""
        return None

    # ----------------------------------------------------------------- transforms and datasets
    def eval_transform(self) -> Compose:
        """The deterministic preprocessing used for validation, test and prediction."""
        from monai.transforms import Compose

        return Compose(self.load_transforms)

    def original_space(self) -> OriginalSpace | None:
        """What puts a preprocessed test batch back on its label files' grids, for the test metrics.

        A segmenter is handed it by ``medvision.train.build`` and scores each test case against
        its label file as stored (:mod:`medvision.data.original_space`).

        Returns:
            An :class:`~medvision.data.original_space.OriginalSpace` over :meth:`eval_transform`,
            or ``None`` when the ``load`` pipeline reads no label file (array data: the arrays
            are the only grid).
        """
        from monai.transforms import LoadImaged

        from medvision.data.original_space import OriginalSpace

        if not any(isinstance(t, LoadImaged) and "label" in t.keys for t in self.load_transforms):
            return None
        return OriginalSpace(self.eval_transform())

    def train_transform(self) -> Compose:
        """Preprocessing followed by the random augmentation."""
        from monai.transforms import Compose

        return Compose(self.load_transforms + self.augment_transforms)

    def cached_dataset(self, samples: Sequence[Any], transform: Compose, split: str) -> Dataset:
        """A MONAI dataset of ``samples`` through ``transform``, cached as ``data.cache`` says.

        Args:
            samples: sample dictionaries (or records).
            transform: the transform; ``memory``, ``disk`` and ``preprocessed`` cache its
                deterministic prefix.
            split: the split the samples belong to (names the disk cache folder).
        """
        from monai.data import CacheDataset, Dataset, PersistentDataset

        dicom_threads.install()  # CacheDataset and ThreadDataLoader read in threads
        if self.cache == "preprocessed":
            from medvision.data.preprocessed import PreprocessedDataset

            return PreprocessedDataset(
                samples, transform, cache_dir=self.cache_folder(split) / "preprocessed", hash_transform=self._cache_key
            )
        if self.cache == "memory":
            return CacheDataset(samples, transform, progress=False, copy_cache=True)
        if self.cache == "disk":
            # track_meta: the cached images keep their metadata and applied operations (voxel size
            # for HD95 in mm; the inversion of the preprocessing for the test metrics). Their
            # metadata holds NumPy arrays, which torch.load(weights_only=True) refuses (MONAI
            # then recomputes every entry, silently): the cache is read as the pickles medvision
            # wrote there, so data.cache_dir must be a folder only the user writes.
            return PersistentDataset(
                samples,
                transform,
                cache_dir=self.cache_folder(split),
                hash_transform=self._cache_key,
                track_meta=True,
                weights_only=False,
            )
        return Dataset(samples, transform)

    def _cache_key(self, transforms: Sequence[Any]) -> bytes:
        """The disk and preprocessed caches' key of the deterministic transforms: their states
        taken when this DataModule was built (:func:`~medvision.data.transforms.transform_hash`)."""
        return transform_hash(transforms, self._transform_states)

    def dataset(self, split: str, train: bool = False) -> Dataset:
        """MONAI dataset of ``split`` with the evaluation (or, ``train``, the training) transform, cached."""
        transform = self.train_transform() if train else self.eval_transform()
        return self.cached_dataset(self.privacy.shown_samples(self.samples(split)), transform, split)

    def deterministic_dataset(self, split: str) -> Dataset:
        """The samples of ``split`` with the evaluation transform (no augmentation, no cache)."""
        from monai.data import Dataset

        return Dataset(self.privacy.shown_samples(self.samples(split)), self.eval_transform())

    def prepare_data(self) -> None:
        """Lightning's hook, run by one process per node before every rank's :meth:`setup`: with
        ``data.cache=preprocessed``, compute the missing entries of the splits of the trainer's
        stage (:meth:`fill_cache`), so that the ranks only read them.

        Called without a trainer attached (``medvision.train.build`` calls it on every rank, for
        the data sources of subclasses), it computes nothing: each rank would preprocess every
        case at once. A subclass that overrides it calls ``super().prepare_data()``.
        """
        if self.cache != "preprocessed" or self.trainer is None:
            return
        stage = getattr(self.trainer.state, "fn", None)
        self.fill_cache(STAGE_SPLITS.get(str(getattr(stage, "value", stage) or ""), SPLITS))

    def fill_cache(self, splits: Sequence[str] = SPLITS, progress: bool = True) -> dict[str, tuple[int, int]]:
        """Compute the missing entries of ``data.cache=preprocessed`` for ``splits`` (nothing for other modes).

        Shows a progress bar while more than one entry is computed, and logs one line: the
        entries reused and computed.

        Args:
            splits: the splits whose entries are computed (``train`` through its ``load`` steps,
                the others through :meth:`eval_transform`: the same deterministic prefix).
            progress: show the progress bar.

        Returns:
            ``{split: (reused, computed)}``.
        """
        from torch.utils.data import ConcatDataset

        from medvision.data.preprocessed import PreprocessedDataset

        counts: dict[str, tuple[int, int]] = {}
        if self.cache != "preprocessed":
            return counts
        for split in splits:
            dataset = self.dataset(split, train=split == "train")
            parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
            reused = computed = 0
            for part in parts:
                if isinstance(part, PreprocessedDataset):
                    r, c = part.fill(progress=progress, description=f"preprocessing the {split} cases")
                    reused, computed = reused + r, computed + c
            counts[split] = (reused, computed)
        reused, computed = sum(r for r, _ in counts.values()), sum(c for _, c in counts.values())
        log.info("data.cache=preprocessed (%s): %d entries reused, %d computed", ", ".join(counts), reused, computed)
        return counts

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``train`` with the training transform)."""
        for split in STAGE_SPLITS.get(stage or "", SPLITS):
            if split not in self.datasets:
                self.datasets[split] = self.dataset(split, train=split == "train")

    # ----------------------------------------------------------------- samplers and loaders
    def train_sampler(self) -> EpochSampler:
        """The training order: a function of the run's seed and the epoch, split over DDP ranks
        (:class:`medvision.data.sampling.EpochSampler`); a resumed run skips the batches done."""
        skip = resumed_batches(self.trainer) * self.batch_size
        return EpochSampler(
            len(self.datasets["train"]), weights=self.sample_weights(), skip=skip, epoch_length=self.samples_per_epoch
        )

    def train_dataloader(self) -> Any:
        """Training batches; order and augmentation are a function of the run's seed and the epoch."""
        return make_loader(
            SeededDataset(self.datasets["train"]),
            self.batch_size,
            self.train_sampler(),
            self.num_workers,
            self.pin_memory,
            kind=self.loader,
        )

    def eval_dataloader(self, split: str) -> Any:
        """Batches of ``split`` in order, each sample once over all DDP ranks."""
        dataset = self.datasets[split]
        return make_loader(dataset, self.val_batch_size, eval_sampler(dataset), self.num_workers, self.pin_memory)

    def val_dataloader(self) -> Any:
        """Validation batches, in order, each sample once over all DDP ranks."""
        return self.eval_dataloader("val")

    def test_dataloader(self) -> Any:
        """Test batches, in order, each sample once over all DDP ranks."""
        return self.eval_dataloader("test")

    def predict_dataloader(self) -> Any:
        """The test split, for prediction."""
        return self.eval_dataloader("test")
