"""``medvision-gan-report <store or pipeline dir>``: the quality figures of synthetic samples.

* a gan_augment pipeline folder (``gan_augment.json``): its two arms (minority-class recall and
  balanced accuracy, mean ± std over seeds, the difference and the verdict) and its GAN quality;
* the store of a pipeline (``<pipeline dir>/synthetic``): the quality the pipeline measured;
* a synthetic store (``manifest.json`` + ``samples.npz``) with ``--classifier <ckpt>``: the
  quality measured now (:func:`medvision.workflows.gan_quality.gan_quality`) against the real data
  the generator was trained on (the data config stored in the store's generator checkpoint),
  in the feature space of that classifier; ``--tstr`` adds train-on-synthetic/test-on-real.

``--json <file>`` also writes the figures (atomically; never over an input).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medvision.utils.errors import MedvisionError
from medvision.utils.runs import as_float

#: what a gan_augment pipeline folder holds: its answer and the GAN's quality
RESULTS = "gan_augment.json"
QUALITY = "quality.json"
#: quality figures shown first, in this order (then the per-class ones)
HEADLINE: tuple[str, ...] = (
    "fd",
    "precision",
    "recall",
    "agreement",
    "tstr/acc",
    "tstr/balanced_acc",
    "trtr/acc",
    "trtr/balanced_acc",
    "n_real",
    "n_synthetic",
)


def _number(value: Any) -> float:
    number = as_float(value)
    return float("nan") if number is None else number


def print_quality(quality: Mapping[str, Any], title: str = "GAN quality") -> None:
    """Print quality figures as a rich table (headline figures first, then per class)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    meaning = {
        "fd": "Fréchet distance, classifier features (lower = closer to real)",
        "precision": "synthetic inside the real manifold (k-NN)",
        "recall": "real inside the synthetic manifold (k-NN)",
        "agreement": "synthetic recognised as their class by the real-data classifier",
        "tstr/acc": "train on synthetic, test on real",
        "trtr/acc": "train on real, test on real (reference)",
    }
    keys = [k for k in HEADLINE if k in quality] + sorted(k for k in quality if k not in HEADLINE)
    for key in keys:
        value = _number(quality[key])
        text = f"{int(value)}" if key.startswith("n_") and math.isfinite(value) else f"{value:.4f}"
        table.add_row(key, text, meaning.get(key, ""))
    _console().print(table)


def _console() -> Any:
    """A rich console; 120 columns when the output is not a terminal (a pipe, a log file), so tables stay whole."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def print_results(results: Mapping[str, Any]) -> None:
    """Print a gan_augment pipeline's answer: both arms per metric, the difference, the verdict, then its quality."""
    from rich.table import Table

    seeds = results.get("seeds", [])
    title = (
        f"GAN augmentation of {', '.join(results.get('augmented', []))}: "
        f"real vs real + synthetic (ratio {results.get('ratio')}), {len(seeds)} seeds"
    )
    table = Table(title=title)
    for column in ("test metric", "real only", "real + synthetic", "difference", "spread", "p (Welch)", "verdict"):
        table.add_column(column, justify="left" if column in ("test metric", "verdict") else "right")
    for name, row in results.get("metrics", {}).items():

        def arm(a: str, row: Mapping[str, Any] = row) -> str:
            return f"{_number(row[a]['mean']):.4f} ± {_number(row[a]['std']):.4f}"

        table.add_row(
            name,
            arm("real"),
            arm("synthetic"),
            f"{_number(row['difference']):+.4f}",
            f"{_number(row['spread']):.4f}",
            f"{_number(row['p_welch']):.3f}",
            str(row["verdict"]),
        )
    console = _console()
    console.print(table)
    counts = results.get("train_counts") or {}
    if counts:
        console.print(
            "training split per class (original -> real kept): "
            + ", ".join(
                f"{name} {counts['original'][name]} -> {counts['real'][name]}" for name in counts.get("real", {})
            )
        )
    console.print(
        "mean ± std over seeds; spread = the larger std; verdict: the difference exceeds the spread "
        "(helped / hurt) or not (no clear effect)"
    )
    if results.get("quality"):
        print_quality(results["quality"])


