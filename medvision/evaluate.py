"""``medvision-eval ckpt_path=...``: test a checkpoint on the test split of the run that made it.

Data, model and seed come from the config stored inside the checkpoint (so the split and the
preprocessing are the run's own); trainer, loggers and paths come from ``conf/eval.yaml``.
Dotted command-line overrides of ``data.*``/``model.*`` (e.g. ``data.root=/new/place``) apply
on top of the stored config.

The model is built by :func:`medvision.train.build`, as in training, so a segmenter's test
metrics are the run's own: computed against each case's label file on its own grid
(:mod:`medvision.data.original_space`), with the preprocessed-space Dice as
``test_preprocessed/...``.

``ckpt_path=[a.ckpt,b.ckpt]`` or an ensemble folder evaluates an ensemble of segmenters
(:func:`evaluate_ensemble`): the test split of the first member's run, each case predicted as
``medvision-predict`` does (each member's own preprocessing and TTA, probabilities averaged on the
case's grid, the folder's postprocessing applied) and scored against its label file.
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
    if is_ensemble(cfg.ckpt_path):
        from medvision.inference.ensemble import member_checkpoints

        cfg = cfg.copy()
        cfg.ckpt_path = str(member_checkpoints(cfg.ckpt_path)[0][0])
    saved = config_from_checkpoint(cfg.ckpt_path)
    callbacks = {
        k: v
        for k, v in (saved.get("callbacks") or {}).items()
        if not (isinstance(v, DictConfig) and str(v.get("_target_", "")).endswith(_TRAINING_ONLY))
    }
    merged = OmegaConf.create({"data": saved.data, "model": saved.model, "seed": saved.seed, "callbacks": callbacks})
    if cfg.get("tta") is None:  # the run's own test-time augmentation (runs before it existed: the default now)
        merged.tta = saved.get("tta") or "mirror"
    if merged.data.get("audit_report"):  # the audit report of an evaluation goes to its own folder
        merged.data.audit_report = "${paths.output_dir}/data_audit.json"
    if merged.data.get("splits_report"):  # so is its split: the training run's splits.json is kept
        merged.data.splits_report = "${paths.output_dir}/splits.json"
    if overrides:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    _require_data_paths(merged, cfg.ckpt_path)
    base = cfg.copy()
    OmegaConf.set_struct(base, False)
    out = OmegaConf.merge(base, merged)
    out.ckpt_path = str(Path(cfg.ckpt_path).resolve())
    OmegaConf.set_struct(out, True)
    return out


def _require_data_paths(merged: DictConfig, ckpt_path: object) -> None:
    """Refuse data paths the training run hid (``privacy.log_ids``: ``<private:...>`` in its checkpoint)
    that the command line did not give again."""
    from medvision.utils.config import flatten
    from medvision.utils.privacy import is_private_token

    hidden = [k for k, v in flatten(OmegaConf.to_container(merged.data)).items() if is_private_token(v)]
    if hidden:
        keys = ", ".join(f"data.{k}" for k in hidden)
        raise MedvisionError(
            f"the checkpoint {ckpt_path} does not say where its data lie: {keys} hidden by the training run's "
            "privacy.log_ids (its logs and checkpoints hold no data path)",
            fix=f"give them again: medvision-eval ckpt_path={ckpt_path} "
            + " ".join(f"data.{k}=<path>" for k in hidden),
        )


def is_ensemble(ckpt_path: object) -> bool:
    """Whether ``ckpt_path`` names several checkpoints (a list) or an ensemble folder."""
    from omegaconf import ListConfig

    return isinstance(ckpt_path, (list, tuple, ListConfig)) or Path(str(ckpt_path)).expanduser().is_dir()


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` and return its test metrics (also written to ``metrics.json``).

    Args:
        cfg: the composed ``eval`` config.
        overrides: dotted ``data.*``/``model.*`` overrides (default: those of the command line).
    """
    if not OmegaConf.is_missing(cfg, "ckpt_path") and cfg.ckpt_path and is_ensemble(cfg.ckpt_path):
        return evaluate_ensemble(cfg, overrides)
    from medvision.train import build, check_output_dir, finish, log_hyperparameters, prepare_loggers, run_privacy
    from medvision.utils.config import resolved_container
    from medvision.utils.runs import numbers
    from medvision.utils.seeding import seed_everything
    from medvision.utils.validate import validate_config

    run_cfg = eval_config(cfg, _cli_overrides() if overrides is None else overrides)
    output_dir = Path(run_cfg.paths.output_dir)
    info = prepare_loggers(run_cfg, output_dir, create=True, job_type="eval")
    config = resolved_container(run_cfg)
    validate_config(config)
    privacy, datamodule = run_privacy(run_cfg, output_dir)
    shown = privacy.redact_config(config)  # what the loggers hold
    check_output_dir(output_dir, config, finished=("metrics.json",))
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(run_cfg.seed)
    datamodule, model, trainer, loggers = build(run_cfg, shown, datamodule)
    log_hyperparameters(loggers, shown, privacy.redact_run_info(info, config))
    trainer.test(model, datamodule=datamodule, ckpt_path=run_cfg.ckpt_path, weights_only=True)
    metrics = numbers(trainer.callback_metrics)
    if trainer.is_global_zero:
        finish(loggers, metrics, output_dir, title="eval metrics")
    return metrics


