"""2-process DDP on CPU (``trainer=ddp_cpu``, gloo) through the real console script.

Lightning's ``ddp`` re-launches the running script once per extra rank, so the run starts
from ``medvision-train`` (a script file), as a user's would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import TINY_2D, run_cli


@pytest.mark.slow
def test_ddp_cpu_trains_validates_tests_into_one_output_dir(tmp_path: Path) -> None:
    proc = run_cli("medvision-train", [*TINY_2D, "debug=limit", "seed=42", "trainer=ddp_cpu", "print_config=false"],
                   cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:]
    # both ranks ran (rank 1 is a re-launched medvision-train)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout, proc.stdout[-4000:]
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    # Hydra's output dir is not multiplied by ranks: rank 1 reuses rank 0's folder
    assert len(runs) == 1, runs
    out = runs[0]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test/dice_mean", "val/dice_mean"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, metrics
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "config_resolved.yaml").is_file()
