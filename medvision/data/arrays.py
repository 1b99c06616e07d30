"""``ArrayClassificationDataModule``: classification data held as arrays -> MONAI transforms -> loaders.

The base of the DataModules whose samples fit in memory as ``{split: (images, labels)}``
arrays (:class:`medvision.data.medmnist.MedMNISTDataModule`, the official ``.npz`` files;
:class:`medvision.data.dicom_modality.DicomModalityDataModule`, decoded DICOM frames). A
subclass reads its arrays and says what they are (label names, task, channels, 2D/3D); this
class turns them into sample dictionaries (:class:`ArraySamples`), composes the training split
(``imbalance``, ``synthetic``) and weighs a class-balanced draw; transforms, cache, samplers and
loaders are the DataModule base's (:class:`medvision.data.base.MedvisionDataModule`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medvision.data.base import MedvisionDataModule
from medvision.data.loaders import LoaderKind
from medvision.utils.errors import MedvisionError
from medvision.utils.validate import choices_of

#: what ``data.cache`` chooses for array data: ``preprocessed`` (memory-mapped entries of cases
#: read from files) is not offered: the arrays are in memory already, one ``.npy`` file per small
#: image would only add file system work
ArrayCacheMode = Literal["none", "memory", "disk"]

if TYPE_CHECKING:
    from medvision.augment.mixing import TrainingSplit


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

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        split: str,
        spatial_dims: int,
        multilabel: bool,
        as_rgb: bool,
        ids: Sequence[str] | None = None,
    ) -> None:
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


class ArrayClassificationDataModule(MedvisionDataModule):
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
            ``disk`` (``PersistentDataset`` in ``cache_dir``); not ``preprocessed`` (volumes read
            from files only).
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
        cache: ArrayCacheMode = "none",
        cache_dir: str | Path | None = None,
        loader: LoaderKind = "torch",
        imbalance: Mapping[str, Any] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        counts_report: str | Path | None = None,
    ) -> None:
        super().__init__(
            transforms=transforms,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            loader=loader,
            cache=cache,
            cache_dir=cache_dir,
        )
        if cache not in choices_of(ArrayCacheMode):
            valid = ", ".join(choices_of(ArrayCacheMode))
            raise MedvisionError(
                f"data.cache={cache!r} is for volumes read from files; {type(self).__name__} holds its images "
                f"as arrays in memory (data.cache: one of {valid})",
                fix="set data.cache=memory (or none, disk)",
            )
        self.as_rgb = as_rgb
        self.balanced_sampler = balanced_sampler
        # read (and checked) when the training split is first composed, not here: an error raised
        # inside Hydra's instantiate() would reach the user wrapped in its InstantiationException
        self.imbalance, self.synthetic = imbalance, synthetic
        self.counts_report = Path(counts_report) if counts_report else None
        self._train_split: TrainingSplit | None = None

    # -- what a subclass provides -------------------------------------------------------------
    @property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{split: (images, labels)}`` for ``train``, ``val`` and ``test``."""
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
        """What a model must know of this data: label names, channels, task and 2D/3D."""
        return {**super().model_kwargs(), "task": self.task, "spatial_dims": self.spatial_dims}

    def training_split(self) -> TrainingSplit | None:
        """The training split's composition: real samples kept by ``imbalance``, synthetic ones mixed in.

        ``None`` for a multi-label task without these options.
        """
        if self._train_split is None:
            from medvision.augment.imbalance import Imbalance
            from medvision.augment.mixing import SyntheticMix, training_split

            self._train_split = training_split(
                self.arrays["train"][1],
                self.label_names,
                self.task,
                Imbalance.from_config(self.imbalance),
                SyntheticMix.from_config(self.synthetic),
            )
        return self._train_split

    def train_labels(self) -> np.ndarray:
        """Labels of the training dataset's samples, in its order (real samples kept, then synthetic ones).

        Class indices (N,) for single-label tasks, the (N, L) multi-hot array for multi-label ones.
        """
        split = self.training_split()
        if split is None:
            return self.arrays["train"][1]
        return np.concatenate([split.labels[split.real], split.synthetic_labels])

    # -- MedvisionDataModule -------------------------------------------------------------------
    def samples(self, split: str) -> ArraySamples:
        """The real samples of ``split``; for ``train``, those ``imbalance`` keeps."""
        images, labels = self.arrays[split]
        ids = self.sample_ids(split)
        composition = self.training_split() if split == "train" else None
        if composition is not None and len(composition.real) != len(labels):
            kept = composition.real
            images, labels = images[kept], labels[kept]
            ids = [ids[k] for k in kept] if ids is not None else [f"{split}/{k}" for k in kept]
        return ArraySamples(images, labels, split, self.spatial_dims, self.task == "multilabel", self.as_rgb, ids)

    def cache_folder(self, split: str) -> Path:
        """``<cache_dir>/<cache_name>_<split>`` (``cache_dir`` defaults to ``.cache``)."""
        return (self.cache_dir or Path(".cache")) / f"{self.cache_name}_{split}"

    def dataset(self, split: str, train: bool = False) -> Any:
        """MONAI ``Dataset`` of ``split`` with the evaluation (or training) transform.

        The ``train`` split holds the real samples kept by ``imbalance`` followed by the
        ``synthetic`` samples (already in model-input space: they skip ``load`` and get only
        the ``augment`` transforms when ``train``). Other splits are the data's own.
        """
        real = super().dataset(split, train)
        composition = self.training_split() if split == "train" else None
        if (
            composition is None
            or composition.store is None
            or composition.synthetic is None
            or not len(composition.synthetic)
        ):
            return real
        return self._with_synthetic(real, self.samples(split), composition, train)

    def _with_synthetic(self, real: Any, samples: ArraySamples, composition: TrainingSplit, train: bool) -> Any:
        """``real`` followed by the synthetic samples (checked against a real sample after ``load``)."""
        from monai.data import Dataset
        from monai.transforms import Compose
        from torch.utils.data import ConcatDataset

        from medvision.augment.mixing import SyntheticSamples, check_shape

        assert composition.store is not None and composition.synthetic is not None and composition.mix is not None
        like = self.eval_transform()(samples[0])  # a real training sample in model-input space
        check_shape(composition.store, like["image"], composition.mix, self.as_rgb)
        synthetic = Dataset(
            SyntheticSamples(composition.store, composition.synthetic, like, self.as_rgb),  # type: ignore[arg-type]
            Compose(self.augment_transforms if train else []),
        )
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
        built = "train" in self.datasets
        super().setup(stage)
        if not built and "train" in self.datasets:
            self._report_counts()

    def sample_weights(self) -> np.ndarray | None:
        """With ``balanced_sampler`` (single-label tasks): each training sample's inverse class frequency."""
        if not self.balanced_sampler or self.task == "multilabel":
            return None
        labels = np.asarray(self.train_labels()).reshape(-1).astype(np.int64)
        counts = np.bincount(labels, minlength=len(self.label_names)).astype(np.float64)
        return 1.0 / np.maximum(counts[labels], 1.0)
