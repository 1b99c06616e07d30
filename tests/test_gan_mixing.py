"""Synthetic samples enter the training split only, in the configured ratio; the imbalanced task.

The DataModules are built from the real config tree (``data=medmnist`` + ``data.synthetic`` /
``data.imbalance`` overrides, instantiated by Hydra) on a tiny BreastMNIST file in the official
format and a store written by :func:`medvision.augment.store.write_store`, the store writer
``medvision-generate`` uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from medmnist_files import write_medmnist
from medvision.augment.store import write_store
from medvision.utils.errors import MedvisionError

FLAG = "breastmnist"  # binary: 0 = malignant, 1 = normal, benign
NAMES = ["malignant", "normal, benign"]
N = 40  # images per split of the tiny file (20 per class)


def _store(path: Path, per_class: int = 30, shape: tuple[int, ...] = (1, 28, 28), names: list[str] = NAMES) -> Path:
    """A store whose every image is one constant value no real image has (pixel content identifies it)."""
    labels = np.repeat(np.arange(len(names)), per_class)
    values = 5.0 + np.arange(len(labels), dtype=np.float32) / 1000.0  # real images are in -1..1 after load
    images = np.broadcast_to(values.reshape(-1, *([1] * len(shape))), (len(labels), *shape)).copy()
    return write_store(path, images, labels, names, seeds=list(range(len(labels))))


def _datamodule(compose_run: Any, tmp_path: Path, *overrides: str) -> Any:
    cfg = compose_run(
        [
            f"paths.root_dir={tmp_path}",
            "data=medmnist",
            f"data.flag={FLAG}",
            "data.batch_size=8",
            "model=classifier",
            *overrides,
        ]
    )
    if not (Path(cfg.data.root) / f"{FLAG}.npz").is_file():
        write_medmnist(Path(cfg.data.root), FLAG, 28, n=N)
    return instantiate(cfg.data)


def _split(dm: Any, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """ids, images (N, C, H, W) and labels (N,) of a built split, read through its DataLoader."""
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    ids, images, labels = [], [], []
    for batch in loader:
        ids += list(batch["id"])
        images.append(torch.as_tensor(batch["image"]).numpy())
        labels.append(torch.as_tensor(batch["label"]).numpy().reshape(-1))
    return ids, np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_synthetic_samples_enter_training_only_in_the_configured_ratio(compose_run, tmp_path: Path, cache: str) -> None:
    store = _store(tmp_path / "store")
    dm = _datamodule(
        compose_run,
        tmp_path,
        f"data.cache={cache}",
        "data.imbalance={class: 0, keep: 0.25, seed: 3}",
        f"data.synthetic={{store: '{store}', ratio: 1.5, classes: [malignant]}}",
    )
    dm.setup()  # every split
    real_train = dm.arrays["train"][1].reshape(-1)
    n_malignant = int((real_train == 0).sum())
    kept = round(0.25 * n_malignant)  # 5 of 20
    wanted = round(1.5 * kept)  # 8 (ratio = synthetic / real training samples of the class)

    ids, images, labels = _split(dm, "train")
    synthetic = [i for i, name in enumerate(ids) if name.startswith("synthetic/")]
    real = [i for i, name in enumerate(ids) if not name.startswith("synthetic/")]
    assert len(ids) == len(set(ids)) == len(real_train) - n_malignant + kept + wanted
    assert len(synthetic) == wanted and set(labels[synthetic]) == {0}
    assert int((labels[real] == 0).sum()) == kept and int((labels[real] == 1).sum()) == int((real_train == 1).sum())
    # the synthetic samples are the store's first `wanted` malignant ones, pixel for pixel
    store_values = 5.0 + np.arange(wanted, dtype=np.float32) / 1000.0
    got = {ids[i]: float(images[i].mean()) for i in synthetic}
    assert got == {f"synthetic/{k}": pytest.approx(float(store_values[k])) for k in range(wanted)}
    assert all(np.ptp(images[i]) == 0 for i in synthetic)
    assert np.abs(images[real]).max() <= 1.0  # real images after load (-1..1)

    for split in ("val", "test"):  # untouched: all real, all there, no synthetic id or pixel content
        split_ids, split_images, split_labels = _split(dm, split)
        assert not [i for i in split_ids if "synthetic" in i]
        assert len(split_ids) == N and sorted(split_ids) == sorted(f"{split}/{i}" for i in range(N))
        assert np.abs(split_images).max() <= 1.0, "a synthetic image (value >= 5) reached " + split
        assert (split_labels == dm.arrays[split][1].reshape(-1)[[int(i.split("/")[1]) for i in split_ids]]).all()

    counts = dm.training_split().counts()
    assert counts["real"] == {"malignant": kept, "normal, benign": int((real_train == 1).sum())}
    assert counts["synthetic"] == {"malignant": wanted, "normal, benign": 0}
    assert dm.training_split().hyperparameters()["data/train_synthetic_malignant"] == wanted
    # the labels a class-balanced sampler weighs are those of the dataset, in its order
    dataset = dm.datasets["train"]
    assert list(dm.train_labels()) == [int(np.asarray(dataset[i]["label"]).reshape(-1)[0]) for i in range(len(dataset))]


def test_counts_are_printed_logged_and_written(compose_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    store = _store(tmp_path / "store")
    dm = _datamodule(compose_run, tmp_path, f"data.synthetic={{store: '{store}', ratio: 0.5}}")
    trainer = pl.Trainer(
        logger=CSVLogger(tmp_path / "logs", name="csv", version=""),
        max_epochs=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    dm.trainer = trainer
    dm.setup("fit")
    report = json.loads(Path(dm.counts_report).read_text())
    assert report["train"]["synthetic"] == {"malignant": 10, "normal, benign": 10}  # 0.5 x 20 per class
    assert report["synthetic"]["ratio"] == 0.5 and len(report["synthetic"]["ids"]) == 20
    assert report["imbalance"] is None
    import yaml

    trainer.logger.save()
    hparams = yaml.safe_load((Path(trainer.logger.log_dir) / "hparams.yaml").read_text())
    assert hparams["data/train_real_normal_benign"] == 20 and hparams["data/train_synthetic_malignant"] == 10
    out = capsys.readouterr().out
    assert "synthetic" in out and "normal, benign" in out


def test_imbalance_is_deterministic_and_leaves_val_and_test_alone(compose_run, tmp_path: Path) -> None:
    def train_ids(seed: int) -> tuple[list[str], np.ndarray]:
        dm = _datamodule(compose_run, tmp_path, f"data.imbalance={{class: 'normal, benign', keep: 0.3, seed: {seed}}}")
        dm.setup()
        assert len(dm.datasets["val"]) == len(dm.datasets["test"]) == N
        return sorted(s["id"] for s in dm.datasets["train"]), dm.arrays["train"][1].reshape(-1)

    (first, labels), (again, _), (other, _) = train_ids(0), train_ids(0), train_ids(1)
    assert first == again and first != other
    assert len(first) == 20 + 6  # all 20 malignant, round(0.3 x 20) normal
    assert sum(labels[int(i.split("/")[1])] == 1 for i in first) == 6


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["data.synthetic={store: STORE_NAMES, ratio: 1.0}"],
            ["data.synthetic.store=", "holds classes ['a', 'b']", "malignant"],
        ),
        (["data.synthetic={store: STORE_SHAPE, ratio: 1.0}"], ["data.synthetic.store=", "[1, 32, 32]", "[1, 28, 28]"]),
        (
            ["data.synthetic={store: STORE_SMALL, ratio: 1.0}"],
            ["holds 3 samples of class 'malignant'", "needs 20", "n_per_class=20"],
        ),
        (
            ["data.synthetic={store: /no/such/store, ratio: 1.0}"],
            ["data.synthetic.store", "/no/such/store", "not a synthetic"],
        ),
        (["data.synthetic={store: STORE_NAMES, ratio: -1}"], ["data.synthetic.ratio=-1"]),
        (["data.imbalance={class: 7, keep: 0.1}"], ["data.imbalance.class=7", "0='malignant'"]),
        (["data.imbalance={class: 0, keep: 1.5}"], ["data.imbalance.keep=1.5", "(0, 1]"]),
        (["data.imbalance={klass: 0, keep: 0.5}"], ["data.imbalance has keys ['keep', 'klass']"]),
        (
            ["data.flag=chestmnist", "data.imbalance={class: 0, keep: 0.5}"],
            ["data.imbalance needs a single-label task"],
        ),
    ],
)
def test_store_and_option_mismatches_name_the_key_and_the_fix(
    compose_run, tmp_path: Path, overrides: list[str], expected: list[str]
) -> None:
    stores = {
        "STORE_NAMES": _store(tmp_path / "names", names=["a", "b"]),
        "STORE_SHAPE": _store(tmp_path / "shape", shape=(1, 32, 32)),
        "STORE_SMALL": _store(tmp_path / "small", per_class=3),
    }
    for name, path in stores.items():
        overrides = [o.replace(name, f"'{path}'") for o in overrides]
    if any("chestmnist" in o for o in overrides):
        write_medmnist(tmp_path / "data" / "medmnist", "chestmnist", 28, n=8)
    with pytest.raises(MedvisionError) as err:
        _datamodule(compose_run, tmp_path, *overrides).setup("fit")
    for text in expected:
        assert text in str(err.value), str(err.value)
    assert err.value.fix


def test_grey_store_is_repeated_for_an_rgb_classifier(compose_run, tmp_path: Path) -> None:
    dm = _datamodule(
        compose_run,
        tmp_path,
        "data.as_rgb=true",
        f"data.synthetic={{store: '{_store(tmp_path / 'store')}', ratio: 0.25, classes: [1]}}",
    )
    dm.setup("fit")
    ids, images, labels = _split(dm, "train")
    assert images.shape[1:] == (3, 28, 28)
    synthetic = [i for i, name in enumerate(ids) if name.startswith("synthetic/")]
    assert len(synthetic) == 5 and set(labels[synthetic]) == {1}
    assert all(ids[i] in {f"synthetic/{k}" for k in range(30, 35)} for i in synthetic)  # class 1 starts at 30


def test_per_class_recall_is_logged_and_equals_sklearn() -> None:
    from sklearn.metrics import recall_score

    from medvision.metrics.classification import ClassificationMetrics

    gen = torch.Generator().manual_seed(0)
    for task, n in (("binary", 2), ("multiclass", 4)):
        target = torch.randint(0, n, (200,), generator=gen)
        logits = 1.5 * torch.nn.functional.one_hot(target, n).float() + torch.randn(200, n, generator=gen)
        metrics = ClassificationMetrics(task, [f"class {i}" for i in range(n)])
        for start in range(0, 200, 64):
            metrics.update(logits[start : start + 64], target[start : start + 64])
        values = metrics.compute("test")
        expected = recall_score(target.numpy(), logits.argmax(1).numpy(), average=None)
        for c in range(n):
            assert values[f"test/recall_class_{c}"] == pytest.approx(expected[c], abs=1e-6)
        assert values["test/balanced_acc"] == pytest.approx(expected.mean(), abs=1e-6)
        assert len(set(np.round(expected, 6))) > 1  # the classes differ: a mix-up would show
