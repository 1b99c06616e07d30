"""Hydra sweeper ``hydra/sweeper=optuna``: medvision's Optuna search (Optuna >= 4, ask-and-tell).

Hydra finds this plugin in the ``hydra_plugins`` namespace package and imports this module on every
start (``--help`` included), so it imports Hydra and OmegaConf only. It declares the configs in
Hydra's ConfigStore (``hydra/sweeper: optuna``; ``hydra/sweeper/sampler: tpe | random |
brute_force``) and hands the sweep to :class:`medvision.workflows.optuna_sweep.OptunaSearch`, which
holds the search (search space, batches, failures, resume, results).

It replaces the hydra-optuna-sweeper plugin, whose every release pins optuna<3 (with SQLAlchemy 2,
an SQLite study failed at once), and keeps its config format: ``direction``, ``storage``,
``study_name``, ``n_trials``, ``n_jobs``, ``sampler``, ``params``.

No ``from __future__ import annotations`` here: Hydra runs a plugin module before it is in
``sys.modules``, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import MISSING, DictConfig, OmegaConf

# ----------------------------------------------------------------------------- configs
# A sampler's fields are its Optuna arguments; a null one is left to Optuna's default.


@dataclass
class TPESamplerConf:
    """``hydra/sweeper/sampler=tpe``: Optuna's TPE; ``n_startup_trials`` random trials first."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = None
    # with n_jobs > 1: running trials count as bad, so parallel trials do not all sample the same spot
    constant_liar: bool | None = None


@dataclass
class RandomSamplerConf:
    """``hydra/sweeper/sampler=random``: independent uniform (or log-uniform) samples."""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class BruteForceSamplerConf:
    """``hydra/sweeper/sampler=brute_force``: every combination of a finite space once (choices and
    ranges; no ``interval``), in a seeded random order; the sweep ends when all are tried."""

    _target_: str = "optuna.samplers.BruteForceSampler"
    seed: int | None = None
    avoid_premature_stop: bool | None = None


@dataclass
class OptunaSweeperConf:
    """``hydra/sweeper=optuna`` (the keys of ``hydra.sweeper``)."""

    _target_: str = "hydra_plugins.medvision_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # the sweeper gets the sampler's config, not a sampler: a resumed study reseeds it (OptunaSearch)
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    # maximize or minimize the job's return value
    direction: str = "minimize"
    # an SQLAlchemy URL (sqlite:///optuna.db) keeping the study across launches; null: in memory
    storage: str | None = None
    study_name: str | None = None
    # complete trials the study should reach; a relaunch runs only the missing ones
    n_trials: int = 20
    # trials asked and launched together
    n_jobs: int = 1
    # the search space: key -> Hydra override grammar (interval, tag(log, interval), range, choice)
    params: dict[str, str] | None = None
    # database studies: seconds between the heartbeats of running trials; a RUNNING trial without one
    # for grace_period seconds (null: twice the interval) belongs to no live sweep and is failed
    heartbeat_interval: int | None = 60
    grace_period: int | None = None


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="medvision")
for _name, _node in (("tpe", TPESamplerConf), ("random", RandomSamplerConf), ("brute_force", BruteForceSamplerConf)):
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="medvision")


# ----------------------------------------------------------------------------- the plugin
class OptunaSweeper(Sweeper):
    """Hydra's side of the Optuna search: the launcher, the config, and the call to the search.

    Args: the fields of :class:`OptunaSweeperConf` (Hydra passes ``hydra.sweeper``).
    """

    def __init__(
        self,
        sampler: Any,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: Any = None,
        heartbeat_interval: int | None = 60,
        grace_period: int | None = None,
    ) -> None:
        def plain(node: Any) -> Any:
            return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node

        self.settings: dict[str, Any] = dict(
            sampler=plain(sampler),
            direction=direction,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs,
            params=plain(params),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from pathlib import Path

        from medvision.workflows.optuna_sweep import OptunaSearch

        assert self.config is not None
        search = OptunaSearch(**self.settings)
        return search.run(
            arguments,
            launch=self.launcher.launch,
            sweep_dir=Path(str(self.config.hydra.sweep.dir)),
            validate=self.validate_batch_is_legal,
        )
