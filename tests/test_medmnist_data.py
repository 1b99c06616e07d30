"""MedMNIST files: the catalogue, reading, the paper's 224 protocol, and clear errors for bad files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from medmnist_files import write_medmnist
from medvision.data.medmnist import MedMNISTDataModule
from medvision.data.medmnist_info import FLAGS, INFO, SIZES_2D, SIZES_3D, medmnist_info
from medvision.utils.errors import USER_ERROR_EXIT_CODE, MedvisionError


def test_catalogue_has_the_18_sets_with_official_names() -> None:
    assert len(INFO) == 18
    assert sum(i.spatial_dims == 3 for i in INFO.values()) == 6
    path = medmnist_info("pathmnist")
    assert (path.filename(28), path.filename(64), path.filename(224)) == (
        "pathmnist.npz",
        "pathmnist_64.npz",
        "pathmnist_224.npz",
    )
    assert path.url(28) == "https://zenodo.org/records/10519652/files/pathmnist.npz?download=1"
    assert medmnist_info("chestmnist").our_task == "multilabel" and len(medmnist_info("chestmnist").labels) == 14
    assert medmnist_info("retinamnist").our_task == "multiclass"
    for info in INFO.values():
        assert set(info.md5) == set(info.sizes) and all(len(m) == 32 for m in info.md5.values())
    with pytest.raises(MedvisionError, match="comes in sizes"):
        medmnist_info("organmnist3d").filename(224)
    # the choices config validation offers for data.flag and data.size are the catalogue's
    assert tuple(INFO) == FLAGS
    assert set(SIZES_3D) <= set(SIZES_2D) == {s for info in INFO.values() for s in info.sizes}


@pytest.mark.parametrize(
    ("flag", "shape", "channels", "task"),
    [
        ("pathmnist", (3, 28, 28), 3, "multiclass"),
        ("pneumoniamnist", (1, 28, 28), 1, "binary"),
        ("chestmnist", (1, 28, 28), 1, "multilabel"),
        ("nodulemnist3d", (1, 28, 28, 28), 1, "binary"),
    ],
)
def test_reads_official_format(flag: str, shape: tuple[int, ...], channels: int, task: str, tmp_path: Path) -> None:
    write_medmnist(tmp_path, flag, n=6)
    dm = MedMNISTDataModule(flag, root=str(tmp_path), spatial_dims=len(shape) - 1)
    assert dm.model_kwargs() == {
        "label_names": list(INFO[flag].labels),
        "in_channels": channels,
        "task": task,
        "spatial_dims": len(shape) - 1,
    }
    dm.setup("fit")
    sample = dm.datasets["train"][0]
    assert tuple(sample["image"].shape) == shape and sample["image"].dtype == np.float32
    label = np.asarray(sample["label"])
    assert label.shape == ((14,) if task == "multilabel" else (1,))


def test_paper_224_protocol_upsamples_with_nearest_neighbour(compose_run, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose_run(["experiment=medmnist/resnet18_224", f"paths.root_dir={tmp_path}"])
    write_medmnist(Path(cfg.data.root), "pathmnist", n=4)
    dm = instantiate(cfg.data)
    dm.setup("test")
    image = torch.as_tensor(dm.datasets["test"][0]["image"])
    raw = torch.as_tensor(dm.arrays["test"][0][0]).permute(2, 0, 1).float() / 127.5 - 1.0
    assert image.shape == (3, 224, 224)
    # nearest neighbour by an integer factor of 8: every 8x8 block is one source pixel
    assert torch.allclose(image[:, ::8, ::8], raw, atol=1e-5)
    assert torch.equal(image[:, 3::8, 5::8], image[:, ::8, ::8])


def _rewrite(path: Path, drop: str | None = None, replace: dict[str, np.ndarray] | None = None) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != drop}
    arrays.update(replace or {})
    np.savez(path, **arrays)


def _error(tmp_path: Path, flag: str = "pneumoniamnist") -> str:
    with pytest.raises(MedvisionError) as err:
        MedMNISTDataModule(flag, root=str(tmp_path)).setup("fit")
    return str(err.value)


def test_wrong_keyed_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write_medmnist(tmp_path, "pneumoniamnist", n=4)
    _rewrite(path, drop="val_labels")
    message = _error(tmp_path)
    assert str(path) in message and "'val_labels'" in message


def test_wrong_dtype_and_shape_name_the_key(tmp_path: Path) -> None:
    path = write_medmnist(tmp_path, "pneumoniamnist", n=4)
    _rewrite(path, replace={"train_images": np.zeros((4, 28, 28), np.float32)})
    message = _error(tmp_path)
    assert str(path) in message and "'train_images'" in message and "uint8" in message
    write_medmnist(tmp_path, "pneumoniamnist", n=4)
    _rewrite(path, replace={"test_labels": np.zeros((4, 3), np.uint8)})
    message = _error(tmp_path)
    assert "'test_labels'" in message and "(4, 3)" in message


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = write_medmnist(tmp_path, "pneumoniamnist", n=4)
    path.write_bytes(path.read_bytes()[:200])  # a truncated download
    message = _error(tmp_path)
    assert str(path) in message and "not a readable .npz" in message


def test_corrupt_member_names_the_key(tmp_path: Path) -> None:
    path = write_medmnist(tmp_path, "pneumoniamnist", n=4)
    with zipfile.ZipFile(path, "w") as archive:  # a zip whose member is not a .npy array
        for key in ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels"):
            archive.writestr(f"{key}.npy", b"not an array")
    message = _error(tmp_path)
    assert str(path) in message and "'train_images'" in message


def test_missing_file_says_how_to_get_it(tmp_path: Path) -> None:
    message = _error(tmp_path, "dermamnist")
    assert str(tmp_path / "dermamnist.npz") in message
    assert "medvision-data fetch medmnist dermamnist" in message and "zenodo.org/records/10519652" in message


def test_fetch_offline_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    """The test machine has no route to Zenodo: the command must say so, and where to put the file."""
    # fast: the command gives up on its own (a hang would end in the subprocess timeout, a failure)
    result = run_cli(
        "medvision-data", ["fetch", "medmnist", "pathmnist", "--dest", str(tmp_path)], cwd=tmp_path, timeout=60
    )
    assert result.returncode == USER_ERROR_EXIT_CODE, result.stdout
    assert "Traceback" not in result.stdout
    assert "could not download" in result.stdout and str(tmp_path / "pathmnist.npz") in result.stdout
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".*.part")), "no partial file may be left"
