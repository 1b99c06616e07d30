"""``plan=auto``: plan a run from its data and budget, and set the planned keys the user left alone.

A key set on the command line (``data.patch_size=[96,96,96]``, ``model/net=segresnet``), a key
inside it or around it, and every key listed in ``plan.keep`` stay as the user set them; every
other planned key (:meth:`medvision.planning.plan.Plan.overrides`) is set in the config before
anything is built, so the run's ``config_resolved.yaml`` holds the plan it trained with and
``plan.json`` beside it says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from medvision.planning.plan import Plan, make_plan

#: the file a planned run writes into its output folder
PLAN_FILE = "plan.json"


def command_line_keys() -> list[str]:
    """The config keys set on the command line (Hydra's task overrides).

    A nested group choice (``model/net=segresnet``) keeps its whole node (``model.net``); a
    top-level one (``data=msd``, ``trainer=gpu``) chooses what is planned, and keeps nothing.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    hydra_cfg = HydraConfig.get()
    groups = set(hydra_cfg.runtime.choices or {})
    keys = []
    for override in hydra_cfg.overrides.task:
        name = override.split("=", 1)[0].lstrip("+~")
        name = name.split("@", 1)[1] if "@" in name else name
        if name in groups and "/" not in name:
            continue
        keys.append(name.replace("/", "."))
    return keys


def _touches(a: str, b: str) -> bool:
    """Whether key ``a`` is ``b``, inside it, or holds it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def kept_keys(cfg: DictConfig) -> list[str]:
    """The keys the plan must not change: the command line's and ``plan.keep``."""
    keep = [str(k) for k in (cfg.plan.get("keep") or [])]
    return command_line_keys() + keep


def plan_for(cfg: DictConfig, progress: bool = True) -> Plan:
    """Fingerprint the training and validation cases of ``cfg.data`` and plan within ``cfg.plan``'s budget.

    The test split is never read for the plan.
    """
    from hydra.utils import instantiate

    from medvision.data.fingerprint import fingerprint
    from medvision.data.transforms import tta_axes

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    splits, info = datamodule.splits, datamodule.info
    records = splits["train"] + splits["val"]
    fp = fingerprint(
        records,
        info.modalities,
        info.label_names,
        name=info.name,
        axcodes=str(OmegaConf.select(cfg, "data.transforms.axcodes", default="RAS")),
        cache_dir=cfg.plan.get("cache_dir"),
        progress=progress,
    )
    trainer = cfg.get("trainer") or {}
    augment = OmegaConf.select(cfg, "data.transforms.augment")
    axes = tta_axes(cfg.get("tta"), OmegaConf.to_container(augment) if augment is not None else None)
    return make_plan(
        fp,
        num_train=len(splits["train"]),
        num_val=len(splits["val"]),
        num_test=len(splits["test"]),
        time_budget=cfg.plan.get("time_budget", "auto"),
        memory_gb=cfg.plan.get("memory_gb", "auto"),
        accelerator=str(trainer.get("accelerator", "cpu")),
        precision=str(trainer.get("precision", "32-true")),
        cache_dir=cfg.plan.get("cache_dir"),
        test_passes=2 ** len(axes),
    )


def set_planned(cfg: DictConfig, values: dict[str, Any], keep: list[str]) -> dict[str, Any]:
    """Set every planned key of ``values`` in ``cfg`` that no key of ``keep`` touches (a node is
    replaced, not merged); return those set."""
    applied = {}
    with open_dict(cfg):
        for key, value in values.items():
            if any(_touches(key, k) for k in keep):
                continue
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
            applied[key] = value
    return applied


def apply_plan(cfg: DictConfig) -> Plan | None:
    """Set the planned keys the user left alone (see module docstring).

    ``plan.mode``: ``auto`` plans the run now (a run resumed in its own folder reuses the folder's
    ``plan.json``, so a changed cache or machine cannot change a run half-way); ``fixed`` sets
    ``plan.values`` (a written plan, ``medvision-plan --write``: key -> value, edited or not);
    ``none`` changes nothing.

    Returns:
        The plan made now, or ``None``.
    """
    node = cfg.get("plan")
    mode = node.get("mode", "none") if node is not None else "none"
    if mode == "fixed":
        values = OmegaConf.to_container(node.get("values") or {}, resolve=True)
        assert isinstance(values, dict)
        set_planned(cfg, {str(k): v for k, v in values.items()}, kept_keys(cfg))
        return None
    if mode != "auto":
        return None
    earlier = Path(str(cfg.paths.output_dir)) / PLAN_FILE
    if cfg.get("ckpt_path") and earlier.is_file():  # a resumed run keeps the plan it started with
        set_planned(cfg, json.loads(earlier.read_text())["overrides"], kept_keys(cfg))
        return None
    plan = plan_for(cfg)
    set_planned(cfg, plan.overrides(), kept_keys(cfg))
    return plan
