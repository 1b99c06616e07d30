"""``ArrayClassificationDataModule``: classification data held as arrays -> MONAI transforms -> loaders.

The base of the DataModules whose samples fit in memory as ``{split: (images, labels)}``
arrays (:class:`medvision.data.medmnist.MedMNISTDataModule`, the official ``.npz`` files;
:class:`medvision.data.dicom_modality.DicomModalityDataModule`, decoded DICOM frames). A
subclass reads its arrays and says what they are (label names, task, channels, 2D/3D); this
class turns them into MONAI datasets (optionally cached), a class-balanced sampler and loaders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np

from medvision.data.loaders import check_loader
from medvision.utils.errors import MedvisionError

if TYPE_CHECKING:
    from medvision.augment.mixing import TrainingSplit

SPLITS: tuple[str, ...] = ("train", "val", "test")
CACHES: tuple[str, ...] = ("none", "memory", "disk")


def transform_steps(spec: Mapping[str, Callable | None] | Sequence[Callable | None] | None) -> list[Callable]:
    """The transforms of a config mapping name -> transform (or a list), ``None`` entries dropped."""
    if spec is None:
        return []
    steps = spec.values() if isinstance(spec, Mapping) else spec
    return [t for t in steps if t is not None]


class ArraySamples(Sequence):
    """Sample dictionaries ``{"image", "label", "id"}`` built on access from one split's arrays.

    Args:
        images: (N, H, W) grey, (N, H, W, 3) RGB (2D) or (N, D, H, W) (3D) images.
        labels: (N, 1) class indices or (N, L) multi-hot labels.
        split: the split's name (sample ids are ``<split>/<index>`` unless ``ids`` is given).
        spatial_dims: 2 or 3.
        multilabel: labels are multi-hot (float) rather than class indices (int64).
        as_rgb: repeat grey images to 3 channels.
        ids: one id per sample.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, split: str, spatial_dims: int, multilabel: bool,
                 as_rgb: bool, ids: Sequence[str] | None = None) -> None:
        self.images, self.labels, self.split = images, labels, split
        self.spatial_dims, self.multilabel, self.as_rgb = spatial_dims, multilabel, as_rgb
        self.ids = list(ids) if ids is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        image = self.images[i]
        image = np.moveaxis(image, -1, 0) if (self.spatial_dims == 2 and image.ndim == 3) else image[None]
        if self.as_rgb and image.shape[0] == 1:
            image = np.repeat(image, 3, axis=0)
        label = self.labels[i].astype(np.float32) if self.multilabel else self.labels[i].astype(np.int64)
        sample_id = self.ids[i] if self.ids is not None else f"{self.split}/{i}"
        return {"image": image.astype(np.float32), "label": label, "id": sample_id}


