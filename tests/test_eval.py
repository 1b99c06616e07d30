"""``medvision-eval ckpt_path=<best.ckpt>`` reproduces the test metrics the training run reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FinishedRun, run_cli
from medvision.evaluate import evaluate
from medvision.utils.errors import MedvisionError


def _test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("test/")}


def test_short_run_saved_best_and_last_checkpoints(short_run: FinishedRun) -> None:
    assert short_run.best_ckpt.is_file()
    assert (short_run.best_ckpt.parent / "last.ckpt").is_file()
    assert "test/dice_mean" in short_run.metrics and "test/hd95_mean" in short_run.metrics


def test_evaluate_best_checkpoint_equals_the_run(short_run: FinishedRun, compose_run) -> None:
    cfg = compose_run([f"ckpt_path={short_run.best_ckpt}"], config_name="eval", name="eval")
    metrics = evaluate(cfg, overrides=[])

    expected = _test_metrics(short_run.metrics)
    got = _test_metrics(metrics)
    assert len(expected) >= 5, expected
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == value, f"{key}: eval {got[key]!r} != run {value!r}"
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["test/dice_mean"] == expected["test/dice_mean"]


@pytest.mark.slow
def test_eval_cli_prints_and_saves_the_same_metrics(short_run: FinishedRun, tmp_path: Path) -> None:
    proc = run_cli("medvision-eval", [f"ckpt_path={short_run.best_ckpt}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-1500:]
    outputs = sorted((tmp_path / "logs" / "eval" / "runs").glob("*/metrics.json"))
    assert len(outputs) == 1, outputs
    saved = json.loads(outputs[0].read_text())
    assert saved["test/dice_mean"] == short_run.metrics["test/dice_mean"]
    assert "test/dice_mean" in proc.stdout


def test_evaluate_missing_checkpoint_is_a_user_error(tmp_path: Path, compose_run) -> None:
    missing = tmp_path / "runs" / "nope" / "best.ckpt"
    cfg = compose_run([f"ckpt_path={missing}"], config_name="eval", name="eval")
    with pytest.raises(MedvisionError) as err:
        evaluate(cfg, overrides=[])
    assert str(missing) in str(err.value)


@pytest.mark.parametrize("content", [b"this is not a checkpoint\x00\xff" * 10, b""])
def test_evaluate_garbage_checkpoint_is_a_user_error(tmp_path: Path, compose_run, content: bytes) -> None:
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(content)
    cfg = compose_run([f"ckpt_path={bad}"], config_name="eval", name="eval")
    with pytest.raises(MedvisionError) as err:
        evaluate(cfg, overrides=[])
    assert "garbage.ckpt" in str(err.value)


def test_evaluate_a_torch_file_that_is_no_medvision_checkpoint_is_a_user_error(tmp_path: Path, compose_run) -> None:
    import torch

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    cfg = compose_run([f"ckpt_path={foreign}"], config_name="eval", name="eval")
    with pytest.raises(MedvisionError) as err:
        evaluate(cfg, overrides=[])
    assert "foreign.ckpt" in str(err.value)
