"""Checkpoint -> module, in one place: ``weights_only`` reads, the run config stored inside, the
LightningModule rebuilt from it, and a clear error for a checkpoint that does not fit the run
(another task, another network, other classes) instead of a state-dict dump.

A medvision checkpoint carries the run's resolved config (``medvision_config``). Its task is
the model's ``_target_`` (``SegmenterModule``, ``ClassifierModule``, ...), its network the
``_target_`` of ``model.net``; both are compared with the config about to be built before
anything is built, and the tensors with the built model before Lightning loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.config import CHECKPOINT_CONFIG_KEY, config_dir, flatten, resolved_container
from medvision.utils.errors import MedvisionError

#: ``ckpt_path`` values Lightning resolves itself (no file to check beforehand)
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
#: what a model must know of its data, stored in the checkpoint's hyperparameters
#: (the keys of the DataModules' ``model_kwargs()``; ``clinical``: the fusion classifier's fitted
#: clinical encoding, :mod:`medvision.data.clinical`; ``modalities``: the names of the input channels)
DATA_KWARGS: tuple[str, ...] = ("label_names", "in_channels", "task", "spatial_dims", "clinical", "modalities")
_FIX_OTHER_RUN = "use a checkpoint of a run of this model and network, or start a new run without ckpt_path"


def load_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code from the file is run).

    Raises:
        MedvisionError: the file is missing, unreadable, or not a medvision checkpoint.
    """
    import torch

    path = Path(ckpt_path)
    if not path.is_file():
        raise MedvisionError(
            f"checkpoint not found: {path}",
            fix="pass ckpt_path=<run dir>/checkpoints/best.ckpt (or last.ckpt) of a finished run",
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MedvisionError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {(str(err).splitlines() or [''])[0]})",
            fix="the file is corrupt or not a PyTorch checkpoint; use a .ckpt written by medvision-train",
        ) from err
    if not isinstance(checkpoint, dict) or CHECKPOINT_CONFIG_KEY not in checkpoint:
        raise MedvisionError(
            f"{path} is not a medvision checkpoint (it holds no '{CHECKPOINT_CONFIG_KEY}')",
            fix="use a .ckpt written by medvision-train",
        )
    return checkpoint


def _target(config: Mapping[str, Any], *keys: str) -> str | None:
    node: Any = config
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return str(node["_target_"]) if isinstance(node, Mapping) and "_target_" in node else None


def check_checkpoint_task(checkpoint: Mapping[str, Any], ckpt_path: str | Path, config: Mapping[str, Any]) -> None:
    """Refuse a checkpoint of another task (model ``_target_``) or network (``model.net._target_``).

    Args:
        checkpoint: the loaded checkpoint.
        ckpt_path: its path (named in the message).
        config: the resolved config about to be built.

    Raises:
        MedvisionError: the checkpoint's model or network differs from the config's.
    """
    saved = checkpoint.get(CHECKPOINT_CONFIG_KEY) or {}
    for keys, what, group in ((("model",), "model (task)", "model"), (("model", "net"), "network", "model/net")):
        theirs, ours = _target(saved, *keys), _target(config, *keys)
        if theirs and ours and not _same_object(theirs, ours):
            choices = _choices(group, theirs)
            choose = f"{group}={' or '.join(choices)}" if choices else f"{'.'.join(keys)}._target_={theirs}"
            raise MedvisionError(
                f"checkpoint {ckpt_path} holds a {theirs} {what}, but this config builds a {ours}",
                fix=f"build the checkpoint's {what.split()[0]} ({choose}), or {_FIX_OTHER_RUN}",
            )


def _same_object(a: str, b: str) -> bool:
    """Whether two ``_target_`` paths name the same object (``medvision.models.SegmenterModule``, the
    package's re-export that older checkpoints store, is ``medvision.models.segmenter.SegmenterModule``)."""
    if a == b:
        return True
    from hydra.utils import get_object

    try:
        return get_object(a) is get_object(b)
    except Exception:  # noqa: BLE001 - a path that no longer imports names another object
        return False


def _choices(group: str, target: str) -> list[str]:
    """Options of a config group (``model``, ``model/net``) whose config builds ``target``."""
    import re

    folder = config_dir() / group
    pattern = re.compile(r"^\s*_target_:\s*(\S+)\s*$", re.MULTILINE)
    return sorted(
        p.relative_to(folder).with_suffix("").as_posix()
        for p in folder.rglob("*.yaml")
        if any(_same_object(m, target) for m in pattern.findall(p.read_text()))
        and (group != "model" or p.parent == folder)
    )


