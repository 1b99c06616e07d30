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


def build(
    cfg: DictConfig, config_for_checkpoint: dict[str, Any], datamodule: Any = None
) -> tuple[Any, Any, Any, list[Any]]:
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

    ``config_for_checkpoint`` is what every checkpoint stores: the run's config as
    ``privacy.log_ids`` shows it (:func:`run_privacy`). ``datamodule``: the one :func:`run_privacy`
    built (default: instantiated here from ``cfg.data``).

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
    datamodule = datamodule if datamodule is not None else instantiate(cfg.data)
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


def run_privacy(cfg: DictConfig, output_dir: Path | None = None) -> tuple[Any, Any]:
    """The run's DataModule and what its outputs may show (``privacy``, :mod:`medvision.utils.privacy`).

    ``privacy.log_ids=auto`` asks the DataModule whether it reads DICOM. When ids are hidden, the
    W&B logger records no console output and no command line (``logger.wandb.settings``), and
    Hydra's copies of the config and overrides in ``<output_dir>/.hydra`` get their data paths
    hidden too.

    Returns:
        ``(privacy, datamodule)``.
    """
    from hydra.utils import instantiate
    from lightning.pytorch.utilities import rank_zero_only
    from omegaconf import open_dict

    from medvision.data.privacy import use_privacy
    from medvision.utils.config import resolved_container

    datamodule = instantiate(cfg.data)
    privacy = use_privacy(cfg.get("privacy"), datamodule)
    if not privacy.active:
        return privacy, datamodule
    if rank_zero_only.rank == 0:
        shown = "case pseudonyms" if privacy.mode == "pseudonym" else "no case id"
        print(f"{privacy.describe()}: logs and run files show {shown} and no data path")
    node = (cfg.get("logger") or {}).get("wandb")
    if node is not None:
        with open_dict(cfg):
            node.settings = {**(node.get("settings") or {}), **privacy.wandb_settings()}
            node._convert_ = "all"  # wandb.init takes a dict of settings, not a DictConfig
    if output_dir is not None and rank_zero_only.rank == 0:
        privacy.scrub_hydra_files(output_dir, resolved_container(cfg))
    return privacy, datamodule


def _tta_axes(cfg: DictConfig) -> tuple[int, ...]:
    """``tta`` of the config as axes (:func:`medvision.data.transforms.tta_axes`); a bad value names the key."""
    from medvision.data.transforms import tta_axes

    augment = OmegaConf.select(cfg, "data.transforms.augment")
    try:
        return tta_axes(cfg.get("tta"), OmegaConf.to_container(augment) if augment is not None else None)
    except ValueError as err:
        raise MedvisionError(str(err), fix="tta=mirror (average over the training flips) or tta=none") from None


def prepare_loggers(cfg: DictConfig, output_dir: Path, create: bool, job_type: str = "train") -> dict[str, Any]:
    """What the run is (:func:`medvision.utils.run_info.run_info`), and the logger settings that follow from it.

    Before the loggers are built: a W&B logger without an ``id`` gets the run folder's (a resumed
    run continues its W&B run); the jobs of a multirun get the sweep as their W&B ``group`` (and
    MLflow ``group`` tag) unless one is set; a job of a multirun without a ``name`` is named by
    the values of its swept keys (``model.optimizer.lr=0.001,seed=1``).

    Args:
        cfg: the run config (its ``logger`` node is edited in place).
        output_dir: the run folder.
        create: make the folder's W&B id when it has none (rank zero only).
        job_type: ``train``, ``eval`` or ``predict``.
    """
    from omegaconf import open_dict

    from medvision.utils.run_info import run_info

    _keep_wandb_run(cfg, output_dir, create=create)
    info = run_info(cfg, job_type=job_type)
    loggers = cfg.get("logger") or {}
    name = _job_name(info)
    with open_dict(cfg):
        for key in ("wandb", "mlflow"):
            node = loggers.get(key)
            if node is None:
                continue
            if key == "wandb" and info["group"] and not node.get("group"):
                node.group = info["group"]
            if key == "wandb" and node.get("offline") and node.get("log_model"):
                # Lightning refuses the pair; offline runs keep their checkpoints as files only
                print("logger.wandb.log_model: an offline W&B run keeps its checkpoints as files only (no artifacts)")
                node.log_model = False
            name_key = "name" if key == "wandb" else "run_name"
            if name and not node.get(name_key):
                node[name_key] = name
    return info


