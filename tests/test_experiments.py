"""Every experiment and every network of the config tree runs end to end (``fast_dev_run``).

The parameters come from one recursive discovery of ``conf/experiment/**/*.yaml`` (and of
``conf/model/net/*.yaml``) at collection time, so a new file is tested without editing this one.
The experiment files sort into:

- training experiments: each runs here with ``debug=fast_dev_run``, except those of the folders
  in ``COVERED_ELSEWHERE``, whose runs need files another test module writes (tiny MedMNIST
  files); those are composed here, and their ``fast_dev_run`` test is checked to be collected
  there, so nothing is run twice and nothing is left out;
- data defaults (``default/<data>.yaml``): what train.yaml adds for that data choice; bare
  ``medvision-train`` is the demo's, the same config as ``experiment=mni152_tissue``
  (``tests/test_config_tree.py``);
- shims (a defaults list that includes ``/workflow/...``): old names of workflow configs
  (``experiment=gan_augment/<name>``), not training experiments (``tests/test_config_tree.py``).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from medvision.train import run
from medvision.utils.config import config_dir

EXPERIMENT_DIR = config_dir() / "experiment"


def _is_shim(path: Path) -> bool:
    defaults = OmegaConf.load(path).get("defaults") or []
    return any(isinstance(entry, str) and entry.startswith("/workflow/") for entry in defaults)


#: every experiment file, by its choice name (``medmnist/resnet18_28``)
ALL = {p.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix(): p for p in sorted(EXPERIMENT_DIR.rglob("*.yaml"))}
SHIMS = sorted(name for name, path in ALL.items() if _is_shim(path))
DATA_DEFAULTS = sorted(name for name in ALL if name.startswith("default/"))
EXPERIMENTS = sorted(set(ALL) - set(SHIMS) - set(DATA_DEFAULTS))
#: folders whose fast_dev_run tests live in another module (they write the data those runs read)
COVERED_ELSEWHERE = {"medmnist": "test_medmnist_experiments.py", "gan": "test_gan.py"}
RUN_HERE = [e for e in EXPERIMENTS if e.rpartition("/")[0] not in COVERED_ELSEWHERE]
NETS = sorted(p.stem for p in (config_dir() / "model" / "net").glob("*.yaml"))

#: small 3D synthetic data for the network matrix: 6 cases of 32^3 (1 test, 1 val, 4 train)
SMALL_3D = [
    "experiment=synthetic_seg3d",
    "data.source.num_cases=6",
    "data.source.size=32",
    "data.patch_size=[32,32,32]",
]


def _assert_test_dice(metrics: dict[str, float], label_names: list[str]) -> None:
    assert "test/dice_mean" in metrics, sorted(metrics)
    dice = metrics["test/dice_mean"]
    assert math.isfinite(dice) and 0.0 <= dice <= 1.0, dice
    # per-class Dice is named by the data's labels (background excluded)
    for name in label_names[1:]:
        assert f"test/dice_{name}" in metrics, sorted(metrics)
    assert "train/loss_epoch" in metrics or "train/loss" in metrics, sorted(metrics)


def test_config_tree_has_experiments_and_nets() -> None:
    assert {
        "mni152_tissue",
        "mni152_segresnet",
        "synthetic_seg2d",
        "synthetic_seg3d",
        "dicom_modality",
        "medmnist/resnet18_28",
        "medmnist/resnet50_224",
        "medmnist/resnet18_3d",
        "gan/medmnist28",
    } <= set(EXPERIMENTS)
    assert {"gan_augment/dicom_modality", "gan_augment/medmnist_debug", "gan_augment/pneumoniamnist"} == set(SHIMS)
    assert DATA_DEFAULTS == ["default/mni152_tissue"]
    assert {"unet", "segresnet", "dynunet", "attention_unet", "unetr"} <= set(NETS)


@pytest.mark.parametrize("experiment", sorted(ALL))
def test_experiment_file_is_global_and_composes(experiment: str, compose_run) -> None:
    source = ALL[experiment].read_text()
    assert source.lstrip().startswith("# @package _global_"), f"{experiment}.yaml must start with '# @package _global_'"
    if experiment not in SHIMS:  # a shim composes under gan_augment.yaml (tests/test_config_tree.py)
        cfg = compose_run([f"experiment={experiment}"])
        assert cfg.monitor and cfg.model._target_.startswith("medvision.models.")


def test_experiments_of_other_folders_run_in_their_module() -> None:
    tests = Path(__file__).parent
    files = sorted({str(tests / name) for name in COVERED_ELSEWHERE.values()})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tests.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = done.stdout.splitlines()
    for experiment in sorted(set(EXPERIMENTS) - set(RUN_HERE)):
        folder, _, stem = experiment.rpartition("/")
        module = COVERED_ELSEWHERE[folder]
        assert any(module in test and "fast_dev_run" in test and test.endswith(f"[{stem}]") for test in collected), (
            f"experiment={experiment} has no fast_dev_run test in tests/{module}"
        )


@pytest.mark.parametrize("experiment", RUN_HERE)
def test_experiment_runs_fast_dev_run(experiment: str, compose_run) -> None:
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
