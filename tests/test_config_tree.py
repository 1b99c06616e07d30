"""The shape of the config tree: what a choice brings with it, old names, ``_target_`` spelling.

- The demo's schedule comes with data=mni152_tissue only (``experiment/default/<data>.yaml``,
  chosen through ``train.yaml``'s ``optional experiment: default/${data}``); other data get
  ``trainer/default.yaml`` and the default callbacks.
- Every run validates in its last epoch (:class:`medvision.callbacks.last_epoch.ValidateLastEpoch`),
  so a short run with a long validation interval still tests a best checkpoint.
- The model configs are all in package ``model``; each sets its ``monitor`` through
  ``model/global/<model>.yaml``.
- The gan_augment workflows live in ``workflow/gan_augment/``; the old names
  ``experiment=gan_augment/<name>`` compose the same.
- Every ``medvision.*`` ``_target_`` imports and is spelled with its defining module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf

from medvision.callbacks.last_epoch import ValidateLastEpoch
from medvision.train import run
from medvision.utils.config import config_dir

CONF = config_dir()
TRAINER_DEFAULTS = OmegaConf.load(CONF / "trainer" / "default.yaml")
#: the volume data configs that share data/_volume_base.yaml
VOLUME_DATA = ["mni152_tissue", "msd", "csv", "synthetic_seg2d", "synthetic_seg3d"]
#: the old gan_augment names (shims in experiment/gan_augment/ that include workflow/gan_augment/<name>)
OLD_GAN_AUGMENT = sorted(p.stem for p in (CONF / "experiment" / "gan_augment").glob("*.yaml"))
#: small 3D synthetic data: 6 cases of 32^3 (1 test, 1 val, 4 train)
SMALL_3D = [
    "experiment=synthetic_seg3d",
    "data.source.num_cases=6",
    "data.source.size=32",
    "data.patch_size=[32,32,32]",
]


def _resolved(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)


# ----------------------------------------------------------------------------- default experiment
def test_bare_run_is_the_demo(compose_run) -> None:
    bare = compose_run([])
    assert bare.trainer.max_epochs == 60 and bare.trainer.check_val_every_n_epoch == 10
    assert "intensity_baseline" in bare.callbacks and list(bare.tags) == ["mni152", "tissue", "unet"]
    # `make train` and the experiment's name compose the same run
    assert _resolved(bare) == _resolved(compose_run(["experiment=mni152_tissue"]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=msd", "data.root={tmp}"],
        ["data=csv", "data.manifest={tmp}/cases.csv"],
        ["data=synthetic_seg3d"],
        ["data=synthetic_seg2d"],
        ["data=medmnist", "model=classifier"],
        ["data=dicom_modality", "model=classifier"],
        ["~experiment"],
    ],
)
def test_other_data_get_generic_training_defaults(overrides: list[str], compose_run, tmp_path: Path) -> None:
    cfg = compose_run([o.format(tmp=tmp_path) for o in overrides])
    assert cfg.trainer.max_epochs == TRAINER_DEFAULTS.max_epochs == 100
    assert cfg.trainer.check_val_every_n_epoch == TRAINER_DEFAULTS.check_val_every_n_epoch == 1
    assert "intensity_baseline" not in cfg.callbacks
    assert list(cfg.tags) == ["dev"]


def test_default_experiments_are_named_after_data_configs() -> None:
    # a misspelt file would silently never be chosen (the default is `optional`)
    defaults = sorted((CONF / "experiment" / "default").glob("*.yaml"))
    assert [p.stem for p in defaults] == ["mni152_tissue"]
    for path in defaults:
        assert (CONF / "data" / path.name).is_file(), f"{path} names no data config"


# ----------------------------------------------------------------------------- last epoch validates
def test_short_run_with_long_validation_interval_tests_a_best_checkpoint(compose_run) -> None:
    cfg = compose_run([*SMALL_3D, "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=10"])
    metrics = run(cfg)
    assert any(k.startswith("val/") for k in metrics), sorted(metrics)
    assert "test/dice_mean" in metrics, sorted(metrics)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt").is_file()


def test_run_stopped_by_max_time_tests_a_best_checkpoint(compose_run) -> None:
    # a second of training ends within the first epochs; max_epochs only bounds a broken timer
    cfg = compose_run(
        [*SMALL_3D, "trainer.max_epochs=20", "trainer.check_val_every_n_epoch=10", "+trainer.max_time=00:00:00:01"]
    )
    metrics = run(cfg)
    assert any(k.startswith("val/") for k in metrics), sorted(metrics)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt").is_file()


class _Tiny(pl.LightningModule):
    """A linear model that records the epochs it validated; it may ask to stop at one epoch."""

    def __init__(self, stop_at_epoch: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.stop_at_epoch = stop_at_epoch
        self.validated: list[int] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.stop_at_epoch and batch_idx == 0:
            self.trainer.should_stop = True  # e.g. a divergence guard, mid-epoch
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.layer(batch[0]).pow(2).mean())

    def on_validation_epoch_end(self) -> None:
        self.validated.append(self.current_epoch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)

    val_dataloader = train_dataloader


@pytest.mark.parametrize(
    ("max_epochs", "stop_at_epoch", "validated"), [(15, None, [9, 14]), (10, None, [9]), (3, None, [2]), (15, 3, [3])]
)
def test_the_epoch_where_training_stops_validates(
    max_epochs: int, stop_at_epoch: int | None, validated: list[int], tmp_path: Path
) -> None:
    model = _Tiny(stop_at_epoch)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        check_val_every_n_epoch=10,
        callbacks=[ValidateLastEpoch()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model)
    assert model.validated == validated
    assert trainer.check_val_every_n_epoch == 10  # the configured interval is back


# ----------------------------------------------------------------------------- model group
@pytest.mark.parametrize(
    ("model", "monitor", "mode"),
    [("segmenter", "val/dice_mean", "max"), ("classifier", "val/auc", "max"), ("gan", "val/fd", "min")],
)
def test_each_model_sets_its_monitor(model: str, monitor: str, mode: str, compose_run) -> None:
    source = (CONF / "model" / f"{model}.yaml").read_text()
    assert "@package" not in source, "model configs are in package `model`; global keys go in model/global/"
    cfg = compose_run([f"model={model}", "data=dicom_modality"])
    assert (cfg.monitor, cfg.monitor_mode, cfg.optimized_metric) == (monitor, mode, monitor)
    assert cfg.callbacks.model_checkpoint.monitor == monitor and cfg.callbacks.model_checkpoint.mode == mode
    assert ("sample_grid" in cfg.callbacks) == (model == "gan")


# ----------------------------------------------------------------------------- shared data keys
@pytest.mark.parametrize("name", VOLUME_DATA)
def test_volume_data_configs_say_only_what_differs(name: str) -> None:
    base = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "_volume_base.yaml"))
    own = OmegaConf.to_container(OmegaConf.load(CONF / "data" / f"{name}.yaml"))
    assert "_volume_base" in own["defaults"]
    repeated = [k for k in own if k != "defaults" and k in base and own[k] == base[k]]
    assert not repeated, f"data/{name}.yaml repeats data/_volume_base.yaml: {repeated}"


@pytest.mark.parametrize(("name", "missing", "unset"), [("msd", "root", "manifest"), ("csv", "manifest", "root")])
def test_own_data_must_name_where_the_cases_are(name: str, missing: str, unset: str, compose_run) -> None:
    # a `???` of the data config must survive the base's values (OmegaConf's merge keeps a value over `???`)
    cfg = compose_run([f"data={name}"])
    assert OmegaConf.is_missing(cfg.data, missing) and cfg.data[unset] is None


# ----------------------------------------------------------------------------- old names
def test_old_gan_augment_names_exist() -> None:
    assert OLD_GAN_AUGMENT == ["dicom_modality", "medmnist_debug", "pneumoniamnist"]


@pytest.mark.parametrize("name", OLD_GAN_AUGMENT)
def test_old_gan_augment_name_composes_as_the_new_one(name: str, compose_run) -> None:
    new = compose_run([f"workflow=gan_augment/{name}"], config_name="gan_augment")
    old = compose_run([f"experiment=gan_augment/{name}"], config_name="gan_augment")
    assert new.data.imbalance is not None and new.seeds, "the workflow's settings did not reach the config"
    assert _resolved(old) == _resolved(new)


# ----------------------------------------------------------------------------- _target_ spelling
def _targets(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield value
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


MEDVISION_TARGETS = sorted(
    {
        t
        for p in CONF.rglob("*.yaml")
        for t in _targets(OmegaConf.to_container(OmegaConf.load(p)))
        if t.startswith("medvision.")
    }
)


def test_the_tree_has_medvision_targets() -> None:
    assert "medvision.models.segmenter.SegmenterModule" in MEDVISION_TARGETS
    assert "medvision.data.datamodule.VolumeDataModule" in MEDVISION_TARGETS


@pytest.mark.parametrize("target", MEDVISION_TARGETS)
def test_target_imports_from_its_defining_module(target: str) -> None:
    module_name, _, name = target.rpartition(".")
    obj = getattr(importlib.import_module(module_name), name)
    # one spelling: the module that defines the object, not a package re-export
    assert obj.__module__ == module_name, f"{target}: spell it {obj.__module__}.{name}"


def test_a_checkpoint_with_the_old_target_spelling_still_fits() -> None:
    """Checkpoints written before the one-spelling change store the package re-exports
    (``medvision.models.SegmenterModule``); they name the same class and are accepted."""
    from medvision.models.loading import check_checkpoint_task
    from medvision.utils.errors import MedvisionError

    new = {
        "model": {
            "_target_": "medvision.models.segmenter.SegmenterModule",
            "net": {"_target_": "monai.networks.nets.UNet"},
        }
    }
    old = {
        "medvision_config": {
            "model": {"_target_": "medvision.models.SegmenterModule", "net": {"_target_": "monai.networks.nets.UNet"}}
        }
    }
    check_checkpoint_task(old, "old.ckpt", new)
    other = {"medvision_config": {"model": {"_target_": "medvision.models.ClassifierModule"}}}
    with pytest.raises(MedvisionError, match="model=classifier"):
        check_checkpoint_task(other, "cls.ckpt", new)
