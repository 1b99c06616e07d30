"""Every MedMNIST experiment (``conf/experiment/medmnist/*.yaml``) runs end to end (``fast_dev_run``).

``tests/test_experiments.py`` globs ``conf/experiment/*.yaml`` only; this file covers the
``medmnist/`` folder, globbed at collection time. Each run reads a tiny file in the official
format (20 images per split) written where ``data=medmnist`` looks for it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medmnist_files import write_medmnist
from medvision.train import run
from medvision.utils.config import config_dir

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment" / "medmnist").glob("*.yaml"))


def test_the_paper_protocol_experiments_exist() -> None:
    assert {"resnet18_28", "resnet18_224", "resnet50_28", "resnet50_224", "resnet18_3d"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_medmnist_experiment_runs_fast_dev_run(experiment: str, compose_run, tmp_path: Path) -> None:
    source = (config_dir() / "experiment" / "medmnist" / f"{experiment}.yaml").read_text()
    assert source.lstrip().startswith("# @package _global_")
    # a root of its own: the tiny files must not shadow anything of the session's data folder
    cfg = compose_run(
        [
            f"experiment=medmnist/{experiment}",
            f"paths.root_dir={tmp_path}",
            "debug=fast_dev_run",
            "data.batch_size=4",
            "data.val_batch_size=4",
            "callbacks.gradcam.n_images=2",
        ]
    )
    # the protocol: Adam 1e-3, 100 epochs, x0.1 at 50%/75%, selection by validation AUC
    assert cfg.monitor == "val/auc" and cfg.monitor_mode == "max"
    assert cfg.callbacks.model_checkpoint.monitor == "val/auc"
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == pytest.approx(1e-3)
    assert list(cfg.model.scheduler.fractions) == [0.5, 0.75] and cfg.model.scheduler.gamma == pytest.approx(0.1)
    assert cfg.trainer.max_epochs == 100
    path = write_medmnist(Path(cfg.data.root), cfg.data.flag, cfg.data.size, n=20)
    assert path.name == (f"{cfg.data.flag}.npz" if cfg.data.size == 28 else f"{cfg.data.flag}_{cfg.data.size}.npz")

    metrics = run(cfg)
    for key in ("test/acc", "test/auc", "test/f1", "test/precision", "test/recall", "test/specificity"):
        assert key in metrics and math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, (key, sorted(metrics))
    assert any(k.startswith("test/auc_") for k in metrics)
    assert (Path(cfg.paths.output_dir) / "metrics.json").is_file()
    # the experiments choose callbacks=gradcam: overlays of validation images (3D: the middle slice)
    assert len(list((Path(cfg.paths.output_dir) / "gradcam").glob("*.png"))) == 2
