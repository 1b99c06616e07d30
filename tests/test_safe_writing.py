"""Safe writing and loading: no output over an input, no finished run overwritten, atomic
reports, checkpoints read with ``weights_only``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bad_data import msd_with_one_bad_case
from conftest import FinishedRun
from medvision.utils.errors import MedvisionError
from medvision.utils.io import atomic_write_json, refuse_input_as_output


def test_an_output_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "data" / "case.nii.gz"
    image.parent.mkdir()
    image.write_bytes(b"x")
    (tmp_path / "link.nii.gz").symlink_to(image)
    for same in (image, tmp_path / "data" / ".." / "data" / "case.nii.gz", tmp_path / "link.nii.gz"):
        with pytest.raises(MedvisionError) as err:
            refuse_input_as_output(same, [None, tmp_path / "other.nii.gz", image], what="predict.output")
        assert "predict.output" in str(err.value) and str(image) in str(err.value)
    assert refuse_input_as_output(tmp_path / "out.nii.gz", [image, None]) == (tmp_path / "out.nii.gz").resolve()
    assert image.read_bytes() == b"x"


def test_an_audit_report_over_a_data_file_is_refused(tmp_path: Path) -> None:
    from medvision.data.datamodule import VolumeDataModule

    root = msd_with_one_bad_case(tmp_path / "Task", None)
    manifest = root / "dataset.json"
    before = manifest.read_text()
    with pytest.raises(MedvisionError) as err:
        VolumeDataModule(root=str(root), audit_report=str(manifest)).info
    assert "data.audit_report" in str(err.value)
    assert manifest.read_text() == before


def test_atomic_json_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "sub" / "report.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert os.listdir(tmp_path / "sub") == ["report.json"]
    with pytest.raises(TypeError):
        atomic_write_json(path, {"not json": object()})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}, "a failed write keeps the old file"
    assert os.listdir(tmp_path / "sub") == ["report.json"]


@pytest.mark.parametrize("finished", ["metrics.json", "checkpoints/last.ckpt"])
def test_a_finished_run_dir_is_not_overwritten(compose_run, tmp_path: Path, finished: str) -> None:
    from medvision.train import run

    cfg = compose_run(["experiment=synthetic_seg2d", "debug=fast_dev_run"], name="done")
    marker = Path(cfg.paths.output_dir) / finished
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("results of an earlier run")
    with pytest.raises(MedvisionError) as err:
        run(cfg)
    assert cfg.paths.output_dir in str(err.value) and "ckpt_path=" in str(err.value)
    assert marker.read_text() == "results of an earlier run"
    assert not (Path(cfg.paths.output_dir) / "config_resolved.yaml").exists()


def test_an_output_dir_equal_to_the_data_folder_is_refused(compose_run, tmp_path: Path) -> None:
    from medvision.train import run
    from medvision.utils.config import compose

    root = msd_with_one_bad_case(tmp_path / "Task", None)
    cfg = compose(
        [f"paths.root_dir={tmp_path}", "data=msd", f"data.root={root}", "print_config=false"], output_dir=root
    )
    with pytest.raises(MedvisionError) as err:
        run(cfg)
    assert "paths.output_dir" in str(err.value) and str(root) in str(err.value)
    assert not (root / "config_resolved.yaml").exists()


def test_evaluation_refuses_a_folder_with_results(short_run: FinishedRun, compose_run) -> None:
    from medvision.evaluate import evaluate

    cfg = compose_run([f"ckpt_path={short_run.best_ckpt}"], config_name="eval", name="eval")
    (Path(cfg.paths.output_dir) / "metrics.json").write_text("{}")
    with pytest.raises(MedvisionError) as err:
        evaluate(cfg, overrides=[])
    assert "already holds the results" in str(err.value)
    assert (Path(cfg.paths.output_dir) / "metrics.json").read_text() == "{}"


def test_a_checkpoint_with_code_in_it_is_not_run(tmp_path: Path) -> None:
    """``weights_only`` loading: a pickle that would run code is refused, and the code never runs."""
    import torch

    from medvision.models.loading import load_checkpoint

    witness = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (witness,))

    torch.save({"medvision_config": {}, "state_dict": {}, "payload": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(MedvisionError) as err:
        load_checkpoint(tmp_path / "evil.ckpt")
    assert "evil.ckpt" in str(err.value)
    assert not witness.exists()
