"""``data.cache=preprocessed``: each case's ``load`` steps once, stored as ``.npy`` arrays, read memory-mapped.

Real MONAI transforms on real NIfTI files (the synthetic 3D spheres, written by nibabel), DataModules
built from the composed config tree, and one real ``Trainer.fit`` through ``medvision.train.run``.
Small volumes (6 cases of 32^3, 16^3 patches): the whole file runs in seconds.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from monai.data import MetaTensor

from conftest import compose_in, train_in
from medvision.data.medmnist import MedMNISTDataModule
from medvision.data.preprocessed import PreprocessedDataset
from medvision.utils.errors import MedvisionError
from medvision.utils.seeding import seed_everything
from medvision.utils.validate import validate_config

#: 6 spheres volumes of 32^3 (4 train, 1 val, 1 test), 2 patches of 16^3 per volume, 2 volumes a batch
SMALL_3D = [
    "data=synthetic_seg3d",
    "data.source.num_cases=6",
    "data.source.size=32",
    "data.patch_size=[16,16,16]",
    "data.transforms.num_samples=2",
    "data.batch_size=2",
]
SEED = 5


def _datamodule(root: Path, cache_dir: Path, cache: str, *overrides: str) -> Any:
    """A ``VolumeDataModule`` of the composed config: data under ``root``, caches in ``cache_dir``."""
    cfg = compose_in(
        root, cache_dir.parent / "run", [*SMALL_3D, f"data.cache={cache}", f"data.cache_dir={cache_dir}", *overrides]
    )
    return instantiate(cfg.data)


def _entries(cache_dir: Path) -> set[str]:
    """The entry folders of the preprocessed cache (not the temporary ones)."""
    root = cache_dir / "preprocessed"
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} if root.is_dir() else set()


def _files(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folder``: size, modification time and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _mapped_file(address: int) -> str | None:
    """The file whose memory map holds ``address`` in this process (``/proc/self/maps``), if any."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 else None
    return None


def test_an_epoch_with_the_preprocessed_cache_gives_the_memory_caches_patches(
    medvision_home: Path, tmp_path: Path
) -> None:
    """Same seed, same training patches and validation volumes, bit for bit; the preprocessed run reads
    its samples in a DataLoader worker process (the maps are opened there)."""
    batches: dict[str, tuple[list[Any], list[Any]]] = {}
    for cache, workers in (("memory", 0), ("preprocessed", 1)):
        dm = _datamodule(medvision_home, tmp_path / "cache", cache, f"data.num_workers={workers}")
        seed_everything(SEED)
        dm.setup("fit")
        assert isinstance(dm.datasets["train"], PreprocessedDataset) == (cache == "preprocessed")
        batches[cache] = (list(dm.train_dataloader()), list(dm.val_dataloader()))
    (memory_train, memory_val), (pre_train, pre_val) = batches["memory"], batches["preprocessed"]
    assert len(memory_train) == len(pre_train) == 2 and len(memory_val) == len(pre_val) == 1
    for mem, pre in zip(memory_train, pre_train, strict=True):
        assert mem["image"].shape == (4, 1, 16, 16, 16)  # 2 volumes x 2 patches
        for key in ("image", "label"):
            assert torch.equal(torch.as_tensor(mem[key]), torch.as_tensor(pre[key])), key
        assert pre["label"].sum() > 0  # RandCropByPosNegLabeld's positive patches hold foreground
    for mem, pre in zip(memory_val, pre_val, strict=True):
        for key in ("image", "label"):
            assert torch.equal(torch.as_tensor(mem[key]), torch.as_tensor(pre[key])), key
        assert pre["id"] == mem["id"]
    assert len(_entries(tmp_path / "cache")) == 5  # 4 training and 1 validation case, stored once each


