"""``medvision-generate ckpt_path=... n_per_class=...``: a synthetic sample store from a GAN checkpoint.

The generator (its EMA copy by default) of a ``GANModule`` checkpoint makes ``n_per_class``
samples of each chosen class; sample ``k`` of the store comes from noise seeded with
``seed + k`` alone, so it can be made again by itself. The store (``manifest.json`` +
``samples.npz``, :mod:`medvision.augment.store`) records each sample's class and seed and the
generator checkpoint, and is never written over an existing one. Default folder:
``<run dir of the checkpoint>/synthetic/<date>_<time>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError


def _classes(wanted: Sequence[Any] | None, names: list[str]) -> list[int]:
    """Class indices from indices or names (``None``: all)."""
    if wanted is None:
        return list(range(len(names)))
    out = []
    for item in wanted:
        if isinstance(item, int) and 0 <= item < len(names):
            out.append(item)
        elif isinstance(item, str) and item in names:
            out.append(names.index(item))
        elif isinstance(item, str) and item.isdigit() and int(item) < len(names):
            out.append(int(item))
        else:
            raise MedvisionError(
                f"classes: {item!r} is not a class of this GAN ({', '.join(f'{i}={n}' for i, n in enumerate(names))})",
                fix="give class indices or names, e.g. classes=[1]",
            )
    return list(dict.fromkeys(out))


def default_output_dir(ckpt_path: Path, fallback: Path) -> Path:
    """``<run dir>/synthetic/<date>_<time>`` (run dir: the parent of the checkpoint's ``checkpoints/``
    folder, else ``fallback``); ``_2``, ``_3``, ... when that folder already exists."""
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else fallback
    base = run_dir / "synthetic" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def generate(cfg: DictConfig) -> Path:
    """Write a synthetic sample store from ``cfg.ckpt_path`` (the composed ``generate`` config).

    Returns:
        The store's folder.

    Raises:
        MedvisionError: no checkpoint, a checkpoint of another model, unknown classes, a bad
            count, or an output folder that already holds a store.
    """
    import numpy as np
    import torch

    from medvision.augment.store import write_store
    from medvision.models.gan import noise_for_seeds
    from medvision.models.loading import module_from_checkpoint
    from medvision.utils.io import refuse_input_as_output

    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise MedvisionError(
            "medvision-generate needs a GAN checkpoint",
            fix="medvision-generate ckpt_path=<run dir>/checkpoints/best.ckpt n_per_class=100",
        )
    if cfg.get("print_config", False):
        from medvision.utils.printing import print_config_tree

        print_config_tree(cfg)
    ckpt = Path(cfg.ckpt_path).resolve()
    module, _ = module_from_checkpoint(ckpt)
    if not hasattr(module, "sample"):
        raise MedvisionError(
            f"checkpoint {ckpt} holds a {type(module).__name__}, not a GAN",
            fix="pass the checkpoint of a medvision-train model=gan run",
        )
    n = int(cfg.n_per_class)
    if n < 1:
        raise MedvisionError(f"n_per_class={n} must be >= 1", fix="n_per_class=100")
    classes = _classes(OmegaConf.to_container(cfg.classes) if cfg.classes is not None else None, module.label_names)
    device = cfg.get("device", "auto")
    module.to(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    ema = bool(cfg.ema) and module.generator_ema is not None
    labels = np.repeat(np.asarray(classes, dtype=np.int64), n)
    seeds = [int(cfg.seed) + k for k in range(len(labels))]
    batch = max(1, int(cfg.batch_size))
    images = np.concatenate(
        [
            module.sample(
                torch.as_tensor(labels[i : i + batch]),
                noise_for_seeds(seeds[i : i + batch], module.latent_dim),
                ema=ema,
            )
            .cpu()
            .numpy()
            for i in range(0, len(labels), batch)
        ]
    )
    out = Path(cfg.output_dir) if cfg.get("output_dir") else default_output_dir(ckpt, Path(cfg.paths.output_dir))
    refuse_input_as_output(out, [ckpt, ckpt.parent], what="output_dir")
    path = write_store(
        out,
        images,
        labels,
        module.label_names,
        seeds=seeds,
        generator_checkpoint=ckpt,
        extra={
            "generator": "ema" if ema else "raw",
            "n_per_class": n,
            "classes": [module.label_names[c] for c in classes],
            "seed": int(cfg.seed),
            "seed_rule": "sample k: noise_for_seeds([seed + k], latent_dim)",
            "latent_dim": module.latent_dim,
        },
    )
    from medvision.utils.printing import print_metrics_table

    print_metrics_table({f"n_{module.label_names[c]}": float(n) for c in classes}, title=f"synthetic store: {path}")
    return path
