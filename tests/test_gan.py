"""The class-conditional GAN (``model=gan``) learns a two-class task, resumes, and is measured.

The data: a PneumoniaMNIST-format file written by the test (tests/medmnist_files.py; 256 images
per split, class 0 ("normal") a bright square on noise, class 1 ("pneumonia") a dark square),
resized to 16x16 by the data config's ``load.resize`` step so that the CPU runs stay short.
A ResNet-10 classifier is trained on the real images first (through ``run()``; 6 epochs, best
checkpoint by validation accuracy: selected by AUC, a 1.0 reached at epoch 1 kept an
uncalibrated first-epoch model with accuracy 0.5); the GAN then trains through ``run()`` with
that classifier's features measuring ``val/fd``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra.utils import get_class

from conftest import FinishedRun, train_in
from medmnist_files import write_medmnist
from medvision.metrics import generative
from medvision.models.gan import GANModule, noise_for_seeds
from medvision.models.loading import module_from_checkpoint
from medvision.utils.config import config_dir
from medvision.workflows import gan_quality

SIZE = 16
RESIZE = (
    "data.transforms.load.resize={_target_:monai.transforms.Resized,keys:[image],"
    f"spatial_size:[{SIZE},{SIZE}],mode:area}}"
)
QUIET = [
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.classification_plots=null",
    "callbacks.overlays=null",
]
CLASSIFIER = [
    "experiment=medmnist/resnet18_28",
    "data.flag=pneumoniamnist",
    "data.as_rgb=false",
    RESIZE,
    "data.cache=memory",
    "model.net.depth=10",
    "model.net.conv1_t_stride=2",
    "data.batch_size=32",
    "trainer.max_epochs=6",
    "monitor=val/acc",
    "monitor_mode=max",
    "seed=0",
    "callbacks.gradcam=null",
    *QUIET,
]
#: the GAN of the tests: tiny nets (8 generator maps at 16x16, 16 discriminator maps), 8 epochs of
#: 8 batches of 32 (64 D and 64 G steps), non-saturating loss, Adam lr 1e-3 for both (DCGAN's
#: 2e-4 needs more steps: 27% of class-0 samples recognised after these 64), EMA 0.999 with warm-up.
#: Class agreement seen with GAN seeds 0, 1, 2: 1.00, 0.99, 0.99 (200 samples each).
GAN_EPOCHS = 8
GAN = [
    "experiment=gan/medmnist28",
    RESIZE,
    f"model.image_size={SIZE}",
    "model.net.g_channels=8",
    "model.net.d_channels=16",
    "model.optimizer_g.lr=1e-3",
    "model.optimizer_d.lr=1e-3",
    "data.batch_size=32",
    f"trainer.max_epochs={GAN_EPOCHS}",
    "seed=0",
    *QUIET,
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gan_home")
    write_medmnist(root / "data" / "medmnist", "pneumoniamnist", n=256, seed=0)
    return root


@pytest.fixture(scope="module")
def classifier(home: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A classifier trained on the real images (the judge of the GAN's samples, and its feature space)."""
    return train_in(home, tmp_path_factory.mktemp("classifier"), CLASSIFIER)


