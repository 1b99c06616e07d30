"""Shared fixtures: real Hydra composition of conf/, real runs, real console scripts.

Nothing here mocks medvision. Runs use the real config tree (``medvision.utils.config.compose``)
with ``paths.root_dir`` pointing at one session-wide folder, so the embedded datasets under
``<root>/data`` are prepared once per session, while every run writes its own output folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: intra-op threads of torch in the test process and in the console scripts it starts.
#: One thread is deliberate: on a 2-core machine that also runs something else (a training
#: beside the tests, another CI job), two OpenMP threads per process spin against each other
#: and a 2D U-Net step went from 0.1 s to 2.9 s. Results do not depend on it (checked: the
#: same metrics with 1 and 2 threads). Override with MEDVISION_TEST_THREADS.
THREADS = int(os.environ.get("MEDVISION_TEST_THREADS", "1"))

#: the console scripts of this environment (next to the interpreter running pytest)
BIN = Path(sys.executable).parent

#: a tiny 2D synthetic experiment: 8 cases of 64x64 (2 test, 2 val, 4 train), 48x48 patches
TINY_2D = [
    "experiment=synthetic_seg2d",
    "data.source.num_cases=8",
    "data.source.size=64",
    "data.patch_size=[48,48]",
]


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(THREADS)


#: the test files that take longest, heaviest first (seconds of one pytest-xdist worker on a 2-core
#: machine, ``pytest --durations=0``, 2026-12-03). ``make test`` runs ``--dist loadfile
#: --no-loadscope-reorder``: xdist hands whole files to the two workers in collection order, so the
#: long files start first and the many short ones fill the gaps, and both workers finish together.
#: (xdist's own order, most tests first, left the long one-test files for the end, one worker idle.)
#: The order changes no result; a file missing here runs after these, in its usual order.
HEAVY_FILES: tuple[str, ...] = (
    "test_bench_smoke.py",
    "test_readme_recipes.py",
    "test_planning.py",
    "test_clinical_fusion.py",
    "test_bad_inputs.py",
    "test_sweeps.py",
    "test_tta_ensembles.py",
    "test_auto.py",
    "test_resume.py",
    "test_cli.py",
    "test_compare_runs.py",
    "test_medmnist_experiments.py",
    "test_gan_augment.py",
    "test_notebook_and_plots.py",
    "test_ddp.py",
    "test_tracking.py",
    "test_cv.py",
    "test_gan.py",
    "test_privacy.py",
    "test_multimodal_seg.py",
    "test_packaging.py",
    "test_generate.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the files of :data:`HEAVY_FILES` first, in its order (a stable sort: tests keep their order)."""
    rank = {name: i for i, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def medvision_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``paths.root_dir`` for the session: embedded datasets are prepared here once."""
    return tmp_path_factory.mktemp("medvision_home")


@pytest.fixture(scope="session", autouse=True)
def _offline_wandb(tmp_path_factory: pytest.TempPathFactory):
    """W&B offline, with its config/cache folders inside the session's temp dir (not ~)."""
    wandb_home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(wandb_home / var.lower()))
        # the pseudonym key of runs on DICOM data (privacy.log_ids): the session's, not ~/.config/medvision's
        mp.delenv("MEDVISION_PRIVACY_KEY", raising=False)
        mp.setenv("MEDVISION_PRIVACY_KEY_FILE", str(wandb_home / "privacy.key"))
        (wandb_home / "privacy.key").write_text("medvision-test-session-privacy-key\n")
        yield


def compose_in(root: Path, output_dir: Path, overrides: Sequence[str] = (), config_name: str = "train") -> Any:
    """Compose the real config tree with the session's data root and a run output folder."""
    from medvision.utils.config import compose

    return compose(
        [f"paths.root_dir={root}", "print_config=false", *overrides], config_name=config_name, output_dir=output_dir
    )


@pytest.fixture
def compose_run(medvision_home: Path, tmp_path: Path) -> Callable[..., Any]:
    """``compose_run(overrides, config_name="train", name="run")`` -> cfg writing to ``tmp_path/name``."""

    def _compose(overrides: Sequence[str] = (), config_name: str = "train", name: str = "run") -> Any:
        return compose_in(medvision_home, tmp_path / name, overrides, config_name)

    return _compose


@dataclass
class FinishedRun:
    """A training run done in-process: its config, returned metrics and output folder."""

    cfg: Any
    metrics: dict[str, float]
    output_dir: Path

    @property
    def best_ckpt(self) -> Path:
        return self.output_dir / "checkpoints" / "best.ckpt"