def test_entries_are_npy_arrays_that_the_samples_map_without_a_copy(medvision_home: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    dm = _datamodule(medvision_home, cache_dir, "preprocessed")
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    entry = train.entry(0)
    assert entry.folder.parent == cache_dir / "preprocessed" and entry.folder == train.entry_folder(0)
    expected = dm.deterministic_dataset("train")[0]  # the load steps, no cache
    for key in ("image", "label"):
        mapped = entry.arrays[key]
        assert isinstance(mapped, np.memmap) and Path(mapped.filename) == entry.folder / f"{key}.npy"
        stored = np.load(entry.folder / f"{key}.npy")  # a plain .npy, in the pipeline's dtype
        assert stored.dtype == expected[key].numpy().dtype and np.array_equal(stored, expected[key].numpy())
    sample = entry.sample()
    assert isinstance(sample["image"], MetaTensor) and np.shares_memory(sample["image"].numpy(), entry.arrays["image"])
    assert torch.equal(sample["image"].affine, expected["image"].affine)
    assert [op["class"] for op in sample["image"].applied_operations] == [
        op["class"] for op in expected["image"].applied_operations
    ]
    assert sample["id"] == expected["id"]

    # what the validation dataset gives (no random step) lies in a file map of its entry's image.npy
    item = val[0]
    image_file = val.entry_folder(0) / "image.npy"
    assert _mapped_file(item["image"].data_ptr()) == str(image_file.resolve())
    # copy-on-write: writing into the sample changes this process's pages, never the entry
    before = np.load(image_file)
    item["image"][...] = 123.0
    assert np.array_equal(np.load(image_file), before) and not np.array_equal(before, 123.0)
    assert not torch.equal(val[0]["image"].as_tensor(), item["image"].as_tensor())


def test_a_changed_file_or_setting_makes_new_entries_and_the_data_folder_is_untouched(tmp_path: Path) -> None:
    home, cache_dir = tmp_path / "home", tmp_path / "cache"  # a data folder of this test's own: a file is rewritten
    dm = _datamodule(home, cache_dir, "preprocessed")
    dm.prepare_data()  # writes the dataset; no trainer attached: no entry computed yet
    assert _entries(cache_dir) == set()
    data_folder = Path(dm.root)
    untouched = _files(data_folder)
    assert dm.fill_cache(("train",)) == {"train": (0, 4)}
    first = dm.dataset("train", train=True)
    old = {i: first.entry_folder(i) for i in range(len(first))}
    old_image = np.array(first.entry(0).arrays["image"])

    # rewrite the first training case's image with other content (mirrored)
    changed = Path(dm.samples("train")[0]["image"])
    img = nib.load(changed)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.asarray(img.dataobj)[::-1]), img.affine, img.header), changed)
    dm = _datamodule(home, cache_dir, "preprocessed")
    assert dm.fill_cache(("train",)) == {"train": (3, 1)}  # only that case is computed again
    again = dm.dataset("train", train=True)
    new = {i: again.entry_folder(i) for i in range(len(again))}
    assert new[0] != old[0] and all(new[i] == old[i] for i in range(1, len(new)))
    new_image = np.array(again.entry(0).arrays["image"])
    assert not np.array_equal(new_image, old_image)
    assert np.array_equal(new_image, dm.deterministic_dataset("train")[0]["image"].numpy())

    # another voxel size: other entries, all computed
    coarse = _datamodule(home, cache_dir, "preprocessed", "data.transforms.pixdim=[2.0,2.0,2.0]")
    assert coarse.fill_cache(("train",)) == {"train": (0, 4)}
    resampled = coarse.dataset("train", train=True)
    assert not {resampled.entry_folder(i) for i in range(4)} & set(new.values())
    assert resampled.entry(1).arrays["image"].shape != again.entry(1).arrays["image"].shape
    assert len(_entries(cache_dir)) == 4 + 1 + 4

    # nothing was written into the data folder but the file this test rewrote
    after = _files(data_folder)
    name = str(changed.relative_to(data_folder))
    assert set(after) == set(untouched)
    assert {k: v for k, v in after.items() if k != name} == {k: v for k, v in untouched.items() if k != name}


def test_the_transform_key_of_both_disk_caches_follows_the_settings(medvision_home: Path, tmp_path: Path) -> None:
    """MONAI keys a ``PersistentDataset`` by the transforms' class names alone (they are not JSON
    serialisable); medvision keys both disk caches by what the transforms do."""
    for cache in ("disk", "preprocessed"):
        keys = set()
        for pixdim in ("[1.0,1.0,1.0]", "[1.0,1.0,1.0]", "[1.5,1.0,1.0]"):
            dm = _datamodule(medvision_home, tmp_path / cache, cache, f"data.transforms.pixdim={pixdim}")
            keys.add(dm.dataset("val").transform_hash)
        assert len(keys) == 2, cache  # the same settings: the same key; another pixdim: another


