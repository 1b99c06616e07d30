"""``medvision-gan-augment workflow=gan_augment/<name>``: does GAN augmentation of a rare class help?

One command answers it end to end, every stage through the one road (:func:`medvision.train.run`,
:func:`medvision.inference.generate.generate`), every stage writing into one pipeline folder::

    <out>/gan/                          1. the class-conditional GAN, trained on the imbalanced training split
    <out>/synthetic/                    2. the synthetic store it generates (every class; the minority is mixed in)
    <out>/classifier/real/seed_<s>/     3. the classifier on real data only, one run per seed
    <out>/classifier/synthetic/seed_<s>/   ... and on real + synthetic minority samples, same seeds
    <out>/quality.json                  4. GAN quality (Fréchet distance, k-NN precision/recall, TSTR)
    <out>/gan_augment.json              5. the answer: minority-class recall and balanced accuracy of both
                                           arms, mean and spread (std) over seeds, and whether the difference
                                           exceeds the spread

The data are one node (``data``, e.g. ``data: medmnist``) with ``data.imbalance`` set: every stage
gets it (plus the stage's own ``<stage>.data`` keys), so the GAN, the generator and both
classifier arms see the same imbalanced training split and the same validation and test splits.
A stage folder that already holds a finished run (``metrics.json``, a store, ``quality.json``) is
reused and a run that stopped halfway continues from its ``checkpoints/last.ckpt``, so
``hydra.run.dir=<out>`` with the same overrides continues an interrupted pipeline (another config
is refused: ``pipeline_config.json``).

Sampling of the classifier arms: both arms use the same data config apart from
``data.synthetic``; a class-balanced sampler (``data.balanced_sampler``), if on, is on in both.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError
from medvision.utils.runs import numbers, read_metrics

#: the JSON answer inside the pipeline folder
#: the pipeline's resolved config (a folder continued with another config is refused)
CONFIG = "pipeline_config.json"
ARMS: tuple[str, ...] = ("real", "synthetic")


# ----------------------------------------------------------------------------- stage configs
def stage_config(
    cfg: DictConfig,
    data_template: Mapping[str, Any],
    overrides: Sequence[str],
    output_dir: Path,
    data: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> DictConfig:
    """The config of one training stage: ``conf/train.yaml`` composed with ``overrides``, and the pipeline's data.

    The stage's data node is ``data_template`` (the pipeline's ``data``, unresolved: its
    ``${paths...}`` resolve in the stage) updated with ``data``. The result is fully resolved, so
    it no longer depends on the Hydra state of later compositions.

    Args:
        cfg: the pipeline config (resolved).
        data_template: the pipeline's data node, unresolved.
        overrides: Hydra overrides of the stage (e.g. ``["model=gan", "trainer.max_epochs=50"]``);
            the default experiment is left out (a stage is what its overrides say).
        output_dir: the stage's folder.
        data: keys set on top of the data node (``None``: none).
        seed: the stage's ``seed`` (``None``: the pipeline's).
    """
    from medvision.utils.config import compose, resolved_container

    common = [
        f"paths.root_dir={cfg.paths.root_dir}",
        f"print_config={str(bool(cfg.print_config)).lower()}",
        f"seed={cfg.seed if seed is None else seed}",
        "~experiment",
    ]
    stage = compose([*common, *overrides], config_name="train", output_dir=output_dir)
    OmegaConf.set_struct(stage, False)
    stage.data = OmegaConf.merge(OmegaConf.create(dict(data_template)), OmegaConf.create(dict(data or {})))
    out = OmegaConf.create(resolved_container(stage))
    OmegaConf.set_struct(out, True)
    return out


def run_stage(stage: DictConfig, name: str) -> dict[str, float]:
    """Train and test one stage with :func:`medvision.train.run`.

    A stage that finished before (``metrics.json``) is read, not run; one that stopped halfway
    (``checkpoints/last.ckpt``) continues from its last checkpoint in its own folder.
    """
    from rich.console import Console

    from medvision.train import run

    folder = Path(stage.paths.output_dir)
    if (folder / "metrics.json").is_file():
        Console().print(f"[bold]{name}[/]: finished before, reusing {folder / 'metrics.json'}")
        return read_metrics(folder)
    Console().rule(f"[bold]{name}")
    if (folder / "checkpoints" / "last.ckpt").is_file():
        stage.ckpt_path = str(folder / "checkpoints" / "last.ckpt")
    return run(stage)


# ----------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value) over seeds."""
    import numpy as np

    if not len(values):
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def compare(real: Sequence[float], synthetic: Sequence[float]) -> dict[str, Any]:
    """Both arms' mean and spread, their difference, and whether it exceeds the spread.

    ``spread`` is the larger of the two arms' standard deviations over seeds; ``verdict`` is
    ``helped`` (difference > spread), ``hurt`` (difference < -spread) or ``no clear effect``.
    ``p_welch`` is Welch's two-sided t-test (NaN below two seeds or without variance).
    """
    from scipy import stats

    mean_r, std_r = mean_std(real)
    mean_s, std_s = mean_std(synthetic)
    diff, spread = mean_s - mean_r, max(std_r, std_s)
    if len(real) < 2 or len(synthetic) < 2:
        verdict, p = "one seed: no spread to compare with", float("nan")
    else:
        verdict = "helped" if diff > spread else "hurt" if diff < -spread else "no clear effect"
        with warnings.catch_warnings():  # nearly equal values: scipy warns of precision loss, the p-value stands
            warnings.simplefilter("ignore", RuntimeWarning)
            p = (
                float(stats.ttest_ind(synthetic, real, equal_var=False).pvalue)
                if (std_r > 0 or std_s > 0)
                else float("nan")
            )
    return {
        "real": {"mean": mean_r, "std": std_r, "values": list(real)},
        "synthetic": {"mean": mean_s, "std": std_s, "values": list(synthetic)},
        "difference": diff,
        "spread": spread,
        "exceeds_spread": bool(abs(diff) > spread) and len(real) > 1,
        "verdict": verdict,
        "p_welch": p,
    }