def evaluate_ensemble(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, float]:
    """Test an ensemble of segmenters on the test split of its first member's run.

    Each test case is predicted as ``medvision-predict`` predicts it
    (:func:`medvision.inference.predict.case_probabilities`, then the ensemble folder's
    postprocessing) and scored against its label file on its own grid: ``test/dice_<label>``,
    ``test/dice_mean``, ``test/hd95_...``, as a single checkpoint's test is.

    Raises:
        MedvisionError: the members are not segmenters, or differ in problem or labels.
    """
    import numpy as np
    import torch
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage
    from rich.progress import track

    from medvision.inference.postprocess import apply_postprocessing
    from medvision.inference.predict import Case, case_probabilities, load_members
    from medvision.metrics.segmentation import SegmentationMetrics
    from medvision.train import check_output_dir, finish, log_hyperparameters, prepare_loggers, run_privacy
    from medvision.utils.config import resolved_container
    from medvision.utils.instantiate import instantiate_group
    from medvision.utils.seeding import seed_everything

    run_cfg = eval_config(cfg, _cli_overrides() if overrides is None else overrides)
    spec = cfg.copy()
    OmegaConf.set_struct(spec, False)
    spec.tta = run_cfg.get("tta")
    members, postprocessing = load_members(spec, command="medvision-eval")
    if members[0].problem != "segmentation":
        raise MedvisionError(
            f"medvision-eval ensembles segmenters; {members[0].path} is a {members[0].problem} model",
            fix="use medvision-predict ckpt_path=[...] for an ensemble of classifiers",
        )
    output_dir = Path(run_cfg.paths.output_dir)
    info = prepare_loggers(run_cfg, output_dir, create=True, job_type="eval")
    config = resolved_container(run_cfg)
    config["ensemble"] = {"members": [str(m.path) for m in members], "postprocessing": postprocessing}
    check_output_dir(output_dir, config, finished=("metrics.json",))
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(run_cfg.seed)
    privacy, datamodule = run_privacy(run_cfg, output_dir)
    datamodule.prepare_data()
    datamodule.setup("test")
    loggers = instantiate_group(run_cfg.get("logger"))
    log_hyperparameters(loggers, privacy.redact_config(config), privacy.redact_run_info(info, config))
    label_names = list(members[0].module.label_names)
    metrics = SegmentationMetrics(label_names, hd95=True)
    read_label = Compose([LoadImage(image_only=True), EnsureChannelFirst()])
    device = torch.device("cpu")
    for sample in track(list(datamodule.samples("test")), description="ensemble test", transient=True):
        image = sample["image"]
        first = Path(image[0] if isinstance(image, (list, tuple)) else image)
        case = Case(str(sample.get("id", first.name)), first, image=image)
        probabilities, _ = case_probabilities(members, case, device)
        mask = apply_postprocessing(probabilities.argmax(0), postprocessing)
        label = read_label(sample["label"])
        spacing = [float(v) for v in torch.as_tensor(label.pixdim).flatten().tolist()][: label.ndim - 1]
        onehot = np.eye(len(label_names), dtype=np.float32)[mask].transpose(mask.ndim, *range(mask.ndim))
        metrics.update(torch.as_tensor(onehot)[None], label.as_tensor()[None], spacing=spacing)
    values = metrics.compute("test")
    for logger in loggers:
        logger.log_metrics(values)
    finish(loggers, values, output_dir, title="ensemble eval metrics")
    return values