@pytest.fixture(scope="module")
def gan(home: Path, classifier: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    return train_in(
        home, tmp_path_factory.mktemp("gan"), [*GAN, f"model.feature_ckpt={classifier.best_ckpt}", "logger=tensorboard"]
    )


def _samples(module: GANModule, n_per_class: int, first_seed: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(module.num_classes), n_per_class)
    noise = noise_for_seeds(range(first_seed, first_seed + len(labels)), module.latent_dim)
    return module.sample(torch.as_tensor(labels), noise).numpy(), labels


def test_samples_are_recognised_as_their_class(gan: FinishedRun, classifier: FinishedRun) -> None:
    """Must-hold 1: a classifier trained on real images assigns >= 80% of samples to their conditioned class."""
    assert classifier.metrics["test/acc"] >= 0.9, classifier.metrics  # the judge itself is good
    module = module_from_checkpoint(gan.best_ckpt)[0]
    images, labels = _samples(module, 100)
    assert images.shape == (200, 1, SIZE, SIZE)
    assert images.min() >= -1.0 and images.max() <= 1.0  # the data's -1..1 (MedMNIST load transforms)
    agreement = generative.class_agreement(
        module_from_checkpoint(classifier.best_ckpt)[0], images, labels, module.label_names
    )
    print("class agreement", agreement)
    assert agreement["agreement"] >= 0.8, agreement
    assert min(agreement["agreement/normal"], agreement["agreement/pneumonia"]) >= 0.6, agreement


def test_frechet_distance_falls_with_training(gan: FinishedRun, classifier: FinishedRun) -> None:
    """Must-hold 2: FD (classifier features) of the trained EMA generator < that of the generator at its start."""
    from hydra.utils import instantiate

    from medvision.utils.seeding import seed_everything

    trained = module_from_checkpoint(gan.best_ckpt)[0]
    seed_everything(gan.cfg.seed)  # run() seeds, then builds data and model: the same initial weights
    datamodule = instantiate(gan.cfg.data)
    start = instantiate(gan.cfg.model, **datamodule.model_kwargs())
    real, real_labels = gan_quality.real_arrays(datamodule, "val")
    feats_real = generative.features(module_from_checkpoint(classifier.best_ckpt)[0], real)
    fd = {}
    for name, module in (("start", start), ("end", trained)):
        fake, _ = _samples(module, 128)
        fd[name] = generative.frechet_distance(
            feats_real, generative.features(module_from_checkpoint(classifier.best_ckpt)[0], fake)
        )
    print("Fréchet distance (classifier features)", fd)
    assert fd["end"] < 0.5 * fd["start"], fd
    # the module logged the same kind of distance every epoch, and the best checkpoint is its minimum
    assert math.isfinite(gan.metrics["val/fd"]) and math.isfinite(gan.metrics["test/fd"]), gan.metrics
    assert len(real_labels) == 256


class OptimizerProbe(pl.Callback):
    """Records what a resumed fit starts from (optimiser states, epoch, global step, EMA updates) and ends at."""

    seen: ClassVar[dict[str, Any]] = {}

    def _record(self, when: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        OptimizerProbe.seen[when] = dict(
            optimizers=[copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers],
            epoch=trainer.current_epoch,
            global_step=trainer.global_step,
            ema_updates=int(pl_module.generator_ema.n_averaged),
        )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record("start", trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record("end", trainer, pl_module)


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _adam_steps(state: dict[str, Any]) -> list[float]:
    return [float(s["step"]) for s in state["state"].values()]


def test_training_resumes_from_last_ckpt(gan: FinishedRun, home: Path, tmp_path: Path, classifier: FinishedRun) -> None:
    """Must-hold 3: both optimisers' states come back from last.ckpt, and epoch and step counters go on.

    (Lightning 2.6 rewrites last.ckpt only when a top-k checkpoint is saved in the same step, so
    its epoch is the best one's, not necessarily the final one: the test reads it from the file.)
    """
    last = gan.output_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert len(saved["optimizer_states"]) == 2  # generator and discriminator
    batches = 8  # 256 training images in batches of 32
    epoch = saved["epoch"]
    # manual optimisation: global_step counts optimiser steps, one D and one G step per batch
    assert saved["global_step"] == (epoch + 1) * 2 * batches
    assert _adam_steps(saved["optimizer_states"][0])[0] == (epoch + 1) * batches

    train_in(
        home,
        tmp_path / "resumed",
        [
            *GAN,
            f"model.feature_ckpt={classifier.best_ckpt}",
            f"trainer.max_epochs={epoch + 2}",
            f"ckpt_path={last}",
            f"+callbacks.probe._target_={__name__}.OptimizerProbe",
        ],
    )
    start, end = OptimizerProbe.seen["start"], OptimizerProbe.seen["end"]
    assert _same_state(start["optimizers"], saved["optimizer_states"]), "optimiser states differ from last.ckpt"
    assert start["epoch"] == epoch + 1 and start["global_step"] == saved["global_step"]
    assert start["ema_updates"] == (epoch + 1) * batches  # the EMA generator came back too
    # one more epoch ran on top of the restored state
    assert end["global_step"] == saved["global_step"] + 2 * batches
    for before, after in zip(saved["optimizer_states"], end["optimizers"], strict=True):
        assert _adam_steps(after) == [s + batches for s in _adam_steps(before)]
    assert end["ema_updates"] == start["ema_updates"] + batches


def test_sample_grid_every_epoch(gan: FinishedRun) -> None:
    from PIL import Image

    pngs = sorted((gan.output_dir / "images").glob("samples_epoch*.png"))
    assert [p.name for p in pngs] == [f"samples_epoch{e:03d}.png" for e in range(GAN_EPOCHS)]
    picture = np.asarray(Image.open(pngs[-1]).convert("L")).astype(float)
    # 2 rows (classes) x 8 columns of 16x16 tiles with 2-pixel gaps, enlarged x2
    assert picture.shape == (2 * (2 * (SIZE + 2) + 2), 2 * (8 * (SIZE + 2) + 2)), picture.shape
    half = picture.shape[0] // 2
    rows = picture[:half], picture[half:]
    centre = [r[r.shape[0] // 2 - 4 : r.shape[0] // 2 + 4].mean() for r in rows]
    assert centre[0] > centre[1] + 40, centre  # row 0 ("normal"): bright squares; row 1: dark squares

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(gan.output_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "samples/00" in events.Tags()["images"], events.Tags()
    assert len(events.Images("samples/00")) == GAN_EPOCHS


def test_gan_quality_of_a_store(gan: FinishedRun, classifier: FinishedRun, tmp_path: Path) -> None:
    """gan_quality on a store of the trained GAN: FD, k-NN precision/recall, agreement, TSTR beside TRTR."""
    from hydra.utils import instantiate

    from medvision.augment.store import write_store

    module = module_from_checkpoint(gan.best_ckpt)[0]
    images, labels = _samples(module, 64)
    store = write_store(tmp_path / "store", images, labels, module.label_names, generator_checkpoint=gan.best_ckpt)
    datamodule = instantiate(gan.cfg.data)
    result = gan_quality.gan_quality(
        store,
        gan_quality.real_arrays(datamodule, "train"),
        classifier.best_ckpt,
        real_test=gan_quality.real_arrays(datamodule, "test"),
        tstr={"epochs": 2},
    )
    print(json.dumps(result, indent=1))
    for key in ("fd", "precision", "recall", "agreement", "fd/normal", "recall/pneumonia", "tstr/acc", "trtr/acc"):
        assert key in result and math.isfinite(result[key]), (key, result)
    assert 0.0 <= result["precision"] <= 1.0 and 0.0 <= result["recall"] <= 1.0
    assert result["n_synthetic"] == 128 and result["n_real"] == 256
    assert result["tstr/acc"] >= 0.8, result  # a classifier trained on samples alone recognises real images


# ----------------------------------------------------------------------------------- units
def test_frechet_distance_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert generative.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([1.0, 2.0, 0.0])  # same covariance: FD = |shift|^2 = 5
    assert generative.frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
    scaled = a * 2.0  # covariances S and 4S: Tr(S + 4S - 2 * 2S) = Tr(S); means m and 2m: |m|^2
    expected = np.trace(np.cov(a.T)) + np.sum(a.mean(axis=0) ** 2)
    assert generative.frechet_distance(a, scaled) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="need two sets of >= 2 feature vectors"):
        generative.frechet_distance(a[:1], a)


def test_knn_precision_recall_of_known_sets() -> None:
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(10, 0.1, (200, 2))])  # two modes
    same = generative.knn_precision_recall(real, real + 1e-9, k=3)
    assert same == {"precision": 1.0, "recall": 1.0}
    one_mode = rng.normal(0, 0.1, (300, 2))  # fakes cover only the first mode
    pr = generative.knn_precision_recall(real, one_mode, k=3)
    assert pr["precision"] > 0.9 and 0.4 < pr["recall"] < 0.6, pr
    far = generative.knn_precision_recall(real, rng.normal(50, 0.1, (100, 2)), k=3)
    assert far == {"precision": 0.0, "recall": 0.0}


# ----------------------------------------------------------------------------------- configs
GAN_EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment" / "gan").glob("*.yaml"))


@pytest.mark.parametrize("experiment", GAN_EXPERIMENTS)
def test_gan_experiment_runs_fast_dev_run(experiment: str, home: Path, tmp_path: Path) -> None:
    source = (config_dir() / "experiment" / "gan" / f"{experiment}.yaml").read_text()
    assert source.lstrip().startswith("# @package _global_")
    run = train_in(home, tmp_path / "run", [f"experiment=gan/{experiment}", "debug=fast_dev_run", *QUIET])
    assert get_class(run.cfg.model._target_) is GANModule and run.cfg.monitor == "val/fd"
    assert math.isfinite(run.metrics["train/d_loss"]) and math.isfinite(run.metrics["test/fd"]), run.metrics


@pytest.mark.parametrize(("loss", "precision"), [("hinge", "32-true"), ("wgan_gp", "bf16-mixed")])
def test_losses_and_bf16_mixed_precision(loss: str, precision: str, home: Path, tmp_path: Path) -> None:
    run = train_in(
        home, tmp_path / "run", [*GAN, "debug=fast_dev_run", f"model.loss={loss}", f"trainer.precision={precision}"]
    )
    assert all(math.isfinite(run.metrics[k]) for k in ("train/d_loss", "train/g_loss", "test/fd")), run.metrics
    if loss == "wgan_gp":
        assert run.metrics["train/gp"] >= 0.0


def test_3d_gan_fast_dev_run(tmp_path: Path) -> None:
    """Two tiny 3D volumes (OrganMNIST3D format, 28^3; generated at 32^3 and cropped)."""
    home = tmp_path / "home"
    write_medmnist(home / "data" / "medmnist", "organmnist3d", size=28, n=2, seed=0)
    run = train_in(
        home,
        tmp_path / "run",
        [
            "experiment=gan/medmnist28",
            "data.flag=organmnist3d",
            "data.spatial_dims=3",
            "data.batch_size=2",
            "model.net.g_channels=4",
            "model.net.d_channels=4",
            "model.net.latent_dim=16",
            "debug=fast_dev_run",
            *QUIET,
        ],
    )
    assert math.isfinite(run.metrics["train/g_loss"]), run.metrics
    grid = sorted((run.output_dir / "images").glob("samples_epoch*.png"))
    assert len(grid) == 1  # 3D samples drawn as their middle slice


def test_bad_settings_are_user_errors(home: Path, tmp_path: Path) -> None:
    from medvision.utils.errors import MedvisionError

    with pytest.raises(MedvisionError, match=r"model\.image_size"):  # the data are 16x16 after resize
        train_in(home, tmp_path / "size", [*GAN, "debug=fast_dev_run", "model.image_size=28"])
    with pytest.raises(MedvisionError, match="output_range"):  # the data span -1..1
        train_in(home, tmp_path / "range", [*GAN, "debug=fast_dev_run", "model.output_range=[0.0,1.0]"])
    with pytest.raises(MedvisionError, match=r"model.loss='lsgan': expected one of 'non_saturating', 'hinge'"):
        train_in(home, tmp_path / "loss", [*GAN, "debug=fast_dev_run", "model.loss=lsgan"])  # config validation
    with pytest.raises(MedvisionError, match=r"model\.n_critic=0 must be >= 1"):
        train_in(home, tmp_path / "critic", [*GAN, "debug=fast_dev_run", "model.n_critic=0"])


def test_generate_refuses_a_classifier_checkpoint(classifier: FinishedRun, tmp_path: Path) -> None:
    from conftest import compose_in
    from medvision.inference.generate import generate
    from medvision.utils.errors import MedvisionError

    cfg = compose_in(tmp_path, tmp_path / "gen", [f"ckpt_path={classifier.best_ckpt}"], config_name="generate")
    with pytest.raises(MedvisionError, match="holds a ClassifierModule, not a GAN"):
        generate(cfg)
