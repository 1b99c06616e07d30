"""``PreprocessedDataset``: ``data.cache=preprocessed``, each case preprocessed once and memory-mapped.

The deterministic prefix of a case's transforms (the ``load`` steps: everything before the first
random transform, what MONAI's ``CacheDataset`` and ``PersistentDataset`` cache) runs once, and
its result is stored as one entry folder, as nnU-Net stores its preprocessed cases::

    <cache folder>/<key>/image.npy    one plain .npy array per array-valued key, in the dtype
                        label.npy     the pipeline produced
                        meta.pkl      each MetaTensor's metadata and applied operations, and the
                                      sample's other (non-array) values

Reading an entry maps its arrays copy-on-write (``np.load(mmap_mode="c")``) and wraps them as
MetaTensors without a copy: every DataLoader worker and every DDP rank reads the same page cache,
a random crop touches only the pages it reads, and a transform that writes in place gets private
pages (the file is never changed). The random transforms then run as with any MONAI dataset
(``PersistentDataset``'s own split into deterministic prefix and random rest).

The entry's key (its folder name) is a hash of the sample (its paths and ids, as
``PersistentDataset`` hashes it), of the fingerprint of every file the sample names (resolved
path, size, modification time; a folder, a DICOM series: each file in it), of the deterministic
transforms (what they do: :func:`medvision.data.transforms.transform_state`) and of
:data:`FORMAT_VERSION`: a changed file or a changed preprocessing setting gives a new key, and
the old entry is never read again. An entry is written into a temporary sibling folder and
renamed into place (``os.replace``): readers never see a partial entry; of two writers (two DDP
ranks) the one that loses the race reads the winner's entry. An unreadable entry (a truncated
``.npy``, a damaged ``meta.pkl``) is recomputed with a warning naming it. Entries are never
deleted (delete the folder to reclaim the space); temporary folders that a stopped writer left
are, by :meth:`PreprocessedDataset.fill`, an hour later.

``meta.pkl`` is a pickle: the cache folder must be one only the user writes (the disk cache's
trust model, ``data.cache=disk``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, PersistentDataset
from monai.data.utils import pickle_hashing

from medvision.data.transforms import transform_hash

#: bump when the layout of an entry changes: entries of other versions get other keys
FORMAT_VERSION = 1
#: the entry's metadata file
META_FILE = "meta.pkl"
#: a temporary folder older than this (seconds) was left by a writer that was stopped: removed
STALE_AFTER_S = 3600.0


@dataclass(frozen=True)
class PreprocessedEntry:
    """One case's stored preprocessing: its folder, its memory-mapped arrays and its metadata.

    Attributes:
        folder: the entry's folder (named by its key).
        arrays: each array-valued key's array, a copy-on-write ``np.memmap`` of ``<folder>/<file>.npy``.
        meta: what ``meta.pkl`` holds: ``arrays`` (key -> file, kind, MetaTensor state) and
            ``values`` (the sample's other keys).
    """

    folder: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def sample(self) -> dict[str, Any]:
        """The preprocessed sample: MetaTensors (or tensors, arrays) on the mapped arrays, no copy made."""
        out: dict[str, Any] = dict(self.meta["values"])
        for key, spec in self.meta["arrays"].items():
            array = self.arrays[key]
            if spec["kind"] == "ndarray":
                out[key] = array
                continue
            tensor = torch.from_numpy(array)  # shares the mapped memory
            if spec["kind"] == "meta_tensor":
                # as torch.load rebuilds a MetaTensor: the tensor as the subclass, then its state
                # (metadata, applied operations, batch flag, spatial dims) set on it
                tensor = tensor.as_subclass(MetaTensor)
                tensor.__dict__.update(deepcopy(spec["state"]))
            out[key] = tensor
        return out


def file_fingerprints(item: Any) -> list[list[Any]]:
    """``[resolved path, size, mtime_ns]`` of every existing file a sample names, in a fixed order.

    String (and path) values are looked at, inside dicts, lists and tuples too; a value naming a
    folder (a DICOM series) adds each file directly in it. Other values (ids, numbers) add nothing.

    Args:
        item: a sample dictionary (or any nesting of dicts, lists and strings).
    """
    found: dict[str, list[Any]] = {}
    for value in _strings(item):
        path = Path(value)
        try:
            if path.is_file():
                paths = [path]
            elif path.is_dir():
                paths = sorted(p for p in path.iterdir() if p.is_file())
            else:
                continue
            for p in paths:
                st = p.stat()
                resolved = str(p.resolve())
                found[resolved] = [resolved, st.st_size, st.st_mtime_ns]
        except OSError:
            continue  # unreadable: the transforms will say so
    return [found[k] for k in sorted(found)]


def _strings(item: Any) -> Iterator[str]:
    if isinstance(item, (str, os.PathLike)):
        value = os.fspath(item)
        if isinstance(value, str) and value:
            yield value
    elif isinstance(item, Mapping):
        for value in item.values():
            yield from _strings(value)
    elif isinstance(item, (list, tuple)):
        for value in item:
            yield from _strings(value)


class PreprocessedDataset(PersistentDataset):
    """MONAI's ``PersistentDataset`` whose entries are plain ``.npy`` arrays read memory-mapped.

    Everything but the entry store is ``PersistentDataset``'s: the deterministic prefix of
    ``transform`` (up to the first random transform) is what is stored, the rest runs on every
    read (``_post_transform``), seeded as the caller seeds ``transform``
    (:class:`medvision.data.sampling.SeededDataset`). See the module docstring for the layout,
    the key and the writing.

    Args:
        data: the samples (dictionaries naming their files).
        transform: the transforms (a MONAI ``Compose`` or a list).
        cache_dir: the folder holding the entries (created when missing); ``None``: no cache,
            every read preprocesses.
        hash_func: the hash of a sample (default: MONAI's ``pickle_hashing``).
        hash_transform: the hash of the deterministic transforms (default: what they do,
            :func:`~medvision.data.transforms.transform_hash`).
    """

    def __init__(
        self,
        data: Sequence,
        transform: Sequence[Callable] | Callable,
        cache_dir: Path | str | None,
        hash_func: Callable[..., bytes] = pickle_hashing,
        hash_transform: Callable[..., bytes] | None = None,
    ) -> None:
        super().__init__(
            data,
            transform,
            cache_dir=cache_dir,
            hash_func=hash_func,
            hash_transform=hash_transform or transform_hash,
            track_meta=True,
        )

    # ----------------------------------------------------------------- public
    def entry_folder(self, index: int) -> Path:
        """The folder of sample ``index``'s entry (whether or not it is written yet)."""
        if self.cache_dir is None:
            raise ValueError("this PreprocessedDataset has no cache_dir")
        return self._folder(self.data[index])

    def entry(self, index: int) -> PreprocessedEntry:
        """Sample ``index``'s entry, computed and written first when missing or unreadable.

        Its :attr:`~PreprocessedEntry.arrays` are the memory maps the dataset's samples are built on.
        """
        if self.cache_dir is None:
            raise ValueError("this PreprocessedDataset has no cache_dir")
        item = self.data[index]
        folder = self._folder(item)
        entry = self._read(folder)
        if entry is None:
            entry = self._write(folder, self._pre_transform(deepcopy(item)))
        if entry is None:
            raise OSError(f"cannot write the preprocessed entry {folder}")
        return entry

    def fill(self, progress: bool = True, description: str = "preprocessing") -> tuple[int, int]:
        """Compute and write every missing (or unreadable) entry.

        Args:
            progress: show a progress bar while more than one entry is computed.
            description: the progress bar's text.

        Returns:
            ``(reused, computed)``: entries found readable, entries computed now.
        """
        if self.cache_dir is None:
            return 0, 0
        _remove_stale(self.cache_dir)
        todo = [i for i in range(len(self)) if self._read(self._folder(self.data[i])) is None]
        steps: Any = todo
        if progress and len(todo) > 1:
            from rich.progress import track

            steps = track(todo, description=description, transient=True)
        for i in steps:
            item = self.data[i]
            self._write(self._folder(item), self._pre_transform(deepcopy(item)))
        return len(self) - len(todo), len(todo)

    def set_data(self, data: Sequence) -> None:
        """Set the samples. Entries are keyed by content: none is deleted (``PersistentDataset``
        empties its whole folder, which other splits and runs share here)."""
        self.data = data

    # ----------------------------------------------------------------- PersistentDataset
    def _cachecheck(self, item_transformed: Any) -> Any:
        """The deterministic prefix of ``item_transformed``: read from its entry, else computed
        (and stored). A computed item is given back as read from its new entry (memory-mapped);
        when it cannot be stored (a read-only or full disk), as computed."""
        if self.cache_dir is None:
            return self._pre_transform(deepcopy(item_transformed))
        folder = self._folder(item_transformed)
        entry = self._read(folder)
        if entry is not None:
            return entry.sample()
        computed = self._pre_transform(deepcopy(item_transformed))  # keep the original hashed
        entry = self._write(folder, computed)
        return entry.sample() if entry is not None else computed

    # ----------------------------------------------------------------- the entry store
    def _folder(self, item: Any) -> Path:
        """The entry folder of a sample: the hash of the sample, its files, the transforms, the format."""
        assert self.cache_dir is not None
        digest = hashlib.sha256()
        digest.update(self.hash_func(item))
        digest.update(json.dumps(file_fingerprints(item)).encode())
        digest.update(self.transform_hash.encode())
        digest.update(f"format-{FORMAT_VERSION}".encode())
        return self.cache_dir / digest.hexdigest()[:40]

    def _read(self, folder: Path) -> PreprocessedEntry | None:
        """The entry in ``folder``; ``None`` when there is none, or (with a warning, the entry
        removed) when it cannot be read."""
        if not folder.is_dir():
            return None
        try:
            with open(folder / META_FILE, "rb") as fh:
                meta = pickle.load(fh)  # medvision's own entries: data.cache_dir is a folder only the user writes
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('version')}, expected {FORMAT_VERSION}")
            arrays = {}
            for key, spec in meta["arrays"].items():
                array = np.load(folder / spec["file"], mmap_mode="c", allow_pickle=False)
                if list(array.shape) != list(spec["shape"]) or str(array.dtype) != spec["dtype"]:
                    found, expected = f"{array.dtype}{list(array.shape)}", f"{spec['dtype']}{spec['shape']}"
                    raise ValueError(f"{spec['file']} holds {found}, not {expected}")
                arrays[key] = array
        except Exception as err:  # noqa: BLE001 - any damage (truncated, garbled, foreign) means: recompute
            warnings.warn(
                f"data.cache=preprocessed: the entry {folder} cannot be read ({type(err).__name__}: {err}); "
                "it is computed again",
                RuntimeWarning,
                stacklevel=2,
            )
            _remove(folder)
            return None
        return PreprocessedEntry(folder, arrays, meta)

    def _write(self, folder: Path, item: Any) -> PreprocessedEntry | None:
        """Store ``item`` as the entry ``folder`` (atomically) and read it back; ``None`` when it
        cannot be written. A concurrent writer's entry, already in place, is kept and read."""
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        except OSError as err:
            warnings.warn(f"data.cache=preprocessed: cannot write into {folder.parent} ({err})", stacklevel=2)
            return None
        try:
            _save(tmp, item)
            try:
                os.replace(tmp, folder)
            except OSError:
                if not folder.is_dir():
                    raise
                # another process (a DDP rank) put the same entry in place first: read its one
        except OSError as err:
            warnings.warn(f"data.cache=preprocessed: cannot write the entry {folder} ({err})", stacklevel=2)
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self._read(folder)


def _save(folder: Path, item: Any) -> None:
    """Write ``item`` into ``folder``: one ``.npy`` per array-valued key, the rest in ``meta.pkl``."""
    if not isinstance(item, Mapping):
        made = type(item).__name__
        raise TypeError(
            f"data.cache=preprocessed stores sample dictionaries; the deterministic transforms gave a {made}"
        )
    arrays: dict[str, dict[str, Any]] = {}
    values: dict[str, Any] = {}
    names: set[str] = set()
    for key, value in item.items():
        array, kind, state = _as_array(value)
        if array is None:
            values[key] = value
            continue
        name = _file_name(str(key), names)
        np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)
        arrays[key] = {
            "file": name,
            "kind": kind,
            "state": state,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
        }
    meta = {"version": FORMAT_VERSION, "arrays": arrays, "values": values}
    with open(folder / META_FILE, "wb") as fh:
        pickle.dump(meta, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _as_array(value: Any) -> tuple[np.ndarray | None, str, dict[str, Any] | None]:
    """``(array, kind, MetaTensor state)`` of an array-valued value; ``(None, "", None)`` for others."""
    if isinstance(value, torch.Tensor):
        try:
            array = value.detach().cpu().numpy()  # MetaTensor.numpy(): the plain data
        except (TypeError, RuntimeError):
            return None, "", None  # a dtype NumPy lacks (bfloat16): kept in meta.pkl
        if isinstance(value, MetaTensor):
            return array, "meta_tensor", dict(value.__dict__)
        return array, "tensor", None
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc" and not isinstance(value, np.ma.MaskedArray):
        return value, "ndarray", None
    return None, "", None


def _file_name(key: str, taken: set[str]) -> str:
    """``<key>.npy`` when the key makes a plain file name, else ``array_<n>.npy``; unique."""
    stem = key if key and all(c.isalnum() or c in "_-" for c in key) else f"array_{len(taken)}"
    while f"{stem}.npy" in taken or f"{stem}.npy" == META_FILE:
        stem += "_"
    taken.add(f"{stem}.npy")
    return f"{stem}.npy"


def _remove_stale(cache_dir: Path) -> None:
    """Remove the temporary folders (``.<key>.*.tmp``, ``.<key>.*.trash``) that stopped writers left."""
    import time

    if not cache_dir.is_dir():
        return
    now = time.time()
    for path in [*cache_dir.glob(".*.tmp"), *cache_dir.glob(".*.trash")]:
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(path, ignore_errors=True)


def _remove(folder: Path) -> None:
    """Remove an entry: renamed away first (a reader never sees it half deleted), then deleted."""
    trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.trash")
    try:
        os.replace(folder, trash)
    except OSError:
        return  # gone already (another process removed it)
    shutil.rmtree(trash, ignore_errors=True)