def test_a_damaged_entry_is_computed_again_with_a_warning(medvision_home: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    dm = _datamodule(medvision_home, cache_dir, "preprocessed")
    assert dm.fill_cache(("val",)) == {"val": (0, 1)}
    val = dm.dataset("val")
    expected = dm.deterministic_dataset("val")[0]
    folder = val.entry_folder(0)

    # a truncated array: reading the sample warns, naming the entry, and gives the right data
    image = folder / "image.npy"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match=folder.name):
        item = val[0]
    assert torch.equal(item["image"].as_tensor(), expected["image"].as_tensor())
    assert np.array_equal(np.load(folder / "image.npy"), expected["image"].numpy())  # whole again

    # a garbled metadata file: filling the cache finds it, warns, and computes that entry again
    (folder / "meta.pkl").write_bytes(b"not a pickle")
    with pytest.warns(RuntimeWarning, match=folder.name):
        assert dm.fill_cache(("val",)) == {"val": (0, 1)}
    assert torch.equal(val[0]["label"].as_tensor(), expected["label"].as_tensor())
    assert _entries(cache_dir) == {folder.name}


def _fill_after(dataset: PreprocessedDataset, barrier: Any) -> None:
    barrier.wait()
    dataset.fill(progress=False)


def test_two_processes_filling_at_once_leave_one_whole_entry_per_case(medvision_home: Path, tmp_path: Path) -> None:
    """Two writers of the same entries (two DDP ranks, two nodes on a shared folder): the loser of
    each race reads the winner's entry; no partial or temporary folder is left."""
    cache_dir = tmp_path / "cache"
    dm = _datamodule(medvision_home, cache_dir, "preprocessed")
    dataset = dm.dataset("train", train=True)
    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(2)
    writers = [fork.Process(target=_fill_after, args=(dataset, barrier)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    assert len(_entries(cache_dir)) == 4
    assert not [p for p in (cache_dir / "preprocessed").iterdir() if p.name.startswith(".")]
    assert dataset.fill(progress=False) == (4, 0)
    reference = dm.deterministic_dataset("train")
    for i in range(len(dataset)):
        for key in ("image", "label"):
            assert np.array_equal(dataset.entry(i).arrays[key], reference[i][key].numpy()), (i, key)


def test_a_short_training_run_fills_the_cache_before_the_ranks_read_it(
    medvision_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="medvision.data.base")
    run = train_in(
        medvision_home,
        tmp_path / "run",
        [
            "experiment=synthetic_seg3d",
            *SMALL_3D,
            "debug=limit",
            "trainer.max_epochs=1",
            "model.net.channels=[8,16,32]",
            "model.net.strides=[2,2]",
            "data.cache=preprocessed",
            f"data.cache_dir={cache_dir}",
            f"seed={SEED}",
        ],
    )
    assert math.isfinite(run.metrics["train/loss"]) and 0.0 <= run.metrics["test/dice_mean"] <= 1.0
    # Lightning's prepare_data hook filled each stage's splits: fit (4 train + 1 val), then test (1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data.cache=preprocessed")]
    assert lines == [
        "data.cache=preprocessed (train, val): 0 entries reused, 5 computed",
        "data.cache=preprocessed (test): 0 entries reused, 1 computed",
    ]
    assert len(_entries(cache_dir)) == 6  # one entry per case
    assert not [p for p in (cache_dir / "preprocessed").iterdir() if p.name.startswith(".")]  # no temporary left


def test_array_data_refuse_the_preprocessed_cache_naming_the_key_and_the_choices(
    medvision_home: Path, tmp_path: Path
) -> None:
    with pytest.raises(MedvisionError) as err:
        MedMNISTDataModule("pneumoniamnist", root=str(tmp_path), cache="preprocessed")
    first = str(err.value).splitlines()[0]
    assert "data.cache='preprocessed'" in first and all(c in first for c in ("none", "memory", "disk"))
    # the config check says it before anything is built
    cfg = compose_in(
        medvision_home,
        tmp_path / "run",
        ["data=medmnist", "data.flag=pneumoniamnist", "model=classifier", "data.cache=preprocessed"],
    )
    with pytest.raises(
        MedvisionError, match=re.escape("data.cache='preprocessed': expected one of 'none', 'memory', 'disk'")
    ):
        validate_config(cfg)
    volumes = compose_in(medvision_home, tmp_path / "run", [*SMALL_3D, "data.cache=preprocessed"])
    validate_config(volumes)  # volume data take it