def _job_name(info: dict[str, Any]) -> str | None:
    """``key=value,...`` of a multirun job's swept keys (from its overrides), or ``None``."""
    if not info["swept_keys"]:
        return None
    values = dict(o.lstrip("+~").split("=", 1) for o in info["overrides"] if "=" in o)
    parts = [f"{k.rsplit('.', 1)[-1]}={values[k]}" for k in info["swept_keys"] if k in values]
    return ",".join(parts) or None


def log_hyperparameters(
    loggers: list[Any], config: dict[str, Any], info: dict[str, Any] | None = None, monitor: str | None = None
) -> None:
    """Send the resolved config to every logger (W&B config, TensorBoard hparams, CSV hparams.yaml).

    Args:
        loggers: the run's loggers.
        config: the resolved run config.
        info: what the run is (:func:`prepare_loggers`): logged as ``run`` beside the config, and
            as MLflow tags (``group``, ``job_type``, ``fold``, ``seed``, ``trial``, ``git_commit``).
        monitor: the metric that selects the checkpoint: W&B's summary then holds its best value
            (``define_metric`` with the direction of ``monitor_mode``), not its last one.
    """
    logged = {**config, "run": info} if info is not None else config
    for logger in loggers:
        logger.log_hyperparams(logged)
        kind = type(logger).__name__
        if kind == "WandbLogger" and monitor:
            mode = str(config.get("monitor_mode", "max"))
            logger.experiment.define_metric(monitor, summary="min" if mode == "min" else "max")
        elif kind == "MLFlowLogger" and info is not None:
            tags = {k: info[k] for k in ("group", "job_type", "fold", "seed", "trial") if info.get(k) is not None}
            tags.update({f"git_{k}": v for k, v in (info.get("git") or {}).items()})
            tags["swept_keys"] = ",".join(info.get("swept_keys") or [])
            for key, value in tags.items():
                logger.experiment.set_tag(logger.run_id, key, str(value))


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


def _data_hash(datamodule: Any) -> str | None:
    """:func:`medvision.utils.run_info.data_hash` of the DataModule's input files (``None``: it names none)."""
    from medvision.utils.run_info import data_hash

    files = datamodule.input_files() if hasattr(datamodule, "input_files") else []
    return data_hash(files) if files else None


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
    from medvision.utils.io import atomic_write_json, atomic_write_text
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
    info = prepare_loggers(cfg, output_dir, create=rank_zero, job_type=str(cfg.get("task_name", "train")))
    config = resolved_container(cfg)
    validate_config(config)
    privacy, datamodule = run_privacy(cfg, output_dir)
    shown = privacy.redact_config(config)  # what run files, loggers and checkpoints hold
    info = privacy.redact_run_info(info, config)
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
        atomic_write_text(output_dir / "config_resolved.yaml", OmegaConf.to_yaml(shown))
        if plan is not None:
            from medvision.planning.apply import PLAN_FILE

            atomic_write_json(output_dir / PLAN_FILE, plan.to_dict())
            plan.print()

    seed_everything(cfg.seed)
    datamodule, model, trainer, loggers = build(cfg, shown, datamodule)
    info["data_hash"] = _data_hash(datamodule)
    if rank_zero:
        from medvision.utils.run_info import RUN_INFO_FILE

        atomic_write_json(output_dir / RUN_INFO_FILE, info)
    log_hyperparameters(loggers, shown, info, monitor=cfg.get("monitor"))

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics.update(numbers(trainer.callback_metrics))
        best = getattr(trainer.checkpoint_callback, "best_model_score", None)
        if best is not None and cfg.get("monitor"):
            # the value that selected the tested checkpoint (W&B's summary holds it too, as the max/min)
            metrics[f"{cfg.monitor}_best"] = float(best)
            for logger in loggers:
                logger.log_metrics({f"{cfg.monitor}_best": float(best)})
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best and cfg.get("train", True) and not trainer.fast_dev_run:
            raise MedvisionError("training saved no best checkpoint to test", fix="keep callbacks.model_checkpoint on")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(numbers(trainer.callback_metrics))
    if trainer.is_global_zero:
        finish(loggers, metrics, output_dir, title=f"{cfg.get('task_name', 'train')} metrics")
    return metrics