def check_checkpoint_weights(
    checkpoint: Mapping[str, Any], ckpt_path: str | Path, model: Any, config: Mapping[str, Any]
) -> None:
    """Refuse a checkpoint whose tensors do not fit the built model, saying which settings differ.

    Args:
        checkpoint: the loaded checkpoint (Lightning's ``state_dict`` inside).
        ckpt_path: its path (named in the message).
        model: the LightningModule built from ``config``.
        config: the resolved config it was built from.

    Raises:
        MedvisionError: missing, unexpected or differently shaped tensors.
    """
    theirs = checkpoint.get("state_dict") or {}
    ours = model.state_dict()
    shapes = [k for k in theirs.keys() & ours.keys() if tuple(theirs[k].shape) != tuple(ours[k].shape)]
    missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    if not (shapes or missing or unexpected):
        return
    parts = []
    if shapes:
        k = sorted(shapes)[0]
        parts.append(
            f"{len(shapes)} tensor(s) of another shape (e.g. {k}: {list(theirs[k].shape)} in the "
            f"checkpoint, {list(ours[k].shape)} here)"
        )
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    saved = checkpoint.get(CHECKPOINT_CONFIG_KEY) or {}
    before, now = (
        flatten(saved.get("model", {}).get("net", {}), "model.net"),
        flatten(config.get("model", {}).get("net", {}), "model.net"),
    )
    differ = [
        f"{k}: {before.get(k, '(unset)')!r} in the checkpoint, {now.get(k, '(unset)')!r} here"
        for k in sorted(before.keys() | now.keys())
        if before.get(k) != now.get(k)
    ]
    hparams = checkpoint.get("hyper_parameters") or {}
    for key in ("label_names", "in_channels", "task"):
        if (
            key in hparams
            and key in getattr(model, "hparams", {})
            and _as_list(hparams[key]) != _as_list(model.hparams[key])
        ):
            differ.append(f"{key}: {hparams[key]!r} in the checkpoint, {model.hparams[key]!r} from this data")
    raise MedvisionError(
        f"checkpoint {ckpt_path} does not fit the model this config builds: {'; '.join(parts)}"
        + (". It differs at: " + "; ".join(differ) if differ else ""),
        fix=f"build the model the checkpoint was trained with (drop the overrides that change it), or {_FIX_OTHER_RUN}",
    )


def _as_list(value: Any) -> Any:
    """Lists and tuples compare equal when their items do (hyperparameters may be either)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def check_checkpoint_fits(ckpt_path: str | Path | None, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """Load ``ckpt_path`` (if it names a file) and check its task and network against ``config``.

    Returns:
        The loaded checkpoint for :func:`check_checkpoint_weights`, or ``None`` when there is
        no checkpoint or Lightning resolves the value itself (``last``, ``best``, ...).
    """
    if not ckpt_path or (str(ckpt_path) in LIGHTNING_CKPT_KEYWORDS and not Path(str(ckpt_path)).exists()):
        return None
    checkpoint = load_checkpoint(ckpt_path)
    check_checkpoint_task(checkpoint, ckpt_path, config)
    return checkpoint


def config_from_checkpoint(ckpt_path: str | Path) -> DictConfig:
    """Read the resolved run config stored in a medvision checkpoint (``weights_only`` load).

    Args:
        ckpt_path: a ``.ckpt`` file written by :func:`medvision.train.run`.

    Raises:
        MedvisionError: the file is missing, unreadable, or not a medvision checkpoint.
    """
    return OmegaConf.create(load_checkpoint(ckpt_path)[CHECKPOINT_CONFIG_KEY])


def module_from_checkpoint(ckpt_path: str | Path) -> tuple[Any, DictConfig]:
    """Rebuild the LightningModule of a medvision checkpoint, weights loaded, in eval mode on CPU.

    The model is built from the run config stored in the checkpoint; what it knew of the data
    (label names, channels, task, dimensionality) comes from the checkpoint's hyperparameters,
    so neither the training data nor the config tree is needed.

    Args:
        ckpt_path: a ``.ckpt`` written by ``medvision-train``.

    Returns:
        ``(module, run_config)``.

    Raises:
        MedvisionError: the file is not a readable medvision checkpoint, or its tensors do not
            fit the model its config builds.
    """
    from hydra.utils import instantiate

    checkpoint = load_checkpoint(ckpt_path)
    saved = OmegaConf.create(checkpoint[CHECKPOINT_CONFIG_KEY])
    hparams = checkpoint.get("hyper_parameters") or {}
    module = instantiate(saved.model, **{key: hparams[key] for key in DATA_KWARGS if key in hparams})
    check_checkpoint_weights(checkpoint, ckpt_path, module, resolved_container(saved))
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), saved


def problem_of(module: Any) -> str:
    """``segmentation``, ``classification`` or ``generation``: the problem a LightningModule solves.

    Raises:
        TypeError: ``module`` is not a medvision LightningModule.
    """
    problem = getattr(type(module), "problem", None)
    if not isinstance(problem, str):
        raise TypeError(f"{type(module).__name__} is not a medvision LightningModule")
    return problem
