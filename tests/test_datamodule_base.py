"""One DataModule base: both families (volumes, arrays) share its transforms, cache, loaders and checks.

The DataModules are built from the real config tree (``hydra.compose`` + ``instantiate``): the
tiny 2D synthetic segmentation set for volumes, a tiny MedMNIST file in the official format for
arrays. Bad choices are tried through the real console script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from monai.data import CacheDataset, Dataset, PersistentDataset, ThreadDataLoader

from conftest import TINY_2D, run_cli
from medmnist_files import write_medmnist
from medvision.data.base import MedvisionDataModule
from medvision.data.datamodule import VolumeDataModule
from medvision.data.dicom_modality import DicomModalityDataModule
from medvision.data.medmnist import MedMNISTDataModule
from medvision.utils.errors import MedvisionError

FLAG = "pneumoniamnist"
FAMILIES = ("volumes", "arrays")
#: what each data.cache value builds, whatever the family
CACHE_TYPES = {"none": Dataset, "memory": CacheDataset, "disk": PersistentDataset}


def _datamodule(family: str, compose_run: Any, tmp_path: Path, *overrides: str) -> Any:
    """A DataModule of ``family`` instantiated from the composed config, its disk cache in ``tmp_path``."""
    cache_dir = f"data.cache_dir={tmp_path / family / 'cache'}"
    if family == "volumes":
        return instantiate(compose_run([*TINY_2D, cache_dir, *overrides], name=f"{family}_run").data)
    cfg = compose_run(
        [
            f"paths.root_dir={tmp_path}",
            "data=medmnist",
            f"data.flag={FLAG}",
            "model=classifier",
            "data.batch_size=4",
            cache_dir,
            *overrides,
        ],
        name=f"{family}_run",
    )
    if not (Path(cfg.data.root) / f"{FLAG}.npz").is_file():
        write_medmnist(Path(cfg.data.root), FLAG, n=8)
    return instantiate(cfg.data)


def test_every_datamodule_is_a_medvision_datamodule(compose_run, tmp_path: Path) -> None:
    volumes, arrays = (_datamodule(f, compose_run, tmp_path) for f in FAMILIES)
    assert isinstance(volumes, VolumeDataModule) and isinstance(arrays, MedMNISTDataModule)
    for dm in (volumes, arrays, DicomModalityDataModule()):  # DICOM: built lazily, nothing decoded here
        assert isinstance(dm, MedvisionDataModule)
    for dm in (volumes, arrays):  # what every model is told of its data
        kwargs = dm.model_kwargs()
        assert kwargs["label_names"] == dm.label_names and kwargs["in_channels"] == dm.in_channels


@pytest.mark.parametrize("cache", sorted(CACHE_TYPES))
def test_one_cache_option_builds_the_same_monai_datasets_in_both_families(
    compose_run, tmp_path: Path, cache: str
) -> None:
    for family in FAMILIES:
        dm = _datamodule(family, compose_run, tmp_path, f"data.cache={cache}")
        dm.setup("fit")
        assert set(dm.datasets) == {"train", "val"}, family
        for split, dataset in dm.datasets.items():
            assert type(dataset) is CACHE_TYPES[cache], (family, split, type(dataset))
            sample = dataset[0]
            for one in sample if isinstance(sample, list) else [sample]:  # patch samplers give a list
                assert {"image", "label"} <= set(one)
        if cache == "disk":
            assert any((tmp_path / family / "cache").rglob("*.pt")), f"{family}: nothing written to data.cache_dir"


@pytest.mark.parametrize("loader", ["torch", "thread"])
def test_training_loader_honours_data_loader_in_both_families(compose_run, tmp_path: Path, loader: str) -> None:
    for family in FAMILIES:
        dm = _datamodule(family, compose_run, tmp_path, f"data.loader={loader}", "data.cache=none")
        dm.setup("fit")
        train, val = dm.train_dataloader(), dm.val_dataloader()
        assert isinstance(train, ThreadDataLoader) == (loader == "thread"), family
        assert not isinstance(val, ThreadDataLoader), f"{family}: validation always uses the torch loader"
        assert {"image", "label"} <= set(next(iter(train)))


def test_stages_build_the_same_splits_in_both_families(compose_run, tmp_path: Path) -> None:
    for family in FAMILIES:
        dm = _datamodule(family, compose_run, tmp_path, "data.cache=none")
        dm.setup("test")
        assert set(dm.datasets) == {"test"}, family
        dm.setup("fit")
        assert set(dm.datasets) == {"train", "val", "test"}, family
        assert len(list(dm.test_dataloader())) == len(list(dm.predict_dataloader()))


@pytest.mark.parametrize(
    ("make", "key", "choices"),
    [
        (lambda root: VolumeDataModule(root=root, cache="ram"), "data.cache", ["none", "memory", "disk"]),
        (lambda root: VolumeDataModule(root=root, loader="threads"), "data.loader", ["torch", "thread"]),
        (lambda root: VolumeDataModule(root=root, on_invalid="ignore"), "data.on_invalid", ["error", "skip"]),
        (lambda root: MedMNISTDataModule(FLAG, root=root, cache="ram"), "data.cache", ["none", "memory", "disk"]),
        (lambda root: MedMNISTDataModule(FLAG, root=root, loader="threads"), "data.loader", ["torch", "thread"]),
    ],
)
def test_a_datamodule_built_in_python_names_the_key_and_its_choices(
    make: Any, key: str, choices: list[str], tmp_path: Path
) -> None:
    with pytest.raises(MedvisionError) as err:
        make(str(tmp_path))
    first = str(err.value).splitlines()[0]
    assert key in first and all(repr(c) in first for c in choices), first


@pytest.mark.parametrize(
    ("overrides", "key", "choices"),
    [
        (["data.loader=threads"], "data.loader", ["torch", "thread"]),
        (["data.cache=ram"], "data.cache", ["none", "memory", "disk"]),
        (["experiment=medmnist/resnet18_28", "data.flag=nosuchmnist"], "data.flag", ["pathmnist", "pneumoniamnist"]),
    ],
)
def test_a_bad_choice_ends_in_one_line_naming_the_key_and_the_choices(
    overrides: list[str], key: str, choices: list[str], tmp_path: Path
) -> None:
    """Through the console script: exit 2, one ``medvision error:`` line, no Hydra or Python traceback.

    Config validation rejects the value before anything is built: no data file is needed.
    """
    proc = run_cli("medvision-train", overrides, cwd=tmp_path)  # stdout holds both streams
    assert proc.returncode == 2, proc.stdout
    errors = [line for line in proc.stdout.splitlines() if line.startswith("medvision error:")]
    assert len(errors) == 1, proc.stdout
    assert key in errors[0] and all(repr(c) in errors[0] for c in choices), errors[0]
    for text in ("InstantiationException", "Traceback", "Error in call to target"):
        assert text not in proc.stdout, proc.stdout


def test_a_mistake_found_inside_a_constructor_also_ends_in_one_line(tmp_path: Path) -> None:
    """Checks that compare two keys run in a constructor (under Hydra's instantiate); they end the same way."""
    args = ["experiment=medmnist/resnet18_3d", "data.size=128", "print_config=false"]
    proc = run_cli("medvision-train", args, cwd=tmp_path)  # stdout holds both streams
    assert proc.returncode == 2, proc.stdout
    errors = [line for line in proc.stdout.splitlines() if line.startswith("medvision error:")]
    assert len(errors) == 1 and "128" in errors[0] and "[28, 64]" in errors[0], proc.stdout
    for text in ("InstantiationException", "Traceback", "Error in call to target"):
        assert text not in proc.stdout, proc.stdout
