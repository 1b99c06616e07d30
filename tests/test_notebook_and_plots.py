"""The quickstart notebook runs top to bottom; ``scripts/plot_runs.py`` draws several runs' curves."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import THREADS, FinishedRun

ROOT = Path(__file__).resolve().parent.parent


def _plot_runs():
    spec = importlib.util.spec_from_file_location("plot_runs", ROOT / "scripts" / "plot_runs.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    # the kernel inherits this environment: data/ and logs/ in tmp_path, one thread, W&B offline
    monkeypatch.setenv("MEDVISION_HOME", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", str(THREADS))
    monkeypatch.setenv("QUICKSTART_EPOCHS", "6")
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "metrics.json holds the same numbers: True" in text
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 3, "two overlays and the curves"
    tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert tables and "test/dice_mean" in tables[0]

    (run_dir,) = (tmp_path / "logs" / "quickstart").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # an untrained U-Net scores about 0.15 mean Dice on this split (tests/test_learning.py)
    assert metrics["test/dice_mean"] > 0.35, metrics


def test_plot_runs_draws_every_run_into_one_png(short_run: FinishedRun, tmp_path: Path) -> None:
    plot_runs = _plot_runs()
    a, b = tmp_path / "runs" / "lr_a", tmp_path / "runs" / "lr_b"
    shutil.copytree(short_run.output_dir / "csv", a / "csv")
    shutil.copytree(short_run.output_dir / "csv", b / "csv")
    series = plot_runs.read_series(a)
    assert len(series["val/dice_mean"]) == 3 and [x for x, _ in series["val/dice_mean"]] == [0, 1, 2]

    runs = plot_runs.find_runs([tmp_path / "runs"])  # a folder holding runs stands for each
    assert runs == [a, b]
    assert plot_runs.run_labels(runs) == ["lr_a", "lr_b"]
    fig = plot_runs.draw(
        dict(zip(["lr_a", "lr_b"], [series, series], strict=True)), ["val/dice_mean", "train/loss_epoch"], "epoch"
    )
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["val/dice_mean", "train/loss_epoch"]
    assert all(len(ax.get_lines()) == 2 for ax in panels)

    out = tmp_path / "curves.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_runs.py"), str(a), str(b), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] > 300 and picture.shape[1] > 400 and picture.std() > 10

    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_runs.py"), str(a), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 2 and "exists and is kept" in again.stderr  # never over an existing file
    with pytest.raises(plot_runs.PlotError, match="logged by none"):
        plot_runs.plot_runs([a], tmp_path / "x.png", metrics=["val/nope"])
    empty = tmp_path / "no_runs_here"
    empty.mkdir()
    with pytest.raises(plot_runs.PlotError, match="logger=csv"):
        plot_runs.plot_runs([empty], tmp_path / "y.png")