def store_quality(
    store: str | os.PathLike[str],
    classifier: str | os.PathLike[str],
    data: Mapping[str, Any] | None = None,
    k: int = 3,
    tstr: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """:func:`medvision.workflows.gan_quality.gan_quality` of a store against the real data of its GAN.

    Args:
        store: the store folder.
        classifier: a medvision classifier checkpoint trained on the same data (features,
            class agreement). Grey images are repeated to 3 channels when it takes RGB.
        data: the data config node of the real data (default: the one stored in the store's
            generator checkpoint); its training split is compared with the store, its test
            split scores TSTR.
        k: neighbour of the k-NN precision/recall radii.
        tstr: :func:`medvision.workflows.gan_quality.fit_and_test` options (``{"epochs": 10}``) to
            also measure train-on-synthetic/test-on-real and its train-on-real reference;
            ``None``: not measured.
    """
    import numpy as np
    from hydra.utils import instantiate

    from medvision.augment.store import read_store
    from medvision.models.loading import config_from_checkpoint, module_from_checkpoint
    from medvision.workflows.gan_quality import gan_quality, real_arrays

    synth = read_store(store)
    if data is None:
        ckpt = synth.manifest.get("generator_checkpoint")
        if not ckpt:
            raise MedvisionError(
                f"{store}: the manifest names no generator checkpoint, so its real data are unknown",
                fix="use a store written by medvision-generate",
            )
        data = config_from_checkpoint(ckpt).data
    datamodule = instantiate(data)
    real, test = real_arrays(datamodule, "train"), real_arrays(datamodule, "test")
    module, _ = module_from_checkpoint(classifier)
    channels = int(module.hparams.get("in_channels", real[0].shape[1]))
    if channels != real[0].shape[1] or channels != synth.images.shape[1]:
        if channels != 3 or real[0].shape[1] != 1 or synth.images.shape[1] != 1:
            raise MedvisionError(
                f"the classifier {classifier} takes {channels} channels, the store {store} has "
                f"{synth.images.shape[1]} and its real data {real[0].shape[1]}",
                fix="use a classifier trained on the same data as the GAN",
            )
        synth.images = np.repeat(synth.images, 3, axis=1)
        real, test = (np.repeat(real[0], 3, axis=1), real[1]), (np.repeat(test[0], 3, axis=1), test[1])
    return gan_quality(
        synth,
        real,
        module,
        real_test=test if tstr is not None else None,
        k=k,
        tstr=dict(tstr) if tstr is not None else None,
    )


def report(
    path: str | os.PathLike[str], classifier: str | None = None, tstr_epochs: int | None = None, k: int = 3
) -> dict[str, Any]:
    """The figures of a pipeline folder, or of a store (measured now), printed.

    Args:
        path: a gan_augment pipeline folder, or a synthetic store folder.
        classifier: for a store: the classifier checkpoint whose features measure it.
        tstr_epochs: for a store: also train-on-synthetic/test-on-real, this many epochs.
        k: for a store: neighbour of the k-NN precision/recall.

    Raises:
        MedvisionError: the folder is neither, or a store comes without a classifier.
    """
    from medvision.augment.store import MANIFEST

    folder = Path(path)
    if (folder / RESULTS).is_file():
        results = json.loads((folder / RESULTS).read_text(encoding="utf-8"))
        print_results(results)
        return results
    if (folder / MANIFEST).is_file():
        measured = folder.parent / QUALITY
        if not classifier and measured.is_file():  # the store of a pipeline: the figures it measured
            quality = {k: _number(v) for k, v in json.loads(measured.read_text(encoding="utf-8")).items()}
            print_quality(quality, title=f"GAN quality of {folder} (measured by the pipeline: {measured})")
            return quality
        if not classifier:
            raise MedvisionError(
                f"{folder} is a synthetic store; measuring it needs a classifier trained on the same data",
                fix=f"medvision-gan-report {folder} --classifier <run dir>/checkpoints/best.ckpt",
            )
        quality = store_quality(folder, classifier, k=k, tstr={"epochs": tstr_epochs} if tstr_epochs else None)
        print_quality(quality, title=f"GAN quality of {folder}")
        return quality
    raise MedvisionError(
        f"{folder} is neither a gan_augment pipeline folder ({RESULTS}) nor a synthetic store ({MANIFEST})",
        fix="pass the folder printed by medvision-gan-augment or written by medvision-generate",
    )
