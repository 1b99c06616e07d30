"""Every experiment and every network of the config tree runs end to end (``fast_dev_run``).

The parameters are globbed from the config tree at collection time, so a new
``conf/experiment/*.yaml`` or ``conf/model/net/*.yaml`` is tested without editing this file.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from medvision.train import run
from medvision.utils.config import config_dir

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
NETS = sorted(p.stem for p in (config_dir() / "model" / "net").glob("*.yaml"))

#: small 3D synthetic data for the network matrix: 6 cases of 32^3 (1 test, 1 val, 4 train)
SMALL_3D = ["experiment=synthetic_seg3d", "data.source.num_cases=6", "data.source.size=32", "data.patch_size=[32,32,32]"]


def _assert_test_dice(metrics: dict[str, float], label_names: list[str]) -> None:
    assert "test/dice_mean" in metrics, sorted(metrics)
    dice = metrics["test/dice_mean"]
    assert math.isfinite(dice) and 0.0 <= dice <= 1.0, dice
    # per-class Dice is named by the data's labels (background excluded)
    for name in label_names[1:]:
        assert f"test/dice_{name}" in metrics, sorted(metrics)
    assert "train/loss_epoch" in metrics or "train/loss" in metrics, sorted(metrics)


def test_config_tree_has_experiments_and_nets() -> None:
    assert {"mni152_tissue", "synthetic_seg2d", "synthetic_seg3d"} <= set(EXPERIMENTS)
    assert {"unet", "segresnet", "dynunet", "attention_unet", "unetr"} <= set(NETS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_fast_dev_run(experiment: str, compose_run) -> None:
    source = (config_dir() / "experiment" / f"{experiment}.yaml").read_text()
    assert source.lstrip().startswith("# @package _global_"), f"{experiment}.yaml must start with '# @package _global_'"
    cfg = compose_run([f"experiment={experiment}", "debug=fast_dev_run"])
    assert cfg.trainer.fast_dev_run is True
    metrics = run(cfg)
    if cfg.model._target_.endswith("ClassifierModule"):  # classification experiments (e.g. dicom_modality)
        for key in ("test/acc", "test/auc"):
            assert key in metrics and 0.0 <= metrics[key] <= 1.0, sorted(metrics)
        assert any(k.startswith("test/auc_") for k in metrics), sorted(metrics)
    else:
        _assert_test_dice(metrics, instantiate(cfg.data).label_names)
    assert (Path(cfg.paths.output_dir) / "metrics.json").is_file()


@pytest.mark.parametrize("net", NETS)
def test_every_net_trains_in_3d(net: str, compose_run) -> None:
    cfg = compose_run([*SMALL_3D, f"model/net={net}", "debug=fast_dev_run"])
    expected = OmegaConf.load(config_dir() / "model" / "net" / f"{net}.yaml")._target_
    assert cfg.model.net._target_ == expected, "the model/net choice did not reach the composed config"
    assert cfg.data.spatial_dims == 3
    metrics = run(cfg)
    _assert_test_dice(metrics, ["background", "sphere_1", "sphere_2"])
