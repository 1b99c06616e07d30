"""The gan_augment pipeline from one command, its JSON and table, ``medvision-gan-report``, its configs.

The debug pipeline runs as a user runs it (``medvision-gan-augment experiment=gan_augment/medmnist_debug``
in a subprocess) on a tiny BreastMNIST file in the official format: a real GAN training, a real
store, real classifier runs in both arms over two seeds, real quality figures. Its figures answer
nothing at this size; the test checks that they are the runs' own numbers, summarised correctly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import run_cli
from medmnist_files import write_medmnist
from medvision.utils.errors import MedvisionError

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One debug pipeline run by its console script: (its folder, its printed output)."""
    home = tmp_path_factory.mktemp("gan_augment_home")
    write_medmnist(home / "data" / "medmnist", "breastmnist", 28, n=40)
    proc = run_cli("medvision-gan-augment", ["experiment=gan_augment/medmnist_debug"], cwd=home, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    runs = sorted((home / "logs" / "gan_augment" / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], proc.stdout


@pytest.mark.slow
def test_pipeline_runs_every_stage_into_one_folder(pipeline: tuple[Path, str]) -> None:
    out, _ = pipeline
    assert (out / "gan" / "checkpoints" / "best.ckpt").is_file() and (out / "gan" / "metrics.json").is_file()
    assert (out / "synthetic" / "manifest.json").is_file()
    for arm in ("real", "synthetic"):
        for seed in SEEDS:
            assert (out / "classifier" / arm / f"seed_{seed}" / "metrics.json").is_file()
    results = json.loads((out / "gan_augment.json").read_text())
    assert results["augmented"] == ["malignant"] and results["seeds"] == list(SEEDS)
    # the imbalanced task: malignant keeps round(0.25 x 20) = 5 training images in every stage
    assert results["train_counts"]["real"] == {"malignant": 5, "normal, benign": 20}
    store = json.loads((out / "synthetic" / "manifest.json").read_text())
    assert store["counts"] == {"malignant": 12, "normal, benign": 12}  # generate.n_per_class=12, every class
    for seed in SEEDS:
        real = json.loads((out / "classifier" / "real" / f"seed_{seed}" / "data_counts.json").read_text())
        mixed = json.loads((out / "classifier" / "synthetic" / f"seed_{seed}" / "data_counts.json").read_text())
        assert real["train"]["real"] == mixed["train"]["real"] == {"malignant": 5, "normal, benign": 20}
        assert real["train"]["synthetic"] == {"malignant": 0, "normal, benign": 0}
        assert mixed["train"]["synthetic"] == {"malignant": 5, "normal, benign": 0}  # ratio 1.0 x 5
        assert mixed["synthetic"]["store"] == str(out / "synthetic")
        hparams = (out / "classifier" / "synthetic" / f"seed_{seed}" / "csv" / "hparams.yaml").read_text()
        assert "data/train_synthetic_malignant: 5" in hparams and "data/train_real_malignant: 5" in hparams


@pytest.mark.slow
def test_results_are_the_runs_own_numbers_with_mean_and_spread(pipeline: tuple[Path, str]) -> None:
    out, stdout = pipeline
    results = json.loads((out / "gan_augment.json").read_text())
    assert {"recall_malignant", "balanced_acc"} <= set(results["metrics"])
    for name, key in (("recall_malignant", "test/recall_malignant"), ("balanced_acc", "test/balanced_acc")):
        row = results["metrics"][name]
        for arm in ("real", "synthetic"):
            runs = [
                json.loads((out / "classifier" / arm / f"seed_{s}" / "metrics.json").read_text())[key] for s in SEEDS
            ]
            assert row[arm]["values"] == pytest.approx(runs)
            assert row[arm]["mean"] == pytest.approx(np.mean(runs)) and row[arm]["std"] == pytest.approx(
                np.std(runs, ddof=1)
            )
            assert all(0.0 <= v <= 1.0 for v in runs)
        assert row["difference"] == pytest.approx(row["synthetic"]["mean"] - row["real"]["mean"])
        assert row["spread"] == pytest.approx(max(row["real"]["std"], row["synthetic"]["std"]))
        assert row["exceeds_spread"] == (abs(row["difference"]) > row["spread"])
        expected = (
            "helped"
            if row["difference"] > row["spread"]
            else "hurt"
            if row["difference"] < -row["spread"]
            else "no clear effect"
        )
        assert row["verdict"] == expected
    quality = json.loads((out / "quality.json").read_text())
    assert results["quality"] == quality
    for key in ("fd", "precision", "recall", "agreement", "fd/malignant", "tstr/acc", "trtr/acc"):
        assert math.isfinite(float(quality[key])), key
    assert quality["n_real"] == 25 and quality["n_synthetic"] == 24
    # the printed table: both arms, the difference, the verdict, then the quality figures
    for text in (
        "real only",
        "real + synthetic",
        "recall_malignant",
        "balanced_acc",
        results["metrics"]["balanced_acc"]["verdict"],
        "GAN quality",
        "tstr/acc",
        f"{results['metrics']['recall_malignant']['real']['mean']:.4f}",
    ):
        assert text in stdout, text


@pytest.mark.slow
def test_gan_report_prints_a_pipeline_and_measures_a_store(
    pipeline: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medvision.cli.gan_report import main

    out, _ = pipeline
    main([str(out), "--json", str(tmp_path / "figures.json")])
    printed = capsys.readouterr().out
    assert "recall_malignant" in printed and "GAN quality" in printed
    assert json.loads((tmp_path / "figures.json").read_text()) == json.loads((out / "gan_augment.json").read_text())
    # a store measured now, against its generator's data, in the features of the seed-0 real classifier:
    # the pipeline's own figures (same data, same classifier, no TSTR here)
    classifier = out / "classifier" / "real" / "seed_0" / "checkpoints" / "best.ckpt"
    main([str(out / "synthetic"), "--classifier", str(classifier), "--json", str(tmp_path / "store.json")])
    assert "fd/malignant" in capsys.readouterr().out
    again = json.loads((tmp_path / "store.json").read_text())
    quality = json.loads((out / "quality.json").read_text())
    for key in ("fd", "precision", "recall", "agreement", "fd/malignant"):
        assert again[key] == pytest.approx(float(quality[key]), rel=1e-5, abs=1e-6), key
    main([str(out / "synthetic")])  # the pipeline's store without a classifier: what the pipeline measured
    assert f"{float(quality['fd']):.4f}" in capsys.readouterr().out
    from medvision.augment.store import read_store, write_store

    own = read_store(out / "synthetic")
    write_store(tmp_path / "store", own.images, own.labels, own.class_names)
    with pytest.raises(SystemExit) as end:
        main([str(tmp_path / "store")])  # any other store needs a classifier: a user error, exit 2
    assert end.value.code == 2 and "--classifier" in capsys.readouterr().err


@pytest.mark.slow
def test_a_finished_pipeline_folder_is_not_overwritten(pipeline: tuple[Path, str]) -> None:
    from medvision.utils.config import compose
    from medvision.workflows.gan_augment import gan_augment

    out, _ = pipeline
    before = (out / "gan_augment.json").read_text()
    cfg = compose(
        ["experiment=gan_augment/medmnist_debug", f"paths.root_dir={out.parent}"],
        config_name="gan_augment",
        output_dir=out,
    )
    with pytest.raises(MedvisionError, match="already holds a finished gan_augment pipeline"):
        gan_augment(cfg)
    assert (out / "gan_augment.json").read_text() == before


@pytest.mark.parametrize(
    "experiment",
    sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment" / "gan_augment").glob("*.yaml")),
)
def test_every_gan_augment_config_composes_into_valid_stages(experiment: str, tmp_path: Path) -> None:
    """Every stage of every shipped pipeline (the full-size ones too) is a valid run config."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from medvision.models import ClassifierModule, GANModule
    from medvision.utils.config import compose
    from medvision.utils.validate import validate_config
    from medvision.workflows.gan_augment import stage_config

    def overrides(stage: Any) -> list[str]:
        """A stage's overrides as conf/gan_augment.yaml documents them: its list, then its max_epochs."""
        return [*stage.overrides, *([f"trainer.max_epochs={stage.max_epochs}"] if stage.max_epochs is not None else [])]

    cfg = compose(
        [f"experiment=gan_augment/{experiment}", f"paths.root_dir={tmp_path}"],
        config_name="gan_augment",
        output_dir=tmp_path / "out",
    )
    template = OmegaConf.to_container(cfg.data, resolve=False)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert resolved.data.imbalance and len(resolved.seeds) >= 2
    gan = stage_config(resolved, template, overrides(resolved.gan), tmp_path / "gan", data=resolved.gan.data)
    assert get_class(gan.model._target_) is GANModule and gan.monitor == "val/fd"
    classifier = stage_config(
        resolved,
        template,
        overrides(resolved.classifier),
        tmp_path / "cls",
        data={**resolved.classifier.data, "synthetic": {"store": "/s", "ratio": 1.0}},
        seed=3,
    )
    assert get_class(classifier.model._target_) is ClassifierModule and classifier.seed == 3
    assert (gan.trainer.max_epochs, classifier.trainer.max_epochs) == (
        resolved.gan.max_epochs,
        resolved.classifier.max_epochs,
    )
    assert classifier.data.imbalance == resolved.data.imbalance == gan.data.imbalance
    assert classifier.data.counts_report == str(tmp_path / "cls" / "data_counts.json")
    for stage in (gan, classifier):
        validate_config(stage)


@pytest.mark.parametrize(
    ("real", "synthetic", "verdict"),
    [
        ([0.50, 0.60, 0.70], [0.90, 0.80, 1.00], "helped"),  # +0.30 > spread 0.10
        ([0.90, 0.80, 1.00], [0.50, 0.60, 0.70], "hurt"),
        ([0.50, 0.70, 0.90], [0.60, 0.80, 1.00], "no clear effect"),  # +0.10 < spread 0.20
        ([0.50], [0.90], "one seed: no spread to compare with"),
    ],
)
def test_the_verdict_compares_the_difference_with_the_spread(
    real: list[float], synthetic: list[float], verdict: str
) -> None:
    from scipy import stats

    from medvision.workflows.gan_augment import compare

    row = compare(real, synthetic)
    assert row["verdict"] == verdict
    assert row["difference"] == pytest.approx(np.mean(synthetic) - np.mean(real))
    if len(real) > 1:
        assert row["spread"] == pytest.approx(max(np.std(real, ddof=1), np.std(synthetic, ddof=1)))
        assert row["p_welch"] == pytest.approx(stats.ttest_ind(synthetic, real, equal_var=False).pvalue)
        assert row["exceeds_spread"] == (verdict != "no clear effect")
    else:
        assert math.isnan(row["p_welch"]) and not row["exceeds_spread"]
