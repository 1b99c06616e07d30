"""The benchmark suite (scripts/bench, issue #7) at tiny size, so that it cannot rot.

Every benchmark's code path runs once, for real (medvision runs through ``run()``, the plain
MONAI loops, ``medvision-train`` subprocesses including a 2-process DDP run, fresh inference
processes); the report's JSON and markdown are checked. The figures themselves mean nothing
at this size; only that they exist and are finite.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import harness
        import plain
        import run

        yield harness, plain, run
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_tiny_suite_writes_a_complete_report(bench_modules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    _, _, run = bench_modules
    threads = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "WANDB_MODE"):  # the suite sets them; restored after
        monkeypatch.setenv(var, os.environ.get(var, str(threads) if var != "WANDB_MODE" else "offline"))
    out = tmp_path / "out"
    rows = run.main(
        ["--size", "tiny", "--threads", str(threads), "--out-dir", str(out), "--workdir", str(tmp_path / "work")]
    )

    report = json.loads((out / "benchmarks.json").read_text())
    assert report["machine"]["torch_threads"] == threads and report["machine"]["cores"] >= 1
    assert report["machine"]["size"] == "tiny"
    assert [r["title"] for r in report["rows"]] == [r["title"] for r in rows]
    assert {r["bench"] for r in report["rows"]} == set(run.BENCHMARKS) - set(run.PEER_BENCHMARKS)
    for row in report["rows"]:
        for key in ("bench", "title", "unit", "a", "b", "ratio", "goal", "met", "a_runs", "b_runs", "note"):
            assert key in row, (row["title"], key)
        assert row["a"] is not None and math.isfinite(row["a"]), row
        assert all(math.isfinite(v) for v in row["a_runs"] + row["b_runs"]), row
        if row["b_runs"] and row["unit"] == "MiB above start":
            # peak memory above the start: a tiny model may allocate nothing new (0 MiB on both sides)
            assert row["a"] >= 0 and row["b"] >= 0, row
            if row["b"] == 0:  # no ratio of 0 MiB: JSON has no NaN, the report writes null
                assert row["ratio"] is None, row
            else:
                assert row["ratio"] == pytest.approx(row["a"] / row["b"])
        elif row["b_runs"]:  # a comparison: both medians and their ratio are finite and positive
            assert row["b"] > 0 and row["ratio"] > 0 and math.isfinite(row["ratio"]), row
            assert row["ratio"] == pytest.approx(row["a"] / row["b"])
        if row["goal"]:
            assert isinstance(row["met"], bool), row

    by_title = {r["title"]: r for r in report["rows"]}
    # identical work: both inference sides see the same volumes and weights, so the test Dice match
    for path in ("predict", "test"):
        speed = by_title[f"Inference speed, {path} path"]
        assert speed["a_name"] == "medvision" and speed["b_name"] == "raw"
        assert speed["extra"]["checksum_medvision"] == pytest.approx(speed["extra"]["checksum_raw"], rel=1e-5)
    assert by_title["Start-up: `--help`"]["a"] > 0
    assert by_title["DDP on CPU: 2 processes vs 1 (1 thread each)"]["a_name"] == "2 processes"
    dice = by_title["Precision: validation Dice after the same steps"]
    assert 0 <= dice["a"] <= 1 and 0 <= dice["b"] <= 1

    md = (out / "BENCHMARKS.md").read_text()
    assert md.startswith("# Benchmarks") and "| # | benchmark |" in md
    assert md.count("\n| ") == len(rows) + 1  # header + one line per row
    assert f"torch threads per process: {threads}" in md


def test_plain_and_medvision_pipelines_list_the_same_steps(bench_modules, tmp_path: Path) -> None:
    """The hand-written plain transforms and nets mirror the config the medvision side composes."""
    _, plain, _ = bench_modules
    from hydra.utils import instantiate

    from medvision.utils.config import compose

    spec = plain.SegSpec(
        patch=(16, 16, 16), num_samples=1, batch_size=1, channels=(4, 8), strides=(2,), num_res_units=0
    )
    cfg = compose([f"paths.root_dir={tmp_path}", *spec.overrides()], output_dir=tmp_path / "run")
    datamodule = instantiate(cfg.data)
    # medvision keeps a sample of the patch-centre voxels, MONAI's tutorial all of them: the same step
    same = {"SampledFgBgIndicesd": "FgBgToIndicesd"}
    ours = [type(t).__name__ for t in datamodule.load_transforms + datamodule.augment_transforms]
    theirs = [type(t).__name__ for t in plain.load_transforms(spec) + plain.augment_transforms(spec)]
    assert [same.get(name, name) for name in ours] == theirs
    sampler = datamodule.augment_transforms[0]
    assert list(sampler.cropper.spatial_size) == [16, 16, 16] and sampler.cropper.num_samples == 1
    model = instantiate(cfg.model, label_names=["background", "grey", "white"], in_channels=1)
    net = plain.unet(spec)
    assert [tuple(p.shape) for p in model.net.parameters()] == [tuple(p.shape) for p in net.parameters()]
    assert type(model.loss_fn).__name__ == "DiceCELoss"
    optimiser = model.configure_optimizers()["optimizer"]
    assert type(optimiser) is type(plain.optimiser(spec, net.parameters()))
    assert optimiser.defaults["lr"] == spec.lr
