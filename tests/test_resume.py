"""Resume: a run killed (SIGKILL) or pre-empted (SIGTERM) in the middle of an epoch and resumed
ends with the metrics of the same run uninterrupted, in its own output folder.

The runs are real ``medvision-train`` processes. The test watches ``metrics.csv`` (the CSV logger
flushed every step) to know that the next epoch has started, freezes the process (SIGSTOP) to
check where it is, then kills it.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, TINY_2D, FinishedRun, run_cli, script_env, train_in

#: 3 epochs of 3 batches of one volume (4 patches each), validation every epoch
RESUME_RUN = [*TINY_2D, "debug=limit", "seed=42", "data.batch_size=1", "print_config=false"]
#: the CSV logger writes metrics.csv after every step, so a test can see the epoch start
WATCHABLE = ["trainer.log_every_n_steps=1", "+logger.csv.flush_logs_every_n_steps=1"]


@pytest.fixture(scope="module")
def uninterrupted(medvision_home: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The reference: the same run, never stopped."""
    return train_in(medvision_home, tmp_path_factory.mktemp("uninterrupted"), RESUME_RUN)


def _start(run_dir: Path, home: Path, *extra: str) -> subprocess.Popen[str]:
    env = script_env(home)
    return subprocess.Popen(
        [str(BIN / "medvision-train"), *RESUME_RUN, *WATCHABLE, *extra, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop_in_epoch(proc: subprocess.Popen[str], run_dir: Path, epoch: int, timeout: float = 240) -> None:
    """Freeze ``proc`` (SIGSTOP) once a training step of ``epoch`` is logged and ``epoch - 1``'s last.ckpt exists."""
    rows = run_dir / "csv" / "metrics.csv"
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before epoch {epoch} started:\n{proc.stdout.read()[-3000:]}"  # type: ignore[union-attr]
        if last.is_file() and rows.is_file() and _steps_of_epoch(rows, epoch):
            proc.send_signal(signal.SIGSTOP)
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"epoch {epoch} did not start within {timeout} s")


def _steps_of_epoch(rows: Path, epoch: int) -> int:
    with rows.open(newline="") as fh:
        return sum(1 for row in csv.DictReader(fh) if row.get("epoch") == str(epoch) and row.get("train/loss_step"))


def _epoch_of(ckpt: Path) -> int:
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])


def _final(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(("test/", "val/"))}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_last_gives_the_uninterrupted_metrics(
    uninterrupted: FinishedRun, medvision_home: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    proc = _start(run_dir, medvision_home)
    _stop_in_epoch(proc, run_dir, epoch=1)
    # frozen in the middle of epoch 1: a step of it is logged, its end-of-epoch checkpoint is not written
    assert _epoch_of(run_dir / "checkpoints" / "last.ckpt") == 0
    assert 0 < _steps_of_epoch(run_dir / "csv" / "metrics.csv", 1) < 3
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()

    # ckpt_path=<run>/checkpoints/last.ckpt continues in <run> (no hydra.run.dir given)
    resumed = run_cli(
        "medvision-train",
        [*RESUME_RUN, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"],
        cwd=tmp_path,
        home=medvision_home,
    )
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert not (tmp_path / "logs").exists(), "the resumed run must write into its own folder, not a new one"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics and _final(metrics) == _final(uninterrupted.metrics)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_cleanly_and_the_next_launch_resumes(
    uninterrupted: FinishedRun, medvision_home: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "preempted"
    proc = _start(run_dir, medvision_home, "logger=many")  # csv + TensorBoard + W&B (offline)
    _stop_in_epoch(proc, run_dir, epoch=1)
    assert _epoch_of(run_dir / "checkpoints" / "last.ckpt") == 0
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-4000:]
    preempted = run_dir / "checkpoints" / "preempted.ckpt"
    assert preempted.is_file(), out[-4000:]
    assert _epoch_of(preempted) == 1, "the pre-emption checkpoint holds the state inside epoch 1"
    assert not (run_dir / "metrics.json").exists()

    # the same command again, with ckpt_path=last: the newest of last.ckpt / preempted.ckpt
    resumed = run_cli(
        "medvision-train",
        [*RESUME_RUN, "logger=many", "ckpt_path=last", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        home=medvision_home,
    )
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert _final(metrics) == _final(uninterrupted.metrics)
    assert not preempted.exists(), "a finished run removes its pre-emption checkpoint"
    # both launches logged to one W&B run: the id kept in the run folder
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    launches = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(launches) == 2 and all(p.name.endswith(f"-{run_id}") for p in launches), launches
    # the earlier config of the folder is kept, not overwritten
    assert (run_dir / "config_resolved.before_resume_1.yaml").is_file()


def test_a_checkpoint_path_resumes_in_its_own_run_folder(tmp_path: Path) -> None:
    from medvision.utils.resume import keep_previous_results, resume_overrides

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config_resolved.yaml").write_text("seed: 1\n")
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"")
    assert resume_overrides([f"ckpt_path={ckpt}", "seed=1"]) == [f"ckpt_path={ckpt}", "seed=1", f"hydra.run.dir={run}"]
    # an explicit folder, a multirun, or a file outside a run folder: nothing added
    for args in (
        [f"ckpt_path={ckpt}", "hydra.run.dir=/elsewhere"],
        ["-m", f"ckpt_path={ckpt}"],
        [f"ckpt_path={tmp_path / 'loose.ckpt'}"],
        ["ckpt_path=last"],
    ):
        assert resume_overrides(args) == args

    # the results of the finished part are kept, numbered, never overwritten
    (run / "metrics.json").write_text('{"a": 1}')
    assert [p.name for p in keep_previous_results(run)] == ["metrics.before_resume_1.json"]
    (run / "metrics.json").write_text('{"a": 2}')
    assert [p.name for p in keep_previous_results(run)] == ["metrics.before_resume_2.json"]
    assert (run / "metrics.before_resume_1.json").read_text() == '{"a": 1}' and not (run / "metrics.json").exists()
