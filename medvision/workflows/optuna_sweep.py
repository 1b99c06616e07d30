"""Hyperparameter search with Optuna (>= 4) through Hydra's launchers: the engine of ``hydra/sweeper=optuna``.

The Hydra plugin (``hydra_plugins/medvision_optuna_sweeper``) only declares the configs and hands
the sweep to :class:`OptunaSearch`, which runs Optuna's ask-and-tell loop:

- **Search space**: ``hydra.sweeper.params`` and the sweep overrides of the command line, in Hydra's
  override grammar (:func:`search_space`): ``interval(a, b)`` is a float, ``tag(log, interval(a, b))``
  a log-uniform float, ``range(a, b[, step])`` an integer (stop excluded), ``choice(...)`` and
  ``a,b,c`` a categorical. A command-line override of a key replaces that key's entry of ``params``.
- **Batches**: ``n_jobs`` trials are asked, launched together through the configured launcher
  (basic, joblib, submitit), then told. A batch of consecutive trial numbers starts at
  ``initial_job_idx`` = its first trial's number, so ``hydra.job.num`` is the Optuna trial number
  and the trial's folder is ``<sweep dir>/<trial number>``; otherwise each trial is launched alone
  with its own number.
- **Objective**: the job's return value (``medvision-train`` returns the metric that
  ``optimized_metric`` names).
- **Failures**: a job that raised (or returned no number) is told as ``TrialState.FAIL``, one line
  says which trial failed and why (a bug's traceback follows), and the sweep goes on.
- **Database studies resume**: with ``storage`` (an SQLAlchemy URL such as ``sqlite:///optuna.db``)
  and ``study_name``, the study is loaded if it exists, and a launch runs ``n_trials`` minus the
  trials already COMPLETE (see :meth:`OptunaSearch.run` for why failed ones do not count).
- **Results**: after every batch, ``<sweep dir>/optimization_results.yaml`` and two pictures
  (:func:`write_results`, :func:`draw_pictures`), so a killed sweep still has them.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvision.utils.errors import HydraUserError, MedvisionError

if TYPE_CHECKING:
    import optuna
    from hydra.core.override_parser.types import Override
    from hydra.core.utils import JobReturn
    from optuna.distributions import BaseDistribution

log = logging.getLogger(__name__)

#: written into the sweep folder after every batch
RESULTS_FILE = "optimization_results.yaml"
HISTORY_PICTURE = "optimization_history.png"
IMPORTANCE_PICTURE = "param_importances.png"

#: ``launch(batch, initial_job_idx)``: Hydra's ``Launcher.launch``
Launch = Callable[[Sequence[Sequence[str]], int], Sequence["JobReturn"]]
#: ``validate(batch)``: Hydra's ``Sweeper.validate_batch_is_legal`` (raises if an override list does not compose)
Validate = Callable[[Sequence[Sequence[str]]], None]


# ----------------------------------------------------------------------------- search space
def search_space(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The Optuna distributions of the sweep, and the fixed overrides every trial gets.

    Args:
        params: ``hydra.sweeper.params``: key -> value in Hydra's override grammar (a sweep such as
            ``choice(...)``, or a plain value that every trial gets).
        arguments: the command line's overrides; its sweeps join the search space and its plain
            values are fixed. A key given here replaces that key's entry of ``params``.

    Returns:
        ``({name: distribution}, fixed overrides)``; a name is the override's key as written
        (``model.optimizer.lr``, ``+trainer.foo``).

    Raises:
        HydraUserError: a sweep this sweeper cannot search (e.g. a glob).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    by_key: dict[str, Override] = {}
    for override in [*parser.parse_overrides(lines), *parser.parse_overrides(list(arguments))]:
        by_key.pop(override.key_or_group, None)  # the command line comes last and wins
        by_key[override.key_or_group] = override
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in by_key.values():
        if override.is_sweep_override():
            space[override.get_key_element()] = _distribution(override, parser)
        else:
            fixed.append(override.input_line)
    return space, fixed


def _distribution(override: Override, parser: Any) -> BaseDistribution:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, IntervalSweep):
        return FloatDistribution(value.start, value.end, log="log" in value.tags)
    if isinstance(value, RangeSweep):
        numbers = list(override.sweep_iterator())
        if not numbers:
            raise HydraUserError(
                f"{override.input_line}: the range is empty", fix="give range(start, stop) a stop > start"
            )
        if all(isinstance(n, int) for n in numbers) and value.step > 0:
            return IntDistribution(numbers[0], numbers[-1], step=int(value.step))
        return CategoricalDistribution(numbers)
    if isinstance(value, ChoiceSweep):
        # Optuna's choices are numbers, booleans or strings: a list, dict or string is kept as its
        # override text ("[32,32]"), which is also what the trial's override and the results show
        choices = []
        for text in override.sweep_string_iterator():
            parsed = parser.parse_override(f"x={text}").value()
            choices.append(parsed if isinstance(parsed, (bool, int, float)) else text)
        return CategoricalDistribution(choices)
    raise HydraUserError(
        f"{override.input_line}: the Optuna sweeper cannot search a {type(value).__name__}",
        fix="use interval(a, b), tag(log, interval(a, b)), range(a, b) or choice(...)",
    )


def override_value(value: Any) -> str:
    """A sampled value as override text: numbers and booleans as Hydra reads them, strings as they are
    (categorical strings are already override text, see :func:`search_space`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides of a trial's parameters."""
    return [f"{name}={override_value(value)}" for name, value in params.items()]


# ----------------------------------------------------------------------------- results
def write_results(study: optuna.Study, sweep_dir: Path) -> dict[str, Any]:
    """Write ``<sweep_dir>/optimization_results.yaml`` (atomically) and return what it holds.

    Keys: ``name`` (the study), ``best_params`` (parameter -> value as override text or number),
    ``best_value``, ``best_trial`` (its number), ``best_trial_dir`` (its run folder), ``n_complete``
    and ``n_failed`` (trials of the whole study, earlier launches included). The ``best_*`` keys
    are null while no trial is complete.
    """
    import yaml
    from optuna.trial import TrialState

    from medvision.utils.io import atomic_write_text

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    results: dict[str, Any] = {
        "name": study.study_name,
        "best_params": None,
        "best_value": None,
        "best_trial": None,
        "best_trial_dir": None,
        "n_complete": len(complete),
        "n_failed": len(failed),
    }
    if complete:
        best = study.best_trial
        results.update(
            best_params=dict(best.params),
            best_value=float(best.value) if best.value is not None else None,
            best_trial=best.number,
            best_trial_dir=best.user_attrs.get("output_dir"),
        )
    atomic_write_text(sweep_dir / RESULTS_FILE, yaml.safe_dump(results, sort_keys=False))
    return results


def draw_pictures(study: optuna.Study, sweep_dir: Path) -> dict[str, str]:
    """Draw the optimisation history and the parameter importances (PED-ANOVA, which needs no other
    package) with ``optuna.visualization.matplotlib`` into the sweep folder.

    The history needs a complete trial, the importances two and a searched parameter.

    Returns:
        Picture name -> ``"written"``, or why it was not drawn.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    from medvision.utils.io import atomic_write_bytes

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    status: dict[str, str] = {}
    plots: list[tuple[str, Callable[[], Any]]] = []
    if complete:
        plots.append((HISTORY_PICTURE, lambda: plot_optimization_history(study)))
    else:
        status[HISTORY_PICTURE] = "not drawn: no trial is complete"
    if len(complete) >= 2 and any(t.params for t in complete):
        evaluator = PedAnovaImportanceEvaluator()
        plots.append((IMPORTANCE_PICTURE, lambda: plot_param_importances(study, evaluator=evaluator)))
    else:
        status[IMPORTANCE_PICTURE] = f"not drawn: parameter importances need 2 complete trials ({len(complete)})"
    for name, plot in plots:
        # Optuna's plots switch pyplot to its "ggplot" style; rc_context puts the settings back, so
        # the pictures of the trials that run after (in this process) keep medvision's look
        with warnings.catch_warnings(), plt.rc_context():
            warnings.simplefilter("ignore", ExperimentalWarning)
            axes = plot()
            figure = axes.figure
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
        atomic_write_bytes(sweep_dir / name, buffer.getvalue())
        status[name] = "written"
    return status


# ----------------------------------------------------------------------------- the search
class _Heartbeat:
    """Record the heartbeat of a batch's trials in a database study every ``heartbeat_interval`` seconds,
    from just after they are asked until they are told.

    Optuna's own heartbeat thread runs only inside ``study.optimize``; with ask-and-tell the
    sweeper keeps it. A RUNNING trial whose heartbeat is older than the storage's grace period
    belongs to no live sweep: :func:`optuna.storages.fail_stale_trials` (called by every launch
    at its start and after each batch) fails it. (Optuna leaves alone a RUNNING trial that never had
    a heartbeat: one killed in the instant between its ``ask`` and the first beat.)
    """

    def __init__(
        self, storage: optuna.storages.RDBStorage | None, study: optuna.Study, trials: Sequence[optuna.Trial]
    ) -> None:
        self.storage = storage
        self.interval = storage.get_heartbeat_interval() if storage is not None else None
        self.trial_ids: list[int] = []
        if storage is not None and self.interval:
            study_id = storage.get_study_id_from_name(study.study_name)
            self.trial_ids = [storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in trials]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        assert self.storage is not None and self.interval is not None
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class OptunaSearch:
    """An Optuna study run through a Hydra launcher (the settings of ``hydra.sweeper``).

    Args:
        sampler: the sampler's config: ``_target_`` (an Optuna sampler class) and its arguments;
            ``None`` values are left to Optuna's defaults.
        direction: ``maximize`` or ``minimize`` (the job's return value).
        storage: an SQLAlchemy URL (``sqlite:///optuna.db``) keeping the study across launches, or
            ``None`` (in memory: the study ends with the sweep).
        study_name: the study's name in ``storage`` (``None``: a new name each launch).
        n_trials: the study's number of complete trials to reach.
        n_jobs: trials asked and launched together (raise it with a parallel launcher).
        params: the search space (:func:`search_space`).
        heartbeat_interval: seconds between the heartbeats of running trials in a database study
            (``None``: no heartbeat; trials of a killed sweep stay RUNNING).
        grace_period: seconds without a heartbeat after which a RUNNING trial is failed
            (``None``: twice ``heartbeat_interval``).
    """

    def __init__(
        self,
        *,
        sampler: Mapping[str, Any],
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: Mapping[str, Any] | None,
        heartbeat_interval: int | None = 60,
        grace_period: int | None = None,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise HydraUserError(
                f"hydra.sweeper.direction={direction!r}: expected maximize or minimize",
                fix="hydra.sweeper.direction=maximize (or minimize)",
            )
        if n_trials < 0 or n_jobs < 1:
            raise HydraUserError(
                f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: expected n_trials >= 0 and n_jobs >= 1",
                fix="hydra.sweeper.n_trials=20 hydra.sweeper.n_jobs=1",
            )
        self.sampler = dict(sampler)
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = dict(params or {})
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period

    # -- the study
    def _make_sampler(self, seed_offset: int) -> optuna.samplers.BaseSampler:
        from hydra.utils import get_class

        kwargs = {k: v for k, v in self.sampler.items() if k != "_target_" and v is not None}
        if seed_offset and kwargs.get("seed") is not None:
            kwargs["seed"] = int(kwargs["seed"]) + seed_offset
        return get_class(str(self.sampler["_target_"]))(**kwargs)

    def _rdb_storage(self) -> optuna.storages.RDBStorage | None:
        import optuna

        if self.storage is None:
            return None
        # the callback for a trial failed as stale: failed_trial_callback until Optuna 4.x renamed it
        parameters = inspect.signature(optuna.storages.RDBStorage).parameters
        callback = next(n for n in ("heartbeat_stale_trial_callback", "failed_trial_callback") if n in parameters)
        return optuna.storages.RDBStorage(
            self.storage,
            heartbeat_interval=self.heartbeat_interval or None,
            grace_period=self.grace_period,
            **{callback: _say_stale},
        )

    def _open_study(self, storage: optuna.storages.RDBStorage | None) -> optuna.Study:
        import optuna

        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            direction=self.direction,
            sampler=self._make_sampler(0),
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:
            raise HydraUserError(
                f"study {study.study_name!r} in {self.storage} is a {study.direction.name.lower()} study, "
                f"hydra.sweeper.direction is {self.direction}",
                fix="give this search its own hydra.sweeper.study_name",
            )
        # A relaunch with the sampler's seed would sample its first trials again (a seeded TPE starts
        # with the same random trials): the seed moves on by the number of trials already in the study.
        if study.trials:
            study.sampler = self._make_sampler(len(study.trials))
        return study

    # -- one trial's outcome
    def _tell(self, study: optuna.Study, trial: optuna.Trial, returned: JobReturn | BaseException) -> None:
        """Tell ``trial``'s outcome: its value, or FAIL with the reason (a user attribute ``error``)."""
        from hydra.errors import CompactHydraException
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        error: BaseException | None = None
        value: float | None = None
        if isinstance(returned, BaseException):
            error = returned
        else:
            try:
                raw = returned.return_value  # raises what the job raised (Hydra names its overrides on stderr)
            except Exception as err:  # noqa: BLE001 - whatever a job raised is its trial's outcome, recorded below
                error = err
            else:
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    error = ValueError(
                        f"the job returned {raw!r}, not a number "
                        "(medvision-train returns the metric that optimized_metric names)"
                    )
                else:
                    if math.isnan(value):
                        error = ValueError("the job returned NaN")
        reason = None
        if error is not None:
            reason = f"{type(error).__name__}: {error}" if not isinstance(error, MedvisionError) else str(error)
        output_dir = None if isinstance(returned, BaseException) else _output_dir(returned)
        try:
            for key, note in (("output_dir", output_dir), ("error", reason and reason[:2000])):
                if note:
                    trial.set_user_attr(key, note)
        except UpdateFinishedTrialError:  # failed by another process meanwhile: its heartbeat came too late
            pass
        if error is None:
            finished = study.tell(trial, value, skip_if_finished=True)
            if finished.state != TrialState.COMPLETE:
                log.warning("Trial %d returned %s but was already marked %s", trial.number, value, finished.state.name)
                return
            best = study.best_trial
            log.info("Trial %d: %s (best: trial %d, %s)", trial.number, value, best.number, best.value)
            return
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        # a user mistake (medvision's, or a config Hydra cannot compose) is its message; a bug keeps its
        # traceback (when the job ran in this process)
        bug = not isinstance(error, (MedvisionError, CompactHydraException)) and error.__traceback__ is not None
        log.warning("Trial %d failed, the sweep goes on: %s", trial.number, reason, exc_info=error if bug else None)

    # -- the loop
    def run(
        self, arguments: Sequence[str], launch: Launch, sweep_dir: Path, validate: Validate | None = None
    ) -> dict[str, Any]:
        """Run the study's remaining trials in batches, telling each outcome; write the results.

        A launch runs ``n_trials`` minus the study's COMPLETE trials: the study ends with
        ``n_trials`` complete trials, so a relaunch of the same command tries again what failed or
        was killed (a trial that failed on a bad value may well succeed on the next sample; Optuna's
        ``MaxTrialsCallback`` counts COMPLETE trials the same way). Failed trials of this launch
        are not retried within it: one launch never runs more than ``n_trials`` trials, so a search
        whose every trial fails ends (with an error, when the study then holds no complete trial:
        failing every time is a mistake to fix, e.g. an ``optimized_metric`` the run does not log).

        Trials left RUNNING by a killed sweep are failed by Optuna's heartbeat (database studies,
        ``heartbeat_interval``): before each batch, :func:`optuna.storages.fail_stale_trials` fails
        the RUNNING trials whose heartbeat is older than the grace period, i.e. trials no live
        sweep owns, so several sweeps may share a study.

        Args:
            arguments: the command line's overrides (Hydra's ``task`` overrides).
            launch: Hydra's ``Launcher.launch``.
            sweep_dir: where the results and pictures go.
            validate: composes each trial's overrides before launch (``Sweeper.validate_batch_is_legal``).

        Returns:
            What :func:`write_results` wrote.

        Raises:
            HydraUserError: this launch ran trials and the study has no complete one.
        """
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        space, fixed = search_space(self.params, arguments)
        if validate is not None:  # a typo in a key fails here, before the study holds a trial
            validate([[*fixed, *trial_overrides(_first_values(space))]])
        with _quiet_optuna():
            storage = self._rdb_storage()
            study = self._open_study(storage)
            fail_stale_trials(study)
        # a sampler that has tried its whole space (BruteForceSampler, GridSampler) calls study.stop(),
        # which raises outside study.optimize(); here it ends the sweep after the batch
        exhausted = threading.Event()
        study.stop = exhausted.set  # type: ignore[method-assign]
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        todo = max(self.n_trials - done, 0)
        where = f"{self.storage}, " if self.storage else ""
        log.info(
            "Optuna study %r (%s%s, %s): %d of %d trials complete, %d to run, %d at a time",
            study.study_name,
            where,
            type(study.sampler).__name__,
            self.direction,
            done,
            self.n_trials,
            todo,
            self.n_jobs,
        )
        for name, distribution in space.items():
            log.info("  %s: %s", name, distribution)
        sweep_dir = Path(sweep_dir)
        report = None
        ran: list[int] = []
        while todo > 0 and not exhausted.is_set():
            size = min(self.n_jobs, todo)
            with _quiet_optuna():
                trials = [study.ask(space) for _ in range(size)]
            ran += [t.number for t in trials]
            with _Heartbeat(storage, study, trials):
                self._run_batch(study, trials, fixed, launch, validate)
            todo -= size
            with _quiet_optuna():
                fail_stale_trials(study)
            report = self._report(study, sweep_dir)
        if exhausted.is_set():
            log.info("The sampler has tried its whole search space: the sweep ends")
        results, pictures = report or self._report(study, sweep_dir)
        if results["best_trial"] is not None:
            log.info(
                "Best trial %d (%s): %s with %s",
                results["best_trial"],
                self.direction,
                results["best_value"],
                results["best_params"],
            )
        log.info(
            "%s: %d complete, %d failed trials", sweep_dir / RESULTS_FILE, results["n_complete"], results["n_failed"]
        )
        for name, status in pictures.items():
            log.info("%s: %s", sweep_dir / name, status)
        if ran and not results["n_complete"]:
            first = study.trials[ran[0]].user_attrs.get("error", "see above")
            raise HydraUserError(
                f"all {len(ran)} trials of study {study.study_name!r} failed; trial {ran[0]}: {first}",
                fix="fix what the trials' errors name, then run the same command again",
            )
        return results

    def _run_batch(
        self,
        study: optuna.Study,
        trials: list[optuna.Trial],
        fixed: list[str],
        launch: Launch,
        validate: Validate | None,
    ) -> None:
        """Launch one batch of asked trials and tell their outcomes (a trial that does not compose fails alone)."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException
        from optuna.trial import TrialState

        runnable: list[tuple[optuna.Trial, list[str]]] = []
        for trial in trials:
            overrides = [*fixed, *trial_overrides(trial.params)]
            trial.set_user_attr("overrides", overrides)
            try:
                if validate is not None:
                    validate([overrides])
            except (HydraException, OmegaConfBaseException) as err:
                self._tell(study, trial, err)
                continue
            runnable.append((trial, overrides))
        if not runnable:
            return
        numbers = [t.number for t, _ in runnable]
        try:
            if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
                returns = list(launch([o for _, o in runnable], numbers[0]))
            else:
                returns = [r for trial, o in runnable for r in launch([o], trial.number)]
        except BaseException:
            # the launcher itself failed (or Ctrl-C): no trial of the batch stays RUNNING
            for trial, _ in runnable:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        for (trial, _), returned in zip(runnable, returns, strict=True):
            self._tell(study, trial, returned)

    def _report(self, study: optuna.Study, sweep_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
        return write_results(study, sweep_dir), draw_pictures(study, sweep_dir)


def _say_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's callback for a trial failed by :func:`optuna.storages.fail_stale_trials`."""
    log.warning(
        "Trial %d was RUNNING without a heartbeat for longer than the grace period (its sweep was killed): marked FAIL",
        trial.number,
    )


def _first_values(space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """One value of each distribution (its first choice or low end), to compose the sweep once up front."""
    from optuna.distributions import CategoricalDistribution

    return {
        name: dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low  # type: ignore[attr-defined]
        for name, dist in space.items()
    }


def _output_dir(returned: JobReturn) -> str | None:
    """The run folder of a finished job (``hydra.runtime.output_dir``), if the launcher sent it back."""
    from omegaconf import OmegaConf

    if returned.hydra_cfg is None:
        return None
    node = returned.hydra_cfg
    value = OmegaConf.select(node, "hydra.runtime.output_dir") or OmegaConf.select(node, "runtime.output_dir")
    return str(value) if value else None


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Without Optuna's warnings that do not apply here: the experimental features chosen on purpose
    (``fail_stale_trials``, samplers such as BruteForceSampler) and the heartbeat "supposed to be
    used with Study.optimize" (the sweeper keeps the heartbeat itself, :class:`_Heartbeat`)."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield
