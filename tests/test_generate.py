"""``medvision-generate``: a GAN checkpoint -> a synthetic sample store (read back with ``read_store``).

A tiny GAN trains for one short epoch through ``run()`` on a PneumoniaMNIST-format file written
here (sample quality is not the point: ``tests/test_gan.py`` measures it).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FinishedRun, compose_in, run_cli, train_in
from medmnist_files import write_medmnist
from medvision.augment.store import read_store
from medvision.inference.generate import generate
from medvision.models.gan import noise_for_seeds
from medvision.models.loading import module_from_checkpoint
from medvision.utils.errors import MedvisionError

TINY_GAN = [
    "experiment=gan/medmnist28",
    "model.net.g_channels=4",
    "model.net.d_channels=8",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.classification_plots=null",
    "callbacks.overlays=null",
]


@pytest.fixture(scope="module")
def gan(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    home = tmp_path_factory.mktemp("generate_home")
    write_medmnist(home / "data" / "medmnist", "pneumoniamnist", n=32, seed=0)
    return train_in(home, home / "gan_run", TINY_GAN)


def _compose(gan: FinishedRun, tmp_path: Path, overrides: list[str]):
    return compose_in(
        tmp_path, tmp_path / "generate_run", [f"ckpt_path={gan.best_ckpt}", *overrides], config_name="generate"
    )


def test_generate_writes_a_store_with_classes_seeds_and_checkpoint(gan: FinishedRun, tmp_path: Path) -> None:
    path = generate(_compose(gan, tmp_path, ["n_per_class=5", "classes=[pneumonia]", "seed=3", "batch_size=2"]))
    # default folder: the checkpoint's run dir, synthetic/<date>_<time>
    assert path.parent == gan.output_dir / "synthetic", path
    store = read_store(path)
    assert store.class_names == ["normal", "pneumonia"]
    assert store.images.shape == (5, 1, 28, 28) and store.images.dtype == np.float32
    assert store.labels.tolist() == [1] * 5
    manifest = store.manifest
    assert manifest["counts"] == {"normal": 0, "pneumonia": 5}
    assert [s["seed"] for s in manifest["samples"]] == [3, 4, 5, 6, 7]
    assert [s["label"] for s in manifest["samples"]] == [1] * 5
    assert manifest["generator_checkpoint"] == str(gan.best_ckpt.resolve())
    assert manifest["generator"] == "ema" and manifest["n_per_class"] == 5
    assert store.images.min() >= -1.0 and store.images.max() <= 1.0
    assert len({img.tobytes() for img in store.images}) == 5  # five different samples

    # any sample is made again from its recorded seed alone (batch size 2 above, 1 here)
    module = module_from_checkpoint(manifest["generator_checkpoint"])[0]
    k = 3
    again = module.sample(
        torch.tensor([store.labels[k]]), noise_for_seeds([manifest["samples"][k]["seed"]], module.latent_dim)
    )
    np.testing.assert_allclose(again.numpy()[0], store.images[k], atol=1e-6)


def test_generate_all_classes_into_a_chosen_folder_never_over_a_store(gan: FinishedRun, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    generate(_compose(gan, tmp_path, ["n_per_class=3", f"output_dir={out}", "ema=false"]))
    store = read_store(out)
    assert store.labels.tolist() == [0, 0, 0, 1, 1, 1] and store.manifest["generator"] == "raw"
    before = (out / "samples.npz").read_bytes()
    with pytest.raises(MedvisionError, match="already holds a synthetic store"):
        generate(_compose(gan, tmp_path, ["n_per_class=3", f"output_dir={out}"]))
    assert (out / "samples.npz").read_bytes() == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["classes=[flu]"], "not a class of this GAN"),
        (["n_per_class=0"], "n_per_class=0"),
    ],
)
def test_bad_requests_are_user_errors(gan: FinishedRun, tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(MedvisionError, match=message):
        generate(_compose(gan, tmp_path, overrides))


def test_missing_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    cfg = compose_in(tmp_path, tmp_path / "generate_run", [], config_name="generate")
    with pytest.raises(MedvisionError, match="needs a GAN checkpoint"):
        generate(cfg)
    cfg = compose_in(
        tmp_path, tmp_path / "generate_run", [f"ckpt_path={tmp_path / 'nope.ckpt'}"], config_name="generate"
    )
    with pytest.raises(MedvisionError, match="checkpoint not found"):
        generate(cfg)


@pytest.mark.slow  # three processes of the console script
def test_console_script(gan: FinishedRun, tmp_path: Path) -> None:
    start = time.perf_counter()
    helped = run_cli("medvision-generate", ["--help"], cwd=tmp_path, timeout=120)
    assert helped.returncode == 0 and "n_per_class" in helped.stdout, helped.stdout[-2000:]
    print(f"medvision-generate --help: {time.perf_counter() - start:.1f} s")

    out = tmp_path / "cli_store"
    proc = run_cli(
        "medvision-generate",
        [f"ckpt_path={gan.best_ckpt}", "n_per_class=4", "classes=[0]", f"output_dir={out}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert read_store(out).manifest["counts"] == {"normal": 4, "pneumonia": 0}

    missing = run_cli("medvision-generate", [f"ckpt_path={tmp_path / 'nope.ckpt'}"], cwd=tmp_path)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stdout, missing.stdout[-2000:]
    assert "Traceback" not in missing.stdout
