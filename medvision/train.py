"""``medvision-train``: the one road a run takes. ``run(cfg)`` wires data, model, trainer,
callbacks and loggers, trains, tests the best checkpoint, and returns the metrics.

Every caller (the CLI, sweeps, notebooks, tests) goes through :func:`run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError
from medvision.utils.runs import numbers


def build(cfg: DictConfig, config_for_checkpoint: dict[str, Any]) -> tuple[Any, Any, Any, list[Any]]:
    """Instantiate the DataModule, the LightningModule, the loggers and the Trainer from ``cfg``.

    What the model must know of the data (label names, class count, input channels, ...) comes
    from ``datamodule.model_kwargs()``, not from the model config. A model with an
    ``original_space`` attribute (the segmenter) also gets ``datamodule.original_space()``: the
    callable that puts test cases back on their label files' grids
    (:mod:`medvision.data.original_space`), so that test metrics are computed there.

    A ``ckpt_path`` is checked before it is used: its task and network before anything is
    built, its tensors against the built model (a clear error instead of a state-dict dump).

    Every run also gets :class:`~medvision.callbacks.reseed.ReseedEveryStep` (step randomness
    as a function of seed, epoch and step: resumed runs and any ``num_workers`` make the same
    steps) and ``use_distributed_sampler=False`` (the DataModule's samplers are DDP-aware).

    Returns:
        ``(datamodule, model, trainer, loggers)``.
    """
    from hydra.utils import instantiate

    from medvision.callbacks.last_epoch import ValidateLastEpoch
    from medvision.callbacks.reseed import ReseedEveryStep
    from medvision.callbacks.run_config import RunConfigInCheckpoint
    from medvision.models.loading import check_checkpoint_fits, check_checkpoint_weights
    from medvision.utils.instantiate import instantiate_group
    from medvision.utils.lightning_fixes import fix_mean_sync

    fix_mean_sync()  # DDP: epoch means of self.log(sync_dist=True) over uneven counts (Lightning #21859)
    checkpoint = check_checkpoint_fits(cfg.get("ckpt_path"), config_for_checkpoint)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    model = instantiate(cfg.model, **datamodule.model_kwargs())
    original_space = getattr(datamodule, "original_space", None)
    if callable(original_space) and hasattr(model, "original_space"):
        # a segmenter scores its test cases on their label files' grids; an attribute, not a
        # hyperparameter, so checkpoints stay loadable without the data
        model.original_space = original_space()
    if hasattr(model, "tta_axes"):
        # test-time mirroring along the axes training flipped (tta=mirror), at test and predict only
        model.tta_axes = _tta_axes(cfg)
    if checkpoint is not None:
        check_checkpoint_weights(checkpoint, cfg.ckpt_path, model, config_for_checkpoint)
        del checkpoint
    # ValidateLastEpoch: the epoch where training stops validates, so a best checkpoint exists
    extra = [RunConfigInCheckpoint(config_for_checkpoint), ReseedEveryStep(), ValidateLastEpoch()]
    callbacks = instantiate_group(cfg.get("callbacks")) + extra
    loggers = instantiate_group(cfg.get("logger"))
    # The DataModules give their own samplers (medvision.data.sampling): seeded per epoch for
    # training, each case exactly once over the DDP ranks for validation/test. Lightning's
    # default would replace them with a DistributedSampler that pads (a case counted twice).
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, use_distributed_sampler=False)
    return datamodule, model, trainer, loggers


def _tta_axes(cfg: DictConfig) -> tuple[int, ...]:
    """``tta`` of the config as axes (:func:`medvision.data.transforms.tta_axes`); a bad value names the key."""
    from medvision.data.transforms import tta_axes

    augment = OmegaConf.select(cfg, "data.transforms.augment")
    try:
        return tta_axes(cfg.get("tta"), OmegaConf.to_container(augment) if augment is not None else None)
    except ValueError as err:
        raise MedvisionError(str(err), fix="tta=mirror (average over the training flips) or tta=none") from None


def log_hyperparameters(loggers: list[Any], config: dict[str, Any]) -> None:
    """Send the resolved config to every logger (W&B config, TensorBoard hparams, CSV hparams.yaml)."""
    for logger in loggers:
        logger.log_hyperparams(config)


def finish(loggers: list[Any], metrics: dict[str, float], output_dir: Path, title: str) -> None:
    """Write ``metrics.json`` atomically, print the metrics table, close the loggers."""
    from medvision.utils.io import atomic_write_json
    from medvision.utils.printing import print_metrics_table
    from medvision.utils.runs import METRICS_FILE, json_safe

    atomic_write_json(output_dir / METRICS_FILE, json_safe(dict(metrics)))
    print_metrics_table(metrics, title=title)
    for logger in loggers:
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()  # one W&B run per job, also inside an in-process multirun


def check_output_dir(
    output_dir: Path, config: dict[str, Any], finished: tuple[str, ...], resuming: bool = False
) -> None:
    """Refuse an output dir that holds a finished run's results, or that is an input of the run.

    Args:
        output_dir: the run's output folder.
        config: the resolved run config (its data inputs must not be the output).
        finished: names inside ``output_dir`` that mark results (a file, or a non-empty folder).
        resuming: a run resumed from a checkpoint may continue in its own folder.

    Raises:
        MedvisionError: the folder would be overwritten, or it is the data's folder or manifest.
    """
    from medvision.utils.io import refuse_input_as_output

    data = config.get("data") or {}
    refuse_input_as_output(
        output_dir, [data.get("root"), data.get("manifest")], what="paths.output_dir (hydra.run.dir)"
    )
    if resuming:
        return
    found = [
        name
        for name in finished
        if (output_dir / name).is_file() or ((output_dir / name).is_dir() and any((output_dir / name).iterdir()))
    ]
    if found:
        raise MedvisionError(
            f"{output_dir} already holds the results of a finished run ({', '.join(found)}); it is not overwritten",
            fix="leave hydra.run.dir to its default (a new folder per run) or pick a new one; "
            "to continue that run, pass ckpt_path=<that dir>/checkpoints/last.ckpt",
        )


def _keep_wandb_run(cfg: DictConfig, output_dir: Path, create: bool) -> None:
    """Give a W&B logger without an ``id`` the run folder's id, so a resumed run logs to the same W&B run."""
    from omegaconf import open_dict

    from medvision.utils.resume import wandb_run_id

    node = (cfg.get("logger") or {}).get("wandb")
    if node is not None and not node.get("id"):
        with open_dict(cfg):
            node.id = wandb_run_id(output_dir, create=create)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train (``cfg.train``) and test (``cfg.test``) the experiment described by ``cfg``.

    With ``ckpt_path`` (a checkpoint path, or ``last``: the newest ``last.ckpt``/``preempted.ckpt``
    of this run folder) training resumes: weights, optimiser, scheduler and loop counters come
    from the checkpoint, the folder's earlier ``metrics.json``/``config_resolved.yaml`` are kept
    as ``*.before_resume_<k>.*``, and a W&B logger continues the folder's W&B run.

    Under DDP, only rank 0 writes files; every rank returns the same metrics.

    Args:
        cfg: the composed config (``conf/train.yaml`` and its groups).

    Returns:
        The final metrics (``val/...`` of the last validation, ``test/...`` of the best
        checkpoint), also written to ``<output_dir>/metrics.json``.
    """
    from lightning.pytorch.utilities import rank_zero_only

    from medvision.planning.apply import apply_plan
    from medvision.utils.config import resolved_container
    from medvision.utils.io import atomic_write_text
    from medvision.utils.printing import print_config_tree
    from medvision.utils.resume import keep_previous_results
    from medvision.utils.seeding import seed_everything
    from medvision.utils.validate import validate_config

    output_dir = Path(cfg.paths.output_dir)
    resuming = bool(cfg.get("ckpt_path"))
    rank_zero = rank_zero_only.rank == 0  # DDP ranks > 0 are re-launched with LOCAL_RANK set
    # plan=auto: the planned keys are set before anything is read from cfg (a resumed run reuses
    # its folder's plan.json)
    plan = apply_plan(cfg)
    _keep_wandb_run(cfg, output_dir, create=rank_zero)
    config = resolved_container(cfg)
    validate_config(config)
    if rank_zero:
        check_output_dir(output_dir, config, finished=("metrics.json", "checkpoints"), resuming=resuming)
        output_dir.mkdir(parents=True, exist_ok=True)
        if resuming:
            for kept in keep_previous_results(output_dir, ("metrics.json", "config_resolved.yaml")):
                print(
                    f"resuming in {output_dir}: the earlier {kept.name.split('.before_resume')[0]}*"
                    f" is kept as {kept.name}"
                )
        if cfg.get("print_config", True):
            print_config_tree(cfg)
        atomic_write_text(output_dir / "config_resolved.yaml", OmegaConf.to_yaml(config))
        if plan is not None:
            from medvision.planning.apply import PLAN_FILE
            from medvision.utils.io import atomic_write_json

            atomic_write_json(output_dir / PLAN_FILE, plan.to_dict())
            plan.print()

    seed_everything(cfg.seed)
    datamodule, model, trainer, loggers = build(cfg, config)
    log_hyperparameters(loggers, config)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics.update(numbers(trainer.callback_metrics))
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best and cfg.get("train", True) and not trainer.fast_dev_run:
            raise MedvisionError("training saved no best checkpoint to test", fix="keep callbacks.model_checkpoint on")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(numbers(trainer.callback_metrics))
    if trainer.is_global_zero:
        finish(loggers, metrics, output_dir, title=f"{cfg.get('task_name', 'train')} metrics")
    return metrics
