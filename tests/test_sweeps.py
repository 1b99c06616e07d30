"""Sweeps: a real 3-trial Optuna search through ``medvision-train -m hparams_search=...``, and the
composed Optuna / joblib / SLURM (submitit) settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import TINY_2D, run_cli

SEARCHED = ("model.optimizer.lr", "model.loss._target_", "data.patch_size")


def _hydra(compose_run, overrides: list[str]):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_run(overrides)
    return cfg, HydraConfig.get()


@pytest.mark.slow
def test_three_trial_optuna_sweep_writes_its_best_parameters(tmp_path: Path) -> None:
    # the config's search space (lr, loss, patch size) with smaller patches from the command line
    args = [
        "-m",
        "hparams_search=seg2d_optuna",
        *[a for a in TINY_2D if not a.startswith("data.patch_size")],
        "data.patch_size=choice([32,32],[48,48])",
        "debug=limit",
        "trainer.max_epochs=1",
        "hydra.sweeper.n_trials=3",
        "print_config=false",
    ]
    proc = run_cli("medvision-train", args, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == set(SEARCHED), results

    trials = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert [p.name for p in trials] == ["0", "1", "2"]
    objective = {p.name: json.loads((p / "metrics.json").read_text())["val/dice_mean"] for p in trials}
    # val/dice_mean is maximised (monitor_mode=max): the best value is the best trial's metric
    best = max(objective, key=objective.get)
    assert results["best_value"] == pytest.approx(objective[best], rel=1e-9)
    # ... and the best parameters are that trial's overrides
    overrides = dict(o.split("=", 1) for o in yaml.safe_load((sweep / best / ".hydra" / "overrides.yaml").read_text()))
    assert overrides["model.loss._target_"] == results["best_params"]["model.loss._target_"]
    assert float(overrides["model.optimizer.lr"]) == pytest.approx(results["best_params"]["model.optimizer.lr"])
    assert overrides["data.patch_size"] == results["best_params"]["data.patch_size"]  # a choice: '[32,32]'
    config = yaml.safe_load((sweep / best / "config_resolved.yaml").read_text())
    assert config["data"]["patch_size"] == yaml.safe_load(results["best_params"]["data.patch_size"])
    assert config["model"]["loss"]["_target_"] == results["best_params"]["model.loss._target_"]
    assert 1e-4 <= config["model"]["optimizer"]["lr"] <= 1e-2


def test_optuna_direction_follows_monitor_mode(compose_run) -> None:
    cfg, hydra = _hydra(compose_run, ["hparams_search=seg_optuna"])
    assert hydra.sweeper._target_.endswith("OptunaSweeper") and hydra.mode.name == "MULTIRUN"
    assert hydra.sweeper.direction == "maximize" and cfg.optimized_metric == cfg.monitor == "val/dice_mean"
    assert set(hydra.sweeper.params) == set(SEARCHED)
    _, hydra = _hydra(compose_run, ["hparams_search=seg_optuna", "monitor=val/loss", "monitor_mode=min"])
    assert hydra.sweeper.direction == "minimize"


def test_joblib_and_slurm_launchers_compose_with_their_fields(compose_run) -> None:
    _, hydra = _hydra(compose_run, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert hydra.launcher._target_.endswith("JoblibLauncher") and hydra.launcher.n_jobs == 2

    _, hydra = _hydra(
        compose_run,
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.account=lab",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.tasks_per_node=4",
            "trainer=ddp",
            "trainer.devices=4",
        ],
    )
    launcher = hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.account, launcher.gpus_per_node, launcher.tasks_per_node) == (
        "gpu",
        "lab",
        4,
        4,
    )
    # the documented defaults: one node, a day, requeue on time-out, logs inside the sweep dir
    assert (launcher.nodes, launcher.timeout_min, launcher.max_num_timeout, launcher.signal_delay_s) == (
        1,
        1440,
        3,
        120,
    )
    assert launcher.submitit_folder.startswith(str(hydra.sweep.dir))
    # every documented field exists in the submitit launcher's schema (a typo would not compose)
    text = Path(__file__).parent.parent.joinpath("conf/hydra/launcher/slurm.yaml").read_text()
    documented = [
        line.split(":")[0] for line in text.splitlines() if line and not line.startswith(("#", " ", "-", "defaults"))
    ]
    assert len(documented) >= 15 and all(key in launcher for key in documented), documented


def test_help_lists_the_searches_and_loads_no_training_stack(tmp_path: Path) -> None:
    """``--help`` with the sweep plugins installed lists the searches and imports neither torch,
    Lightning nor MONAI (its time is measured by scripts/bench, row 5, not asserted here)."""
    import importlib.util
    import subprocess
    import sys

    from conftest import BIN, script_env

    assert importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper"), "the Optuna sweeper is not installed"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / "medvision-train"), "--help"],
        cwd=tmp_path,
        env=script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and "hparams_search: seg2d_optuna, seg_optuna" in proc.stdout, proc.stdout[-2000:]
    # -X importtime: one line per module imported, "import time: self | cumulative | name"
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning", "monai"))
    assert not heavy, f"medvision-train --help imported {heavy[:10]}"


def test_the_config_store_of_the_plugins_is_not_copied_per_group() -> None:
    """What kept ``--help`` fast with the plugins' configs registered: Hydra 1.3 deep-copies its
    config repository, ConfigStore included, for each group it lists; medvision's entry point
    makes a copy of the store the store itself (:mod:`medvision.utils.hydra_speed`)."""
    import copy

    from hydra.core.config_store import ConfigStore

    from medvision.utils.hydra_speed import share_config_store

    share_config_store()
    store = ConfigStore.instance()
    assert copy.deepcopy(store) is store
