"""What a run is, for the people comparing runs: its sweep (the W&B group), fold, seed, trial, the
keys its sweep varied, its overrides, the code's commit and the package versions.

One dictionary (:func:`run_info`) goes to every logger's config (under ``run``), to the W&B run's
group and to ``<run dir>/run_info.json``, which ``medvision-compare`` reads back.

Which keys a multirun varies is known only to the process that launched it: the
:class:`RecordSweep` Hydra callback (``conf/hydra/default.yaml``) writes them to
``<sweep dir>/sweep.json`` before the first job starts, whatever the sweeper and launcher (the
jobs of joblib or SLURM read the file from the shared sweep folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

#: written by :class:`RecordSweep` into the sweep folder of a multirun
SWEEP_FILE = "sweep.json"
#: written by ``medvision.train.run`` into each run folder
RUN_INFO_FILE = "run_info.json"
#: the packages whose versions a run records
PACKAGES = ("medvision", "torch", "lightning", "monai", "torchmetrics", "hydra-core", "numpy", "optuna", "wandb")


def swept_keys(overrides: Iterable[str]) -> list[str]:
    """The keys of the sweep overrides among ``overrides`` (``lr=1e-3,3e-3``, ``choice(...)``, ``range(...)``, ...).

    Args:
        overrides: command-line overrides in Hydra's grammar.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]


def sweep_name(task_name: str, sweep_dir: str | os.PathLike[str]) -> str:
    """The W&B group (and MLflow ``group`` tag) of a multirun's jobs.

    ``<task>/<sweep folder name>`` for the default ``logs/<task>/multiruns/<time>``; a sweep
    folder elsewhere keeps its parent's name too (``medvision-auto``'s ``<out>/cv`` ->
    ``train/<out name>/cv``), so that the group says which sweep it was.
    """
    path = Path(sweep_dir)
    parts = [path.name] if path.parent.name == "multiruns" else [path.parent.name, path.name]
    return "/".join([task_name, *parts])


class RecordSweep(Callback):
    """Hydra callback: at the start of a multirun, write ``<sweep dir>/sweep.json``.

    The file holds the sweep's name (the W&B group: ``<task>/<study name>`` for an Optuna study kept
    in a database, whose relaunches continue it; else :func:`sweep_name`), its raw overrides, the
    keys it varies (sweep overrides of the command line and the sweeper's search space,
    ``hydra.sweeper.params``) and the sweeper used.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from medvision.utils.io import atomic_write_json

        hydra = config.hydra
        overrides = list(hydra.overrides.task)
        keys = swept_keys(overrides)
        params = OmegaConf.select(config, "hydra.sweeper.params")
        if params:
            keys += [str(k) for k in params if str(k) not in keys]
        sweep_dir = Path(str(hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        task = str(config.get("task_name", "train"))
        # an Optuna study in a database outlives a sweep folder: a relaunch continues its group
        study = (
            OmegaConf.select(config, "hydra.sweeper.study_name")
            if OmegaConf.select(config, "hydra.sweeper.storage")
            else None
        )
        info = {
            "name": f"{task}/{study}" if study else sweep_name(task, sweep_dir),
            "swept_keys": keys,
            "overrides": overrides,
            "sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_") or ""),
        }
        atomic_write_json(sweep_dir / SWEEP_FILE, info)


def read_sweep(sweep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``<sweep_dir>/sweep.json``, or ``{}`` when the sweep wrote none (a multirun launched another way)."""
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def git_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git work tree holding ``folder``; ``{}`` outside one (or without git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": bool(status.strip())}


def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones left out) and of Python."""
    out = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def code_git_state() -> dict[str, Any]:
    """The git state of the code that runs: the launch folder's repository, else medvision's own checkout."""
    for folder in (Path.cwd(), Path(__file__).resolve().parent):
        state = git_state(folder)
        if state:
            return state
    return {}


def run_info(cfg: DictConfig | Mapping[str, Any], job_type: str = "train") -> dict[str, Any]:
    """What the run is: group, job type, sweep, fold, seed, trial, swept keys, overrides, git, versions.

    Outside a Hydra app (a notebook, a test) there is no sweep and no override: those stay empty.

    Args:
        cfg: the run's composed config.
        job_type: ``train``, ``eval`` or ``predict`` (W&B's ``job_type``).

    Returns:
        ``{"group", "job_type", "sweep_dir", "job_num", "fold", "seed", "trial", "swept_keys",
        "overrides", "git", "versions", "data_hash"}``; ``group`` is ``None`` for a single run and
        ``data_hash`` is filled in by the caller once the data are read.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    info: dict[str, Any] = {
        "group": None,
        "job_type": job_type,
        "sweep_dir": None,
        "job_num": None,
        "fold": OmegaConf.select(cfg, "data.fold") if isinstance(cfg, DictConfig) else None,
        "seed": cfg.get("seed"),
        "trial": None,
        "swept_keys": [],
        "overrides": [],
        "git": code_git_state(),
        "versions": package_versions(),
        "data_hash": None,
    }
    if not HydraConfig.initialized():
        return info
    hydra = HydraConfig.get()
    info["overrides"] = list(hydra.overrides.task)
    if hydra.mode != RunMode.MULTIRUN:
        return info
    sweep_dir = Path(str(hydra.sweep.dir))
    sweep = read_sweep(sweep_dir)
    info["sweep_dir"] = str(sweep_dir)
    info["job_num"] = int(hydra.job.num)
    info["group"] = sweep.get("name") or sweep_name(str(cfg.get("task_name", job_type)), sweep_dir)
    keys = list(sweep.get("swept_keys") or [])
    keys += [str(k) for k in (hydra.sweeper.get("params") or {}) if str(k) not in keys]
    info["swept_keys"] = keys
    if "optuna" in str(hydra.sweeper.get("_target_", "")).lower():
        info["trial"] = int(hydra.job.num)  # the Optuna sweeper numbers each job by its trial
    return info


def data_hash(files: Iterable[str | os.PathLike[str]]) -> str:
    """A short hash of a dataset's file fingerprints (file name and size, in a fixed order).

    Names and sizes, not contents or times: the same dataset copied to another machine hashes
    the same, and reading terabytes is not needed to tell two datasets apart.
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    for path in sorted((Path(f) for f in files), key=lambda p: (p.name, str(p))):
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        digest.update(f"{path.name}:{size}\n".encode())
    return digest.hexdigest()