def train_in(root: Path, output_dir: Path, overrides: Sequence[str]) -> FinishedRun:
    """Compose and run a training in this process."""
    from medvision.train import run

    cfg = compose_in(root, output_dir, overrides)
    metrics = run(cfg)
    return FinishedRun(cfg, metrics, Path(cfg.paths.output_dir))


#: a short but complete run: 3 epochs of a few batches, validation at epoch 2, checkpoints,
#: test on the best checkpoint
SHORT_RUN = [*TINY_2D, "debug=limit", "seed=42"]


@pytest.fixture(scope="session")
def short_run(medvision_home: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """One short training shared by the evaluation and reproducibility tests."""
    return train_in(medvision_home, tmp_path_factory.mktemp("short_run"), SHORT_RUN)


def script_env(home: Path) -> dict[str, str]:
    """The environment of a console script started by a test: what a user's shell would give it.

    ``MEDVISION_HOME=home``, W&B offline, the tests' thread count; no forced tracebacks, the
    default terminal width of a pipe, and no ``WANDB_SERVICE`` (an in-process W&B run of an
    earlier test sets it; a console script is a process of its own and starts its own service).
    """
    env = dict(os.environ)
    for var in ("HYDRA_FULL_ERROR", "MEDVISION_DEBUG", "COLUMNS", "LINES", "WANDB_SERVICE"):
        env.pop(var, None)
    env.update(MEDVISION_HOME=str(home), WANDB_MODE="offline", OMP_NUM_THREADS=str(THREADS), PYTHONUNBUFFERED="1")
    return env


#: the fork server of this test process (:mod:`cli_server`): started on the first console-script run
_SERVER: dict[str, Any] = {}
_SERVER_LOCK = threading.Lock()


def _fork_server() -> str | None:
    """The socket of this process's console-script fork server (``None``: ``MEDVISION_TEST_FORK=0``)."""
    if os.environ.get("MEDVISION_TEST_FORK", "1") == "0":
        return None
    with _SERVER_LOCK:
        if "socket" not in _SERVER:
            _SERVER["socket"] = _start_fork_server()
    return _SERVER["socket"]


def _start_fork_server() -> str:
    """Start :mod:`cli_server` on a new socket; it is stopped when this process exits."""
    import atexit
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="medvision-cli-"))
    path = str(folder / "server.sock")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("cli_server.py")), path],
        env=script_env(folder),
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = proc.stdout.readline() if proc.stdout else ""
    assert ready.strip() == "ready", f"the console-script fork server did not start: {ready}"

    def stop() -> None:
        Path(path).unlink(missing_ok=True)
        proc.terminate()
        proc.wait(timeout=30)

    atexit.register(stop)
    return path


def _forked_run(
    server: str, exe: Path, script: str, args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """One console script run by the fork server; what :func:`subprocess.run` would return."""
    import json
    import signal
    import socket
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="cli-", suffix=".out", delete=False) as out:
        out_path = Path(out.name)
    request = {"script": script, "exe": str(exe), "args": list(args), "cwd": str(cwd), "env": env, "out": str(out_path)}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(server)
            conn.sendall((json.dumps(request) + "\n").encode())
            conn.settimeout(timeout)
            with conn.makefile("r") as replies:
                pid = json.loads(replies.readline())["pid"]
                try:
                    line = replies.readline()
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired([str(exe), *args], timeout, out_path.read_text()) from None
        code = json.loads(line)["code"] if line else -signal.SIGKILL  # no answer: the child was killed
        return subprocess.CompletedProcess([str(exe), *args], code, out_path.read_text(errors="replace"))
    finally:
        out_path.unlink(missing_ok=True)


def run_cli(
    script: str,
    args: Sequence[str],
    cwd: Path,
    home: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a console script (``medvision-train``, ``medvision-eval``) of this environment.

    The script runs in a process of its own, forked by this test process's fork server
    (``tests/cli_server.py``: torch, Lightning and MONAI imported once, not once per script);
    ``fresh=True`` or ``MEDVISION_TEST_FORK=0`` starts the console script file itself, imports and all.

    Args:
        script: the console script's name.
        args: its command-line arguments.
        cwd: the working folder.
        home: ``MEDVISION_HOME`` (default: ``cwd``).
        timeout: seconds before the process is killed (the test then fails).
        env: variables set on top of :func:`script_env`'s.
        fresh: a new interpreter (for what a start prints, which a forked child does not repeat).

    Returns:
        The finished process; ``stdout`` holds stdout and stderr together.
    """
    exe = BIN / script
    assert exe.is_file(), f"console script {script} is not installed next to {sys.executable}"
    full_env = {**script_env(home or cwd), **(env or {})}
    server = None if fresh else _fork_server()
    if server is not None:
        return _forked_run(server, exe, script, args, cwd, full_env, timeout)
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