# ----------------------------------------------------------------------------- the pipeline
def _overrides(stage: DictConfig) -> list[str]:
    """A stage's Hydra overrides, then ``trainer.max_epochs=<stage.max_epochs>`` when that is set."""
    extra = [f"trainer.max_epochs={int(stage.max_epochs)}"] if stage.get("max_epochs") is not None else []
    return [*stage.overrides, *extra]


def _minority(cfg: DictConfig, label_names: Sequence[str]) -> list[int]:
    """The classes to augment: ``synthetic.classes``, or the class of ``data.imbalance``."""
    from medvision.augment.imbalance import class_index

    classes = cfg.synthetic.get("classes")
    if classes:
        return sorted({class_index(c, label_names, "synthetic.classes") for c in classes})
    imbalance = cfg.data.get("imbalance")
    if not imbalance:
        raise MedvisionError(
            "the pipeline does not know which class to augment: neither synthetic.classes nor data.imbalance is set",
            fix="set data.imbalance={class: 1, keep: 0.1, seed: 0} "
            "(or synthetic.classes=[1] for a task that is imbalanced already)",
        )
    return [class_index(imbalance["class"], label_names, "data.imbalance.class")]


def _generate(cfg: DictConfig, out: Path, ckpt: Path, n_per_class: int) -> Path:
    """Stage 2: the store, every class (reused when ``<out>/synthetic`` holds one)."""
    from rich.console import Console

    from medvision.augment.store import MANIFEST
    from medvision.inference.generate import generate
    from medvision.utils.config import compose, resolved_container

    folder = out / "synthetic"
    if (folder / MANIFEST).is_file():
        Console().print(f"[bold]generate[/]: store written before, reusing {folder}")
        return folder
    Console().rule("[bold]generate")
    overrides = [
        f"paths.root_dir={cfg.paths.root_dir}",
        f"ckpt_path={ckpt}",
        f"n_per_class={n_per_class}",
        f"seed={cfg.generate.seed}",
        f"output_dir={folder}",
        *cfg.generate.overrides,
    ]
    stage = compose(overrides, config_name="generate", output_dir=folder)
    return Path(generate(OmegaConf.create(resolved_container(stage))))


