"""``MedMNISTDataModule``: the official MedMNIST v2/+ ``.npz`` files -> MONAI transforms -> loaders.

Files are read from ``<root>/<flag>.npz`` (28 px) or ``<root>/<flag>_<size>.npz``
(``root`` defaults to ``${paths.data_dir}/medmnist``), with the official keys
``{train,val,test}_images`` (uint8; (N, H, W), (N, H, W, 3) or (N, D, H, W)) and
``{train,val,test}_labels`` ((N, 1) class indices, or (N, L) multi-hot). The official splits
are used as they are. ``medvision-data fetch medmnist <flag> [--size N]`` downloads a file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medvision.data.arrays import ArrayCacheMode, ArrayClassificationDataModule
from medvision.data.base import SpatialDims
from medvision.data.loaders import LoaderKind
from medvision.data.medmnist_info import MedMNISTFlag, MedMNISTInfo, MedMNISTSize, medmnist_info
from medvision.data.splits import SPLITS
from medvision.utils.errors import MedvisionError


def read_medmnist_npz(
    path: str | Path, info: MedMNISTInfo, size: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and check an official MedMNIST file.

    Args:
        path: the ``.npz`` file.
        info: the set's catalogue entry (task, label count, channels, 2D/3D).
        size: expected image side in pixels (``None``: not checked).

    Returns:
        ``{split: (images, labels)}`` for ``train``, ``val`` and ``test``.

    Raises:
        MedvisionError: the file is missing, not a readable ``.npz``, lacks a key, or a key
            holds an array of the wrong dtype or shape; the message names the file and the key.
    """
    path = Path(path)
    fix_download = f"delete it and run `medvision-data fetch medmnist {info.flag}" + (
        f" --size {size}`" if size else "`"
    )
    if not path.is_file():
        raise MedvisionError(
            f"MedMNIST file not found: {path}",
            fix=f"run `medvision-data fetch medmnist {info.flag}"
            + (f" --size {size}`" if size else "`")
            + f", or download {info.url(size or 28)} and put it at {path}",
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise MedvisionError(
            f"{path} is not a readable .npz file ({type(err).__name__}: {err})", fix=fix_download
        ) from err
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with archive:
        found = sorted(archive.files)
        for split in SPLITS:
            arrays = []
            for kind in ("images", "labels"):
                key = f"{split}_{kind}"
                if key not in archive.files:
                    raise MedvisionError(
                        f"{path} has no key '{key}' (keys found: {found})",
                        fix=f"use an official MedMNIST file; {fix_download}",
                    )
                try:
                    array = archive[key]
                except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
                    raise MedvisionError(
                        f"{path}: key '{key}' could not be read ({type(err).__name__}: {err})", fix=fix_download
                    ) from err
                if not isinstance(array, np.ndarray):  # NumPy hands back the raw bytes of a non-.npy member
                    raise MedvisionError(f"{path}: key '{key}' is not a NumPy array", fix=fix_download)
                arrays.append(array)
            images, labels = arrays
            _check(path, split, images, labels, info, size)
            out[split] = (images, labels)
    return out


def _check(
    path: Path, split: str, images: np.ndarray, labels: np.ndarray, info: MedMNISTInfo, size: int | None
) -> None:
    def fail(key: str, what: str) -> MedvisionError:
        return MedvisionError(f"{path}: key '{key}' {what}", fix="use the official file of this flag and size")

    ikey, lkey = f"{split}_images", f"{split}_labels"
    if images.dtype != np.uint8:
        raise fail(ikey, f"has dtype {images.dtype}, expected uint8")
    rgb = images.ndim == 4 and info.spatial_dims == 2 and images.shape[-1] == 3
    expected_ndim = 4 if (info.spatial_dims == 3 or info.n_channels == 3) else 3
    if images.ndim != expected_ndim or (info.n_channels == 3 and not rgb):
        want = {(2, 1): "(N, H, W)", (2, 3): "(N, H, W, 3)"}.get((info.spatial_dims, info.n_channels), "(N, D, H, W)")
        raise fail(ikey, f"has shape {images.shape}, expected {want} for {info.flag}")
    spatial = images.shape[1:4] if info.spatial_dims == 3 else images.shape[1:3]
    if size is not None and any(s != size for s in spatial):
        raise fail(ikey, f"holds images of {spatial}, expected side {size} (data.size={size})")
    width = len(info.labels) if info.our_task == "multilabel" else 1
    if labels.ndim != 2 or labels.shape != (images.shape[0], width):
        raise fail(lkey, f"has shape {labels.shape}, expected ({images.shape[0]}, {width})")
    if labels.size and (labels.min() < 0 or labels.max() >= (2 if width > 1 else len(info.labels))):
        raise fail(
            lkey,
            f"holds values {int(labels.min())}..{int(labels.max())}, "
            f"outside the {len(info.labels)} labels of {info.flag}",
        )


class MedMNISTDataModule(ArrayClassificationDataModule):
    """A LightningDataModule of one MedMNIST set at one size, with the official splits.

    Args:
        flag: the set (``pathmnist``, ``chestmnist``, ..., ``organmnist3d``; see
            :data:`medvision.data.medmnist_info.INFO`).
        size: 28, 64, 128 or 224 (2D); 28 or 64 (3D): which official file is read.
        root: folder holding the ``.npz`` files.
        transforms: ``{"load": ..., "augment": ...}``: ordered mappings name -> MONAI dict
            transform (``None`` entries dropped) applied to ``{"image": (C, H, W[, D]) float in
            0..255, "label", "id"}``; ``augment`` on training samples only. The paper's "224"
            protocol is a ``Resized(..., mode="nearest")`` step in ``load``.
        as_rgb: repeat grey images to 3 channels (the MedMNIST v2 ResNets always take RGB).
        batch_size: training batch size.
        val_batch_size: validation/test batch size (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory (useful on GPU).
        balanced_sampler: draw training samples with probability inversely proportional to
            their class frequency (single-label tasks; epochs keep their length).
        download: fetch the official file (with its MD5 check) when it is missing.
        cache: ``none``, ``memory`` (``CacheDataset``: the deterministic transforms once; mind
            the size of upsampled sets) or ``disk`` (``PersistentDataset`` in ``cache_dir``).
        cache_dir: folder of the disk cache.
        spatial_dims: what the config declares for the nets (``data.spatial_dims``); must
            match the set (3 for the ``*mnist3d`` sets, else 2). ``None``: not checked.
        imbalance, synthetic, counts_report, loader: down-sample a training class, mix in a synthetic
            store, report the training counts, the training loader; see
            :class:`medvision.data.arrays.ArrayClassificationDataModule`.
    """

    def __init__(
        self,
        flag: MedMNISTFlag,
        size: MedMNISTSize = 28,
        root: str = "data/medmnist",
        transforms: Mapping[str, Any] | None = None,
        as_rgb: bool = False,
        batch_size: int = 128,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        balanced_sampler: bool = False,
        download: bool = False,
        cache: ArrayCacheMode = "none",
        cache_dir: str | None = None,
        spatial_dims: SpatialDims | None = None,
        imbalance: Mapping[str, Any] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        counts_report: str | None = None,
        loader: LoaderKind = "torch",
    ) -> None:
        super().__init__(
            transforms=transforms,
            as_rgb=as_rgb,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            balanced_sampler=balanced_sampler,
            cache=cache,
            cache_dir=cache_dir or Path(root) / ".cache",
            imbalance=imbalance,
            synthetic=synthetic,
            counts_report=counts_report,
            loader=loader,
        )
        self.info = medmnist_info(flag)
        self.info.check_size(size)
        if spatial_dims is not None and spatial_dims != self.info.spatial_dims:
            raise MedvisionError(
                f"data.spatial_dims={spatial_dims} but {self.info.flag} is {self.info.spatial_dims}D",
                fix=f"set data.spatial_dims={self.info.spatial_dims}",
            )
        self.size = size
        self.root = Path(root)
        self.download = download
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def path(self) -> Path:
        """The official file this module reads."""
        return self.root / self.info.filename(self.size)

    @property
    def label_names(self) -> list[str]:
        """Class names (index = label value), or label names for a multi-label set."""
        return list(self.info.labels)

    @property
    def task(self) -> str:
        """``binary``, ``multiclass`` or ``multilabel`` (ChestMNIST)."""
        return self.info.our_task

    @property
    def source_channels(self) -> int:
        """Channels of the stored images (3 for the RGB sets)."""
        return self.info.n_channels

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return self.info.spatial_dims

    @property
    def cache_name(self) -> str:
        """The disk cache is per file."""
        return self.path.stem

    def input_files(self) -> list[str]:
        """The MedMNIST ``.npz`` file."""
        return [str(self.path)]

    def prepare_data(self) -> None:
        """Download the official file when ``download`` is set and it is missing."""
        if self.download and not self.path.is_file():
            from medvision.data.fetch import fetch_medmnist

            fetch_medmnist(self.info.flag, self.size, self.root)

    @property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{split: (images, labels)}`` of the file, read and checked on first access."""
        if self._arrays is None:
            self._arrays = read_medmnist_npz(self.path, self.info, self.size)
        return self._arrays
