"""2-process DDP on CPU (``trainer=ddp_cpu``, gloo) through the real console script.

Lightning's ``ddp`` re-launches the running script once per extra rank, so the run starts
from ``medvision-train`` (a script file), as a user's would.

The data has 3 validation and 3 test cases: an odd count that 2 ranks cannot share evenly. A
padding ``DistributedSampler`` would score one case twice; medvision's samplers give each case
to one rank, and the metrics gather the uneven counts, so the DDP test metrics equal a
single-process evaluation of the same checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import TINY_2D, run_cli

#: 10 cases: 3 test, 3 val, 4 train subjects
ODD_SPLITS = [
    *[a for a in TINY_2D if not a.startswith("data.source.num_cases")],
    "data.source.num_cases=10",
    "data.test_fraction=0.3",
    "data.val_fraction=0.3",
]


@pytest.mark.slow
def test_ddp_cpu_trains_validates_tests_into_one_output_dir_with_single_process_metrics(
    tmp_path: Path, compose_run
) -> None:
    proc = run_cli(
        "medvision-train",
        [
            *ODD_SPLITS,
            "debug=limit",
            "seed=42",
            "trainer=ddp_cpu",
            "print_config=false",
            "trainer.limit_val_batches=null",
            "trainer.limit_test_batches=null",
            "+callbacks.probe._target_=ddp_probe.ProcessGroupProbe",
            "+callbacks.probe.output_dir=${paths.output_dir}",
        ],
        cwd=tmp_path,
        timeout=300,
        env={"PYTHONPATH": str(Path(__file__).parent)},
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    # both ranks ran (rank 1 is a re-launched medvision-train)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout, proc.stdout[-4000:]
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    # Hydra's output dir is not multiplied by ranks: rank 1 reuses rank 0's folder
    assert len(runs) == 1, runs
    out = runs[0]
    # each rank trained in one gloo process group of 2 (asked of torch.distributed inside the run)
    probes = [json.loads((out / f"process_group_rank{r}.json").read_text()) for r in (0, 1)]
    for rank, probe in enumerate(probes):
        assert (probe["rank"], probe["backend"], probe["world_size"]) == (rank, "gloo", 2), probe
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test/dice_mean", "val/dice_mean"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, metrics
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    # one writer (rank 0): the run's files once, the metrics table printed once
    assert (out / "config_resolved.yaml").is_file() and (out / "data_audit.json").is_file()
    assert proc.stdout.count("train metrics") == 1, proc.stdout[-4000:]

    # the same checkpoint, tested by one process on the same 3 test cases
    from medvision.evaluate import evaluate

    single = evaluate(
        compose_run([f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}"], config_name="eval", name="eval"), overrides=[]
    )
    test_keys = sorted(k for k in metrics if k.startswith("test/"))
    assert len(test_keys) >= 7 and test_keys == sorted(k for k in single if k.startswith("test/"))
    for key in test_keys:
        assert single[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-6), key
