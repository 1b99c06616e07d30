"""A plan as an editable experiment file (``medvision-plan --write my_conf/experiment/mydata.yaml``).

The file is an ordinary experiment (``# @package _global_``): it chooses the data config, sets
the data keys given on the ``medvision-plan`` command line (``data.root``, ...), and holds the
plan as ``plan.mode: fixed`` with ``plan.values`` (config key -> value, each under a comment with
the rule that chose it). ``medvision-train --config-dir my_conf experiment=mydata`` trains it as
written; any value may be edited, and a key set on the command line still wins.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.planning.plan import Plan
from medvision.utils.errors import MedvisionError


def experiment_name(path: str | Path) -> tuple[Path | None, str]:
    """``(config dir, experiment name)`` of a file under ``<config dir>/experiment/`` (dir ``None`` otherwise)."""
    path = Path(path)
    parts = path.with_suffix("").parts
    if "experiment" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("experiment")
        return Path(*parts[:at]) if at else Path("."), "/".join(parts[at + 1 :])
    return None, path.stem


def _yaml(data: dict[str, Any]) -> str:
    """Block style, but lists of numbers or strings in flow style (``[0.8, 0.8, 3.3]``)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> Any:
        flat = all(not isinstance(v, (list, dict)) for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)

    Dumper.add_representer(list, represent_list)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=120).rstrip("\n")


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def experiment_text(cfg: DictConfig, plan: Plan, data_choice: str, data_keys: list[str]) -> str:
    """The experiment file's text (see module docstring).

    Args:
        cfg: the composed config, planned keys set (values are read from it, so command-line
            values of planned keys are what the file holds).
        plan: the plan (for the rules in the comments).
        data_choice: the ``data`` config chosen (``msd``, ``nnunet``, ``csv``, ...).
        data_keys: ``data.*`` keys given on the command line, written as they were resolved.
    """
    budget = plan.budget
    lines = [
        "# @package _global_",
        f"# Plan for {plan.dataset}, written by medvision-plan on {datetime.date.today().isoformat()} for a "
        f"{budget['time_s'] / 60:.4g}-minute {budget['device'].upper()} budget ({budget['memory_gb']} GB).",
        "# Edit any value below; a key given on the medvision-train command line still wins.",
        "defaults:",
        f"  - override /data: {data_choice}",
        "  - _self_",
    ]
    data = {}
    planned = plan.overrides()
    for key in data_keys:
        if key in planned:  # written under plan.values
            continue
        value = OmegaConf.select(cfg, key)
        data[key.split(".", 1)[1]] = (
            OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        )
    if data:
        nested: dict[str, Any] = {}
        for key, value in data.items():
            node = nested
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        lines += [_yaml({"data": nested})]
    lines += ["plan:", "  mode: fixed", "  values:"]
    for choice in plan.choices:
        if not choice.keys:
            continue
        lines.append(f"    # {choice.name}: {choice.rule}")
        for key in choice.keys:
            value = OmegaConf.select(cfg, key)
            value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            lines.append(_indent(_yaml({key: value}), 4))
    return "\n".join(lines) + "\n"


def write_experiment(path: str | Path, text: str, force: bool = False) -> Path:
    """Write the experiment file atomically; an existing file is kept unless ``force``.

    Raises:
        MedvisionError: the file exists.
    """
    from medvision.utils.io import atomic_write_text

    path = Path(path)
    if path.exists() and not force:
        raise MedvisionError(f"{path} exists; it is not overwritten", fix="pick another name, or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)
