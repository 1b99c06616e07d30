"""``medvision-export``: TorchScript and ONNX files of a segmentation net and a classifier agree
with PyTorch, load without Lightning or medvision, and carry their JSON sidecar.

Tolerance (float32): ``|exported - pytorch| <= 1e-4 + 1e-4 * |pytorch|`` element-wise, the
command's default ``check.atol``/``check.rtol``. Seen here: TorchScript 0 (bit-identical),
ONNX via onnxruntime ~4e-6 (3D U-Net logits) and ~1e-7 (ResNet logits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_in
from medvision.utils.errors import MedvisionError
from predict_fixtures import classifier_checkpoint, segmenter_checkpoint

ATOL = RTOL = 1e-4


@pytest.fixture(scope="module")
def checkpoints(medvision_home: Path) -> dict[str, Path]:
    return {"segmenter": segmenter_checkpoint(medvision_home), "classifier": classifier_checkpoint(medvision_home)}


SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


def _export(home: Path, out: Path, ckpt: Path, fmt: str, *extra: str) -> dict:
    """Export into ``out`` (the file: ``output=`` in ``extra``, else the default ``<run dir>/best.<suffix>``)."""
    from medvision.inference.export import export

    cfg = compose_in(home, out / "run", [f"ckpt_path={ckpt}", f"format={fmt}", *extra], config_name="export")
    return export(cfg)


def _run_exported(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Run the file the way a deployment would: torch.jit / onnxruntime, no medvision."""
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path))(torch.as_tensor(x)).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("kind", ["segmenter", "classifier"])
def test_export_matches_pytorch(
    kind: str,
    fmt: str,
    checkpoints: dict[str, Path],
    medvision_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medvision.inference.predict import load_module

    ckpt = checkpoints[kind]
    info = _export(medvision_home, tmp_path, ckpt, fmt, f"output={tmp_path / 'deploy' / ('net' + SUFFIX[fmt])}")
    path = Path(info["path"])
    assert path == tmp_path / "deploy" / f"net{SUFFIX[fmt]}" and path.is_file()
    assert info["check"]["passed"] and info["check"]["max_abs_diff"] <= ATOL, info["check"]
    assert info["check"]["runtime"].startswith({"torchscript": "torch.jit", "onnx": "onnxruntime"}[fmt])
    printed = capsys.readouterr().out
    assert (
        f"{fmt} vs PyTorch ({info['check']['runtime']}): max |difference| = {info['check']['max_abs_diff']:.3g}"
        in printed
    )
    sidecar = json.loads(Path(f"{path}.json").read_text())
    module, _, _ = load_module(ckpt)
    assert sidecar["label_names"] == list(module.label_names)
    assert sidecar["input"]["channels"] == module.hparams["in_channels"]
    if kind == "segmenter":
        assert sidecar["input"]["example_shape"] == [2, 1, 32, 32, 32]
        assert sidecar["preprocessing"]["spacing_mm"] == [1.0, 1.0, 1.0]
        assert sidecar["preprocessing"]["orientation"] == "RAS"
        assert sidecar["sliding_window"]["roi_size"] == [32, 32, 32]
    else:
        assert sidecar["input"]["example_shape"] == [2, 3, 28, 28] and sidecar["task"] == "multiclass"
        assert "scale" in sidecar["preprocessing"]["intensity"]
    if fmt == "onnx":
        assert sidecar["opset"] == 17
    # an input of another batch size and (for the fully convolutional U-Net) another image size
    shape = [3, 1, 40, 32, 24] if kind == "segmenter" else [3, 3, 28, 28]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7)).numpy()
    with torch.no_grad():
        expected = module.net(torch.as_tensor(x)).numpy()
    got = _run_exported(path, fmt, x)
    assert got.shape == expected.shape
    assert np.all(np.abs(got - expected) <= ATOL + RTOL * np.abs(expected)), float(np.abs(got - expected).max())
    assert np.abs(expected).max() > 0.01  # the check compares real outputs, not zeros


def test_export_refuses_existing_files_and_unknown_formats(
    checkpoints: dict[str, Path], medvision_home: Path, tmp_path: Path
) -> None:
    info = _export(medvision_home, tmp_path, checkpoints["classifier"], "torchscript")
    assert Path(info["path"]) == tmp_path / "run" / "best.pt"  # default: <run dir>/<checkpoint name>.pt
    before = Path(info["path"]).stat().st_mtime_ns
    with pytest.raises(MedvisionError, match="exists already"):
        _export(medvision_home, tmp_path, checkpoints["classifier"], "torchscript")
    assert Path(info["path"]).stat().st_mtime_ns == before
    with pytest.raises(MedvisionError, match="format=tflite is not one of"):
        _export(medvision_home, tmp_path, checkpoints["classifier"], "tflite")
