"""``medvision-eval ckpt_path=...``: test a checkpoint on the test split of the run that made it.

Data, model and seed come from the config stored inside the checkpoint (so the split and the
preprocessing are the run's own); trainer, loggers and paths come from ``conf/eval.yaml``.
Dotted command-line overrides of ``data.*``/``model.*`` (e.g. ``data.root=/new/place``) apply
on top of the stored config.

The model is built by :func:`medvision.train.build`, as in training, so a segmenter's test
metrics are the run's own: computed against each case's label file on its own grid
(:mod:`medvision.data.original_space`), with the preprocessed-space Dice as
``test_preprocessed/...``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError

#: callbacks that only make sense while training
_TRAINING_ONLY = ("ModelCheckpoint", "EarlyStopping", "LearningRateMonitor")


def _cli_overrides() -> list[str]:
    """The dotted ``data.*``/``model.*`` overrides given on the command line (none outside the CLI)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    task = HydraConfig.get().overrides.task
    return [o for o in task if o.split("=", 1)[0].lstrip("+~").startswith(("data.", "model."))]


def eval_config(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """The run config to evaluate: the checkpoint's data/model/seed with ``cfg``'s trainer, loggers, paths.

    Args:
        cfg: the composed ``eval`` config (``ckpt_path`` set).
        overrides: dotted ``data.*``/``model.*`` overrides to apply to the stored config.
    """
    from medvision.models.loading import config_from_checkpoint

    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise MedvisionError(
            "medvision-eval needs a checkpoint", fix="medvision-eval ckpt_path=<run dir>/checkpoints/best.ckpt"
        )
    saved = config_from_checkpoint(cfg.ckpt_path)
    callbacks = {
        k: v
        for k, v in (saved.get("callbacks") or {}).items()
        if not (isinstance(v, DictConfig) and str(v.get("_target_", "")).endswith(_TRAINING_ONLY))
    }
    merged = OmegaConf.create({"data": saved.data, "model": saved.model, "seed": saved.seed, "callbacks": callbacks})
    if merged.data.get("audit_report"):  # the audit report of an evaluation goes to its own folder
        merged.data.audit_report = "${paths.output_dir}/data_audit.json"
    if merged.data.get("splits_report"):  # so is its split: the training run's splits.json is kept
        merged.data.splits_report = "${paths.output_dir}/splits.json"
    if overrides:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    base = cfg.copy()
    OmegaConf.set_struct(base, False)
    out = OmegaConf.merge(base, merged)
    out.ckpt_path = str(Path(cfg.ckpt_path).resolve())
    OmegaConf.set_struct(out, True)
    return out


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` and return its test metrics (also written to ``metrics.json``).

    Args:
        cfg: the composed ``eval`` config.
        overrides: dotted ``data.*``/``model.*`` overrides (default: those of the command line).
    """
    from medvision.train import build, check_output_dir, finish, log_hyperparameters
    from medvision.utils.config import resolved_container
    from medvision.utils.runs import numbers
    from medvision.utils.seeding import seed_everything
    from medvision.utils.validate import validate_config

    run_cfg = eval_config(cfg, _cli_overrides() if overrides is None else overrides)
    config = resolved_container(run_cfg)
    validate_config(config)
    output_dir = Path(run_cfg.paths.output_dir)
    check_output_dir(output_dir, config, finished=("metrics.json",))
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(run_cfg.seed)
    datamodule, model, trainer, loggers = build(run_cfg, config)
    log_hyperparameters(loggers, config)
    trainer.test(model, datamodule=datamodule, ckpt_path=run_cfg.ckpt_path, weights_only=True)
    metrics = numbers(trainer.callback_metrics)
    if trainer.is_global_zero:
        finish(loggers, metrics, output_dir, title="eval metrics")
    return metrics