class ArrayClassificationDataModule(pl.LightningDataModule):
    """Datasets and loaders of in-memory classification arrays; subclasses provide the arrays.

    A subclass implements :attr:`arrays` (``{split: (images, labels)}``), :attr:`label_names`,
    :attr:`task`, :attr:`spatial_dims`, :attr:`source_channels` and :attr:`cache_name`, and may
    override :meth:`sample_ids`.

    Args:
        transforms: ``{"load": ..., "augment": ...}``: ordered mappings name -> MONAI dict
            transform (``None`` entries dropped) applied to ``{"image": (C, H, W[, D]) float,
            "label", "id"}``; ``augment`` on training samples only.
        as_rgb: repeat grey images to 3 channels.
        batch_size: training batch size.
        val_batch_size: validation/test batch size (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        loader: the training loader, ``torch`` or ``thread`` (:mod:`medvision.data.loaders`).
        pin_memory: pin host memory (useful on GPU).
        balanced_sampler: draw training samples with probability inversely proportional to
            their class frequency (single-label tasks; epochs keep their length).
        cache: ``none``, ``memory`` (``CacheDataset``: the deterministic transforms once) or
            ``disk`` (``PersistentDataset`` in ``cache_dir``).
        cache_dir: folder of the disk cache.
        imbalance: ``{class, keep, seed}``: keep only this fraction of one class's training
            samples (an imbalanced task made on purpose; :mod:`medvision.augment.imbalance`).
        synthetic: ``{store, ratio, classes}``: mix samples of a synthetic store into the
            training split, ``ratio`` x the real training samples of each augmented class
            (:mod:`medvision.augment.mixing`). Never into validation or test.
        counts_report: JSON file written with the real and synthetic training samples per class
            (``None``: not written; the counts are printed and sent to the loggers anyway).
    """

    def __init__(
        self,
        transforms: Mapping[str, Any] | None = None,
        as_rgb: bool = False,
        batch_size: int = 128,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        balanced_sampler: bool = False,
        cache: str = "none",
        cache_dir: str | Path | None = None,
        loader: str = "torch",
        imbalance: Mapping[str, Any] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        counts_report: str | Path | None = None,
    ) -> None:
        super().__init__()
        transforms = transforms or {}
        self.load_transforms = transform_steps(transforms.get("load"))
        self.augment_transforms = transform_steps(transforms.get("augment"))
        self.as_rgb = as_rgb
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.loader = check_loader(loader)
        self.pin_memory = pin_memory
        self.balanced_sampler = balanced_sampler
        if cache not in CACHES:
            raise MedvisionError(f"data.cache={cache!r} is not one of {'|'.join(CACHES)}", fix="data.cache=none")
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else Path(".cache")
        # read (and checked) when the training split is first composed, not here: an error raised
        # inside Hydra's instantiate() would reach the user wrapped in its InstantiationException
        self.imbalance, self.synthetic = imbalance, synthetic
        self.counts_report = Path(counts_report) if counts_report else None
        self.datasets: dict[str, Any] = {}
        self._train_split: TrainingSplit | None = None

    # -- what a subclass provides -------------------------------------------------------------
    @property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{split: (images, labels)}`` for ``train``, ``val`` and ``test``."""
        raise NotImplementedError

    @property
    def label_names(self) -> list[str]:
        """Class names (index = label value), or label names for a multi-label task."""
        raise NotImplementedError

    @property
    def task(self) -> str:
        """``binary``, ``multiclass`` or ``multilabel``."""
        raise NotImplementedError

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        raise NotImplementedError

    @property
    def source_channels(self) -> int:
        """Channels of the stored images (1 or 3)."""
        raise NotImplementedError

    @property
    def cache_name(self) -> str:
        """Folder name of this data's disk cache (unique per file/configuration)."""
        raise NotImplementedError

    def sample_ids(self, split: str) -> list[str] | None:
        """One id per sample of ``split`` (``None``: ``<split>/<index>``)."""
        return None

    # -- shared --------------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Channels of the network input."""
        return 3 if self.as_rgb else self.source_channels

    def model_kwargs(self) -> dict[str, Any]:
        """What a model must know of this data: passed by ``run()`` to the model's constructor."""
        return {"label_names": self.label_names, "in_channels": self.in_channels, "task": self.task,
                "spatial_dims": self.spatial_dims}

    def training_split(self) -> TrainingSplit | None:
        """The training split's composition: real samples kept by ``imbalance``, synthetic ones mixed in.

        ``None`` for a multi-label task without these options.
        """
        if self._train_split is None:
            from medvision.augment.imbalance import Imbalance
            from medvision.augment.mixing import SyntheticMix, training_split

            self._train_split = training_split(self.arrays["train"][1], self.label_names, self.task,
                                               Imbalance.from_config(self.imbalance), SyntheticMix.from_config(self.synthetic))
        return self._train_split

    def train_labels(self) -> np.ndarray:
        """Labels of the training dataset's samples, in its order (real samples kept, then synthetic ones).

        Class indices (N,) for single-label tasks, the (N, L) multi-hot array for multi-label ones.
        """
        split = self.training_split()
        if split is None:
            return self.arrays["train"][1]
        return np.concatenate([split.labels[split.real], split.synthetic_labels])

    def dataset(self, split: str, train: bool = False) -> Any:
        """MONAI ``Dataset`` of ``split`` with the evaluation (or training) transform.

        The ``train`` split holds the real samples kept by ``imbalance`` followed by the
        ``synthetic`` samples (already in model-input space: they skip ``load`` and get only
        the ``augment`` transforms when ``train``). Other splits are the data's own.
        """
        from monai.data import CacheDataset, Dataset, PersistentDataset
        from monai.transforms import Compose

        images, labels = self.arrays[split]
        ids = self.sample_ids(split)
        composition = self.training_split() if split == "train" else None
        if composition is not None and len(composition.real) != len(labels):
            kept = composition.real
            images, labels = images[kept], labels[kept]
            ids = [ids[k] for k in kept] if ids is not None else [f"{split}/{k}" for k in kept]
        samples = ArraySamples(images, labels, split, self.spatial_dims, self.task == "multilabel", self.as_rgb, ids)
        transform = Compose(self.load_transforms + (self.augment_transforms if train else []))
        if self.cache == "memory":
            real = CacheDataset(samples, transform, progress=False, copy_cache=True)  # type: ignore[arg-type]
        elif self.cache == "disk":
            from monai.data.utils import json_hashing

            folder = self.cache_dir / f"{self.cache_name}_{split}"
            real = PersistentDataset(samples, transform, cache_dir=folder, hash_transform=json_hashing)  # type: ignore[arg-type]
        else:
            real = Dataset(samples, transform)  # type: ignore[arg-type]
        if composition is None or composition.store is None or composition.synthetic is None or not len(composition.synthetic):
            return real
        return self._with_synthetic(real, samples, composition, train)

    def _with_synthetic(self, real: Any, samples: ArraySamples, composition: TrainingSplit, train: bool) -> Any:
        """``real`` followed by the synthetic samples (checked against a real sample after ``load``)."""
        from monai.data import Dataset
        from monai.transforms import Compose
        from torch.utils.data import ConcatDataset

        from medvision.augment.mixing import SyntheticSamples, check_shape

        assert composition.store is not None and composition.synthetic is not None and composition.mix is not None
        like = Compose(self.load_transforms)(samples[0])  # a real training sample in model-input space
        check_shape(composition.store, like["image"], composition.mix, self.as_rgb)
        synthetic = Dataset(SyntheticSamples(composition.store, composition.synthetic, like, self.as_rgb),  # type: ignore[arg-type]
                            Compose(self.augment_transforms if train else []))
        return ConcatDataset([real, synthetic])

    def _report_counts(self) -> None:
        """Print the training split's real and synthetic samples per class, log them, write ``counts_report``."""
        split = self.training_split()
        if split is None or (self.trainer is not None and not self.trainer.is_global_zero):
            return
        split.print_table()
        for logger in self.trainer.loggers if self.trainer is not None else []:
            logger.log_hyperparams(split.hyperparameters())
        if self.counts_report is not None:
            from medvision.utils.io import atomic_write_json

            atomic_write_json(self.counts_report, split.summary())

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (and report the training split's counts per class)."""
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(stage or "", SPLITS)
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.dataset(split, train=split == "train")
                if split == "train":
                    self._report_counts()

    def _sampler(self) -> Any:
        """Training sampler: the epoch's order (or class-balanced draw) is a function of the run's
        seed and the epoch, split over DDP ranks (:class:`medvision.data.sampling.EpochSampler`)."""
        from medvision.data.sampling import EpochSampler, resumed_batches

        size, skip = len(self.datasets["train"]), resumed_batches(self.trainer) * self.batch_size
        if not self.balanced_sampler or self.task == "multilabel":
            return EpochSampler(size, skip=skip)
        labels = np.asarray(self.train_labels()).reshape(-1).astype(np.int64)
        counts = np.bincount(labels, minlength=len(self.label_names)).astype(np.float64)
        return EpochSampler(size, weights=1.0 / np.maximum(counts[labels], 1.0), skip=skip)

    def _loader(self, dataset: Any, batch_size: int, sampler: Any, kind: str = "torch") -> Any:
        from medvision.data.loaders import make_loader

        return make_loader(dataset, batch_size, sampler, self.num_workers, self.pin_memory, kind=kind)

    def _eval_loader(self, split: str) -> Any:
        from medvision.data.sampling import eval_sampler

        return self._loader(self.datasets[split], self.val_batch_size, eval_sampler(self.datasets[split]))

    def train_dataloader(self) -> Any:
        """Shuffled (or class-balanced) training batches; order and augmentation are a function of
        the run's seed and the epoch."""
        from medvision.data.sampling import SeededDataset

        return self._loader(SeededDataset(self.datasets["train"]), self.batch_size, self._sampler(), kind=self.loader)

    def val_dataloader(self) -> Any:
        """Validation batches, in order, each sample once over all DDP ranks."""
        return self._eval_loader("val")

    def test_dataloader(self) -> Any:
        """Test batches, in order, each sample once over all DDP ranks."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> Any:
        """The test split, for prediction."""
        return self._eval_loader("test")
