"""Sweeps: medvision's Optuna sweeper (``hydra_plugins/medvision_optuna_sweeper``, Optuna >= 4) run for
real through ``medvision-train -m``: best parameters and pictures, failed trials recorded while the
sweep goes on, a killed database study resumed; its search space, batches and resume rule with a
stand-in launcher; and the composed Optuna / joblib / SLURM (submitit) settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import BIN, TINY_2D, run_cli, script_env

SEARCHED = ("model.optimizer.lr", "model.loss._target_", "data.patch_size")
#: the 2D search of hparams_search=seg2d_optuna on tiny data: smaller patches from the command line,
#: one short epoch per trial (a few seconds each)
TINY_SEARCH = [
    "hparams_search=seg2d_optuna",
    *[a for a in TINY_2D if not a.startswith("data.patch_size")],
    "data.patch_size=choice([32,32],[48,48])",
    "debug=limit",
    "trainer.max_epochs=1",
    "print_config=false",
]
PNG = b"\x89PNG\r\n\x1a\n"


def _hydra(compose_run, overrides: list[str]):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_run(overrides)
    return cfg, HydraConfig.get()


def _study(db: Path, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _results(sweep: Path) -> dict[str, Any]:
    return yaml.safe_load((sweep / "optimization_results.yaml").read_text())


@pytest.mark.slow
def test_three_trial_optuna_sweep_writes_its_best_parameters(tmp_path: Path) -> None:
    # the config's search space (lr, loss, patch size) with smaller patches from the command line
    db = tmp_path / "optuna.db"
    args = [
        "-m",
        *TINY_SEARCH,
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=three",
    ]
    proc = run_cli("medvision-train", args, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    results = _results(sweep)
    assert set(results["best_params"]) == set(SEARCHED), results

    trials = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert [p.name for p in trials] == ["0", "1", "2"]
    objective = {p.name: json.loads((p / "metrics.json").read_text())["val/dice_mean"] for p in trials}
    # val/dice_mean is maximised (monitor_mode=max): the best value is the best trial's metric
    best = max(objective, key=objective.get)
    assert results["best_value"] == pytest.approx(objective[best], rel=1e-9)
    # ... and the best parameters are that trial's overrides
    overrides = dict(o.split("=", 1) for o in yaml.safe_load((sweep / best / ".hydra" / "overrides.yaml").read_text()))
    assert overrides["model.loss._target_"] == results["best_params"]["model.loss._target_"]
    assert float(overrides["model.optimizer.lr"]) == pytest.approx(results["best_params"]["model.optimizer.lr"])
    assert overrides["data.patch_size"] == results["best_params"]["data.patch_size"]  # a choice: '[32,32]'
    config = yaml.safe_load((sweep / best / "config_resolved.yaml").read_text())
    assert config["data"]["patch_size"] == yaml.safe_load(results["best_params"]["data.patch_size"])
    assert config["model"]["loss"]["_target_"] == results["best_params"]["model.loss._target_"]
    assert 1e-4 <= config["model"]["optimizer"]["lr"] <= 1e-2

    # the study in its database: trial k ran in folder k (hydra.job.num is the trial number), and the
    # results file names the study's best trial
    study = _study(db, "three")
    assert {str(t.number): t.value for t in study.trials} == objective
    assert (results["name"], results["best_trial"], results["n_complete"], results["n_failed"]) == (
        "three",
        study.best_trial.number,
        3,
        0,
    )
    assert str(study.best_trial.number) == best and results["best_params"] == study.best_trial.params
    assert Path(results["best_trial_dir"]).resolve() == (sweep / best).resolve()
    for picture in ("optimization_history.png", "param_importances.png"):
        data = (sweep / picture).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, picture


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path, medvision_home: Path) -> None:
    db, sweep = tmp_path / "optuna.db", tmp_path / "sweep"
    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=brute_force",  # every combination once, in a seeded order
        "hydra.sweeper.direction=maximize",
        *[a for a in TINY_2D if not a.startswith("data.patch_size")],
        "data.patch_size=[32,32]",
        # a negative learning rate makes torch's Adam raise (a bug's ValueError), data.cache=bogus is a
        # user mistake (medvision's one-line error): 3 of the 4 combinations fail
        "model.optimizer.lr=choice(0.001,-1.0)",
        "data.cache=choice(none,bogus)",
        "debug=limit",
        "trainer.max_epochs=1",
        "print_config=false",
        "hydra.sweeper.n_trials=6",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=fails",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = run_cli("medvision-train", args, cwd=tmp_path, home=medvision_home, timeout=400)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    study = _study(db, "fails")
    # the space holds 4 combinations: the sweep ends when the sampler has tried them all (n_trials=6)
    trials = {(t.params["model.optimizer.lr"], t.params["data.cache"]): t for t in study.trials}
    assert len(study.trials) == len(trials) == 4, study.trials
    assert "tried its whole search space" in out
    good = trials.pop((0.001, "none"))
    assert good.state.name == "COMPLETE" and (sweep / str(good.number) / "metrics.json").is_file()
    assert {t.state.name for t in trials.values()} == {"FAIL"}
    assert trials[(-1.0, "none")].user_attrs["error"] == "ValueError: Invalid learning rate: -1.0"
    for lr in (0.001, -1.0):
        assert trials[(lr, "bogus")].user_attrs["error"].startswith("data.cache='bogus': expected one of")
    # one line per failed trial; the user mistake as medvision's message (printed by the job too), the
    # bug with its traceback
    for trial in trials.values():
        assert f"Trial {trial.number} failed, the sweep goes on: {trial.user_attrs['error']}" in out
    assert out.count("medvision error: data.cache='bogus'") == 2
    assert out.count("Traceback (most recent call last)") == 1, out[-4000:]
    results = _results(sweep)
    assert (results["n_complete"], results["n_failed"], results["best_trial"]) == (1, 3, good.number)
    assert results["best_value"] == good.value and (sweep / "optimization_history.png").read_bytes().startswith(PNG)


@pytest.mark.slow
def test_a_killed_database_sweep_resumes_to_n_trials(tmp_path: Path, medvision_home: Path) -> None:
    db, sweep = tmp_path / "optuna.db", tmp_path / "sweep"
    args = [
        "-m",
        *TINY_SEARCH,
        "hydra.sweeper.n_trials=4",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=resume",
        f"hydra.sweep.dir={sweep}",
        # a heartbeat every second: a trial of the killed sweep is failed 2 s after its last one
        "hydra.sweeper.heartbeat_interval=1",
    ]
    first = subprocess.Popen(
        [str(BIN / "medvision-train"), *args],
        cwd=tmp_path,
        env=script_env(medvision_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # trials run one after the other: the third trial's folder appears once the first two are told
    third = sweep / "2" / ".hydra"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not third.is_dir():
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert third.is_dir(), "the third trial did not start before the deadline"
    killed = {t.number: t.state.name for t in _study(db, "resume").trials}
    assert killed == {0: "COMPLETE", 1: "COMPLETE", 2: "RUNNING"}, killed

    again = run_cli("medvision-train", args, cwd=tmp_path, home=medvision_home, timeout=400)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "2 of 4 trials complete, 2 to run" in again.stdout, again.stdout[-4000:]
    study = _study(db, "resume")
    states = {t.number: t.state.name for t in study.trials}
    # the killed trial is failed (its heartbeat stopped) and not run again: two new trials, 3 and 4
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "FAIL", 3: "COMPLETE", 4: "COMPLETE"}, states
    assert "Trial 2 was RUNNING without a heartbeat" in again.stdout
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    # no trial repeated: each complete trial has its own folder and metrics, and its own sample (the
    # relaunch's seeded sampler moved on to a new seed)
    for trial in complete:
        metrics = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert metrics["val/dice_mean"] == trial.value
        # both launches' trials are one group (the study's), each knows its trial number
        info = json.loads((sweep / str(trial.number) / "run_info.json").read_text())
        assert (info["group"], info["trial"]) == ("train/resume", trial.number), info
        assert "model.optimizer.lr" in info["swept_keys"]
    assert not (sweep / "2" / "metrics.json").exists()
    assert len({t.params["model.optimizer.lr"] for t in complete}) == 4
    results = _results(sweep)
    assert (results["n_complete"], results["n_failed"], results["best_trial"]) == (4, 1, study.best_trial.number)


# ----------------------------------------------------------------------------- the search without training
def test_search_space_reads_hydra_sweeps_and_the_command_line_wins() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from medvision.utils.errors import MedvisionError
    from medvision.workflows.optuna_sweep import search_space, trial_overrides

    params = {
        "lr": "tag(log, interval(1e-4, 1e-2))",
        "dropout": "interval(0, 0.5)",
        "loss": "choice(monai.losses.DiceCELoss, monai.losses.DiceFocalLoss)",
        "patch": "choice([32,32],[48,48])",
        "epochs": "3",
    }
    arguments = ["experiment=x", "patch=choice([16,16],[24,24])", "depth=range(2,9,3)", "flag=true,false", "seed=7"]
    space, fixed = search_space(params, arguments)
    assert space == {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "dropout": FloatDistribution(0.0, 0.5),
        "loss": CategoricalDistribution(["monai.losses.DiceCELoss", "monai.losses.DiceFocalLoss"]),
        "patch": CategoricalDistribution(["[16,16]", "[24,24]"]),  # the command line's sweep of the key
        "depth": IntDistribution(2, 8, step=3),
        "flag": CategoricalDistribution([True, False]),
    }
    assert fixed == ["epochs=3", "experiment=x", "seed=7"]
    # a sampled value back to an override: Hydra reads each as that value
    assert trial_overrides({"lr": 0.00012, "patch": "[16,16]", "flag": False, "depth": 5}) == [
        "lr=0.00012",
        "patch=[16,16]",
        "flag=false",
        "depth=5",
    ]
    with pytest.raises(MedvisionError, match="cannot search a Glob"):
        search_space(None, ["model=glob(*)"])


def _stand_in_launcher(fail: dict[int, BaseException | None], calls: list[tuple[int, int]]) -> Any:
    """Hydra's ``Launcher.launch`` without jobs: each trial returns its ``x``; trial numbers in ``fail``
    raise (an exception) or return ``None``."""
    from hydra.core.utils import JobReturn, JobStatus

    def launch(batch: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        calls.append((initial_job_idx, len(batch)))
        returns = []
        for number, overrides in enumerate(batch, initial_job_idx):
            ret = JobReturn(overrides=overrides)
            ret.status = JobStatus.FAILED if fail.get(number) else JobStatus.COMPLETED
            values = dict(o.split("=", 1) for o in overrides)
            ret.return_value = fail[number] if number in fail else float(values["x"])
            returns.append(ret)
        return returns

    return launch


def test_batches_start_at_their_trial_number_and_failures_are_told(tmp_path: Path) -> None:
    import matplotlib
    from hydra.errors import ConfigCompositionException

    from medvision.workflows.optuna_sweep import OptunaSearch

    validated: list[list[str]] = []

    def validate(batch: list[list[str]]) -> None:
        validated.extend(batch)
        if len(validated) == 3:  # the probe, trial 0, then trial 1: trial 1 does not compose
            raise ConfigCompositionException("trial 1's overrides do not compose")

    calls: list[tuple[int, int]] = []
    launch = _stand_in_launcher({4: RuntimeError("CUDA out of memory"), 5: None}, calls)
    before = dict(matplotlib.rcParams)
    search = OptunaSearch(
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0},
        direction="maximize",
        storage=None,
        study_name="batches",
        n_trials=7,
        n_jobs=3,
        params={"x": "interval(0, 1)"},
    )
    results = search.run(["fixed=1"], launch=launch, sweep_dir=tmp_path, validate=validate)
    # batch 0-2 lost trial 1 before launch: 0 and 2 go one by one with their own numbers; 3-5 go together
    assert calls == [(0, 1), (2, 1), (3, 3), (6, 1)]
    assert all(overrides[0] == "fixed=1" for overrides in validated)
    assert (results["n_complete"], results["n_failed"]) == (4, 3), results
    assert results["best_trial"] in (0, 2, 3, 6) and 0 <= results["best_value"] <= 1
    assert (tmp_path / "optimization_results.yaml").is_file() and (tmp_path / "param_importances.png").is_file()
    # Optuna's plots set a pyplot style of their own: the trials after them keep medvision's pictures
    changed = {k for k, v in matplotlib.rcParams.items() if str(before.get(k)) != str(v)} - {
        "backend",
        "backend_fallback",
    }
    assert not changed, sorted(changed)[:10]


def test_a_search_whose_every_trial_fails_ends_in_an_error(tmp_path: Path) -> None:
    """Every trial failing is a mistake to fix (here: the jobs return no metric), not a result."""
    from medvision.utils.errors import HydraUserError
    from medvision.workflows.optuna_sweep import OptunaSearch

    calls: list[tuple[int, int]] = []
    search = OptunaSearch(
        sampler={"_target_": "optuna.samplers.TPESampler", "seed": 0},
        direction="maximize",
        storage=None,
        study_name="nothing",
        n_trials=2,
        n_jobs=1,
        params={"x": "interval(0, 1)"},
    )
    with pytest.raises(HydraUserError, match="all 2 trials of study 'nothing' failed; trial 0: ValueError: the job"):
        search.run([], launch=_stand_in_launcher({0: None, 1: None}, calls), sweep_dir=tmp_path)
    assert calls == [(0, 1), (1, 1)]  # the first failure did not stop the sweep
    assert _results(tmp_path)["n_failed"] == 2


def test_a_relaunch_runs_the_missing_trials_with_new_samples(tmp_path: Path) -> None:
    from medvision.workflows.optuna_sweep import OptunaSearch

    settings = dict(
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0},
        direction="minimize",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="again",
        n_trials=3,
        n_jobs=1,
        params={"x": "interval(0, 1)"},
    )
    calls: list[tuple[int, int]] = []
    # Ctrl-C during trial 2: the sweep stops and trial 2 is told FAIL, not left RUNNING
    launch = _stand_in_launcher({}, calls)

    def interrupted(batch: list[list[str]], initial_job_idx: int) -> Any:
        if initial_job_idx == 2:
            raise KeyboardInterrupt
        return launch(batch, initial_job_idx)

    with pytest.raises(KeyboardInterrupt):
        OptunaSearch(**settings).run([], launch=interrupted, sweep_dir=tmp_path)
    study = _study(tmp_path / "optuna.db", "again")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    results = OptunaSearch(**settings).run([], launch=launch, sweep_dir=tmp_path)
    study = _study(tmp_path / "optuna.db", "again")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert calls == [(0, 1), (1, 1), (3, 1)] and (results["n_complete"], results["n_failed"]) == (3, 1)
    # the sampler's seed moved on: the relaunch does not sample trial 0's value again
    assert study.trials[3].params["x"] != study.trials[0].params["x"]
    # a third launch finds the study complete and runs nothing
    OptunaSearch(**settings).run([], launch=launch, sweep_dir=tmp_path)
    assert len(calls) == 3 and len(_study(tmp_path / "optuna.db", "again").trials) == 4


def test_a_user_error_in_a_multirun_job_is_raised_not_exited(compose_run, capsys) -> None:
    """``sys.exit(2)`` inside a job would end the whole sweep (the basic launcher runs jobs in its
    process); in a multirun the job raises a compact Hydra error that is still a MedvisionError."""
    import pickle

    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import CompactHydraException
    from hydra.types import RunMode
    from omegaconf import read_write

    from medvision.utils.errors import USER_ERROR_EXIT_CODE, HydraUserError, MedvisionError, report_user_errors

    @report_user_errors
    def task(cfg: Any) -> None:
        raise MedvisionError("data.cache='bogus': expected one of 'none', 'memory', 'disk'", fix="data.cache=none")

    cfg = compose_run(["experiment=synthetic_seg2d"])
    with pytest.raises(SystemExit) as single:
        task(cfg)
    assert single.value.code == USER_ERROR_EXIT_CODE
    hydra = HydraConfig.instance().cfg.hydra
    with read_write(hydra):
        hydra.mode = RunMode.MULTIRUN
    try:
        with pytest.raises(HydraUserError) as raised:
            task(cfg)
        # a command that is no Hydra app still exits, whatever HydraConfig holds
        with pytest.raises(SystemExit):
            task(["--help"])
    finally:
        with read_write(hydra):
            hydra.mode = RunMode.RUN
    err = raised.value
    assert isinstance(err, MedvisionError) and isinstance(err, CompactHydraException)
    assert str(err) == "data.cache='bogus': expected one of 'none', 'memory', 'disk'\n  fix: data.cache=none"
    again = pickle.loads(pickle.dumps(err))  # joblib and submitit send a failed job's exception back
    assert type(again) is HydraUserError and str(again) == str(err)
    assert capsys.readouterr().err.count("medvision error: data.cache='bogus'") == 3


def test_the_sweeper_is_a_discovered_hydra_plugin_with_its_samplers(compose_run) -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    found = {f"{p.__module__}.{p.__name__}" for p in Plugins.instance().discover(Sweeper)}
    assert "hydra_plugins.medvision_optuna_sweeper.optuna_sweeper.OptunaSweeper" in found, found
    for name, target in (("tpe", "TPESampler"), ("random", "RandomSampler"), ("brute_force", "BruteForceSampler")):
        _, hydra = _hydra(
            compose_run, ["hydra/sweeper=optuna", f"hydra/sweeper/sampler={name}", "hydra.sweeper.sampler.seed=3"]
        )
        assert (hydra.sweeper.sampler._target_, hydra.sweeper.sampler.seed) == (f"optuna.samplers.{target}", 3)


def test_optuna_direction_follows_monitor_mode(compose_run) -> None:
    cfg, hydra = _hydra(compose_run, ["hparams_search=seg_optuna"])
    # medvision's sweeper (an environment that still holds hydra-optuna-sweeper registers a second
    # hydra/sweeper=optuna: `pip uninstall hydra-optuna-sweeper`)
    assert hydra.sweeper._target_ == "hydra_plugins.medvision_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert hydra.mode.name == "MULTIRUN"
    assert hydra.sweeper.direction == "maximize" and cfg.optimized_metric == cfg.monitor == "val/dice_mean"
    assert set(hydra.sweeper.params) == set(SEARCHED)
    assert (hydra.sweeper.sampler._target_, hydra.sweeper.sampler.seed, hydra.sweeper.sampler.n_startup_trials) == (
        "optuna.samplers.TPESampler",
        1234,
        10,
    )
    _, hydra = _hydra(compose_run, ["hparams_search=seg_optuna", "monitor=val/loss", "monitor_mode=min"])
    assert hydra.sweeper.direction == "minimize"


def test_joblib_and_slurm_launchers_compose_with_their_fields(compose_run) -> None:
    _, hydra = _hydra(compose_run, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert hydra.launcher._target_.endswith("JoblibLauncher") and hydra.launcher.n_jobs == 2

    _, hydra = _hydra(
        compose_run,
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.account=lab",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.tasks_per_node=4",
            "trainer=ddp",
            "trainer.devices=4",
        ],
    )
    launcher = hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.account, launcher.gpus_per_node, launcher.tasks_per_node) == (
        "gpu",
        "lab",
        4,
        4,
    )
    # the documented defaults: one node, a day, requeue on time-out, logs inside the sweep dir
    assert (launcher.nodes, launcher.timeout_min, launcher.max_num_timeout, launcher.signal_delay_s) == (
        1,
        1440,
        3,
        120,
    )
    assert launcher.submitit_folder.startswith(str(hydra.sweep.dir))
    # every documented field exists in the submitit launcher's schema (a typo would not compose)
    text = Path(__file__).parent.parent.joinpath("conf/hydra/launcher/slurm.yaml").read_text()
    documented = [
        line.split(":")[0] for line in text.splitlines() if line and not line.startswith(("#", " ", "-", "defaults"))
    ]
    assert len(documented) >= 15 and all(key in launcher for key in documented), documented


def test_help_lists_the_searches_and_loads_no_training_stack(tmp_path: Path) -> None:
    """``--help`` with the sweep plugins installed lists the searches and imports neither torch,
    Lightning, MONAI nor Optuna (its time is measured by scripts/bench, row 5, not asserted here)."""
    import importlib.util
    import sys

    assert importlib.util.find_spec("hydra_plugins.medvision_optuna_sweeper"), "the Optuna sweeper is not installed"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / "medvision-train"), "--help"],
        cwd=tmp_path,
        env=script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and "hparams_search: seg2d_optuna, seg_optuna" in proc.stdout, proc.stdout[-2000:]
    # -X importtime: one line per module imported, "import time: self | cumulative | name"
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    # ... nor Optuna: Hydra imports every plugin module on every start, the sweeper's stays light
    heavy = sorted(
        m for m in imported if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning", "monai", "optuna")
    )
    assert not heavy, f"medvision-train --help imported {heavy[:10]}"


def test_the_config_store_of_the_plugins_is_not_copied_per_group() -> None:
    """What kept ``--help`` fast with the plugins' configs registered: Hydra 1.3 deep-copies its
    config repository, ConfigStore included, for each group it lists; medvision's entry point
    makes a copy of the store the store itself (:mod:`medvision.utils.hydra_speed`)."""
    import copy

    from hydra.core.config_store import ConfigStore

    from medvision.utils.hydra_speed import share_config_store

    share_config_store()
    store = ConfigStore.instance()
    assert copy.deepcopy(store) is store