def gan_augment(cfg: DictConfig) -> dict[str, Any]:
    """Run the pipeline described by ``cfg`` (``conf/gan_augment.yaml``).

    Returns:
        The results, also written to ``<output_dir>/gan_augment.json`` and printed.
    """
    from hydra.utils import instantiate
    from rich.console import Console

    from medvision.utils.io import atomic_write_json
    from medvision.utils.names import safe_name
    from medvision.utils.runs import json_safe
    from medvision.workflows.gan_report import QUALITY, RESULTS, print_results, store_quality

    data_template = OmegaConf.to_container(cfg.data, resolve=False)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # free of the Hydra state stages change
    out = Path(cfg.paths.output_dir).resolve()
    if (out / RESULTS).is_file():
        raise MedvisionError(
            f"{out} already holds a finished gan_augment pipeline ({RESULTS}); it is not overwritten",
            fix="leave hydra.run.dir to its default (a new folder per run) or pick a new one",
        )
    seeds = [int(s) for s in cfg.seeds]
    if not seeds:
        raise MedvisionError("seeds=[]: the classifier arms need at least one seed", fix="seeds=[0,1,2]")
    config = OmegaConf.to_container(cfg)
    if (out / CONFIG).is_file() and json.loads((out / CONFIG).read_text(encoding="utf-8")) != json.loads(
        json.dumps(config)
    ):
        raise MedvisionError(
            f"{out} holds an unfinished gan_augment pipeline of another config ({out / CONFIG}); "
            "its stages would not be comparable",
            fix="continue it with the same overrides, or pick a new folder",
        )
    atomic_write_json(out / CONFIG, config)

    # 1. the GAN on the imbalanced training split
    gan_stage = stage_config(cfg, data_template, _overrides(cfg.gan), out / "gan", data=cfg.gan.get("data"))
    datamodule = instantiate(gan_stage.data)
    composition = datamodule.training_split()
    if composition is None:
        raise MedvisionError(
            "gan_augment needs a single-label task (binary or multi-class)", fix="choose another data set"
        )
    label_names = list(datamodule.label_names)
    augmented = _minority(cfg, label_names)
    counts = composition.counts()
    gan_metrics = run_stage(gan_stage, "GAN")
    ckpt = out / "gan" / "checkpoints" / f"{cfg.generate.checkpoint}.ckpt"

    # 2. samples of every class; of the augmented ones at least what synthetic.ratio needs
    ratio = float(cfg.synthetic.ratio)
    needed = max(round(ratio * counts["real"][label_names[c]]) for c in augmented)
    n_per_class = max(int(cfg.generate.n_per_class or 0), needed, 1)
    store = _generate(cfg, out, ckpt, n_per_class)

    # 3. the classifier with and without synthetic samples, seed by seed
    mix = {"store": str(store), "ratio": ratio, "classes": [label_names[c] for c in augmented]}
    metrics: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    for seed in seeds:
        for arm in ARMS:
            data = dict(cfg.classifier.get("data") or {})
            data["synthetic"] = mix if arm == "synthetic" else None
            stage = stage_config(
                cfg,
                data_template,
                _overrides(cfg.classifier),
                out / "classifier" / arm / f"seed_{seed}",
                data=data,
                seed=seed,
            )
            metrics[arm].append(run_stage(stage, f"classifier, {arm} data, seed {seed}"))

    # 4. GAN quality in the feature space of the first real-data classifier
    quality: dict[str, float] = {}
    if cfg.quality.enabled and (out / QUALITY).is_file():
        quality = numbers(json.loads((out / QUALITY).read_text(encoding="utf-8")))
    elif cfg.quality.enabled:
        Console().rule("[bold]GAN quality")
        feature_ckpt = out / "classifier" / "real" / f"seed_{seeds[0]}" / "checkpoints" / "best.ckpt"
        tstr = dict(cfg.quality.tstr) if cfg.quality.get("tstr") else None
        quality = store_quality(store, feature_ckpt, gan_stage.data, k=int(cfg.quality.k), tstr=tstr)
        atomic_write_json(out / QUALITY, json_safe(quality))

    # 5. the answer
    names = [label_names[c] for c in augmented]
    keys = {f"recall_{safe_name(n)}": f"test/recall_{safe_name(n)}" for n in names}
    keys.update({"balanced_acc": "test/balanced_acc", "auc": "test/auc", "acc": "test/acc"})
    comparison = {}
    for short, key in keys.items():
        if any(key not in m for arm in ARMS for m in metrics[arm]):
            raise MedvisionError(
                f"the classifier runs did not log {key}", fix="keep model=classifier in classifier.overrides"
            )
        comparison[short] = compare([m[key] for m in metrics["real"]], [m[key] for m in metrics["synthetic"]])
    results = {
        "output_dir": str(out),
        "classes": label_names,
        "augmented": names,
        "seeds": seeds,
        "ratio": ratio,
        "imbalance": cfg.data.get("imbalance") and OmegaConf.to_container(cfg.data.imbalance),
        "train_counts": counts,
        "store": str(store),
        "n_per_class": n_per_class,
        "gan": {"checkpoint": str(ckpt), "metrics": gan_metrics},
        "metrics": comparison,
        "quality": quality,
        "runs": {arm: [str(out / "classifier" / arm / f"seed_{s}") for s in seeds] for arm in ARMS},
    }
    atomic_write_json(out / RESULTS, json_safe(results))
    print_results(results)
    return results
