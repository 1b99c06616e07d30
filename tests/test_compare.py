"""``medvision-compare --paper medmnist`` puts finished MedMNIST runs beside the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from conftest import run_cli
from medvision.baselines.medmnist import MODELS, PAPER, PUBLISHED, published
from medvision.data.medmnist_info import INFO
from medvision.utils.config import resolved_container


def _finished_run(compose_run, folder: Path, overrides: list[str], metrics: dict[str, float], name: str) -> Path:
    cfg = compose_run(overrides, name=name)
    folder.mkdir(parents=True)
    (folder / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved_container(cfg)))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_published_numbers_are_well_formed() -> None:
    """Every number names where the paper publishes it; one not (yet) read in that table names
    the source it was read in instead. Holds before and after a number is verified."""
    assert PUBLISHED
    for entry in PUBLISHED:
        assert entry.flag in INFO and entry.model in MODELS
        assert isinstance(entry.verified, bool), entry
        # the paper's table: 2D sets in Table 3, 3D sets in Table 4
        table = 4 if INFO[entry.flag].spatial_dims == 3 else 3
        assert entry.source == f"{PAPER}, Table {table}", entry
        if not entry.verified:
            assert entry.seen_in.strip(), (
                f"{entry.flag}/{entry.model}: an unverified number must name where it was read"
            )
        for value in (entry.acc, entry.auc):
            assert value is None or 0.0 < value <= 1.0
    assert len({(e.flag, e.model) for e in PUBLISHED}) == len(PUBLISHED), "one entry per set and model"


def test_compare_prints_run_beside_paper(compose_run, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _finished_run(
        compose_run,
        logs / "train" / "runs" / "a",
        ["experiment=medmnist/resnet18_28", "data.flag=pneumoniamnist"],
        {"test/acc": 0.800, "test/auc": 0.950, "val/auc": 0.97},
        "a",
    )
    _finished_run(
        compose_run,
        logs / "train" / "runs" / "b",
        ["experiment=medmnist/resnet50_224", "data.flag=pneumoniamnist"],
        {"test/acc": 0.900, "test/auc": 0.960},
        "b",
    )
    _finished_run(
        compose_run,
        logs / "train" / "runs" / "c",
        ["experiment=medmnist/resnet18_3d", "data.flag=organmnist3d"],
        {"test/acc": 0.850, "test/auc": 0.990},
        "c",
    )
    # a segmentation run and an unfinished run are not MedMNIST results
    _finished_run(
        compose_run, logs / "train" / "runs" / "seg", ["experiment=synthetic_seg2d"], {"test/dice_mean": 0.8}, "seg"
    )
    (logs / "train" / "runs" / "unfinished").mkdir()
    (logs / "train" / "runs" / "unfinished" / "metrics.json").write_text("{}")

    result = run_cli("medvision-compare", ["--paper", "medmnist", str(logs), "--json"], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout
    rows = {Path(r["run"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == {"a", "b", "c"}
    a = rows["a"]
    paper = published("pneumoniamnist", "resnet18_28")
    assert paper is not None and a["model"] == "ResNet-18 (28)"
    assert a["paper_auc"] == paper.auc and abs(a["diff_auc"] - (0.950 - paper.auc)) < 1e-9
    assert abs(a["diff_acc"] - (0.800 - paper.acc)) < 1e-9
    assert (
        rows["b"]["model"] == "ResNet-50 (224)"
        and rows["b"]["paper_acc"] == published("pneumoniamnist", "resnet50_224").acc
    )
    assert (
        rows["c"]["model"] == "ResNet-18 + 3D"
        and rows["c"]["paper_auc"] == published("organmnist3d", "resnet18_3d").auc
    )

    table = run_cli("medvision-compare", ["--paper", "medmnist", str(logs)], cwd=tmp_path, timeout=60)
    assert table.returncode == 0, table.stdout
    text = table.stdout
    assert "pneumoniamnist" in text and "ResNet-18 (28)" in text and "organmnist3d" in text
    assert f"{paper.auc:.3f}" in text and f"{0.950 - paper.auc:+.3f}" in text and "unverified" in text


def test_compare_on_a_folder_without_runs_says_so(tmp_path: Path) -> None:
    result = run_cli("medvision-compare", ["--paper", "medmnist", str(tmp_path)], cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and "no finished MedMNIST runs" in result.stdout
