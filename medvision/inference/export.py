"""``medvision-export ckpt_path=... format=torchscript|onnx [output=...]``: the network alone.

Writes the checkpoint's network (a plain ``nn.Module``; no Lightning, no medvision needed to
load it) as TorchScript (``torch.jit.load``) or ONNX (onnxruntime), through MONAI's
``convert_to_torchscript`` / ``convert_to_onnx``, with a JSON sidecar ``<output>.json``: input
name, shape and channels, label names, the preprocessing the network expects (spacing,
orientation, intensity steps: the run's ``data.transforms.load``), the sliding-window settings
of a segmenter, the ONNX opset, and the numerical check.

The check: the exported model and PyTorch run one seeded random input; the largest absolute
difference is printed and must satisfy ``|a - b| <= check.atol + check.rtol * |b|``
(default 1e-4 and 1e-4, float32). ONNX is run with onnxruntime when installed
(``pip install medvision[export]``), otherwise with ``onnx``'s reference evaluator. A model
that fails the check is not written. The file is written atomically; an existing file is
refused unless ``overwrite=true``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError

FORMATS: dict[str, str] = {"torchscript": ".pt", "onnx": ".onnx"}
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: name of the sidecar JSON inside a TorchScript file (``torch.jit.load(..., _extra_files=...)``)
EMBEDDED_JSON = "medvision.json"


def example_shape(cfg: DictConfig, run_cfg: DictConfig, module: Any, problem: str) -> list[int]:
    """``[B, C, *spatial]`` of the example input: ``cfg.input_shape`` or what the run trained on.

    Segmenters: the sliding-window ROI (the training patch); classifiers: ``data.size`` per axis.

    Raises:
        MedvisionError: the run config names no input size and ``input_shape`` is not set.
    """
    if cfg.get("input_shape"):
        return [int(v) for v in cfg.input_shape]
    channels = int(module.hparams.get("in_channels", 1))
    if problem == "segmentation":
        spatial = module.inferer.get("roi_size") or OmegaConf.select(run_cfg, "data.patch_size")
    else:
        size = OmegaConf.select(run_cfg, "data.size")
        dims = int(module.hparams.get("spatial_dims") or OmegaConf.select(run_cfg, "data.spatial_dims", default=2))
        spatial = [size] * dims if size else None
    if not spatial:
        raise MedvisionError(
            f"the run config of {cfg.ckpt_path} names no input size (data.patch_size / data.size)",
            fix="pass input_shape=[1,<channels>,<spatial sizes...>]",
        )
    return [int(cfg.check.batch_size), channels, *(int(v) for v in spatial)]


def preprocessing_summary(run_cfg: DictConfig) -> dict[str, Any]:
    """What the network expects of its input: spacing, orientation, intensity steps, all load steps."""
    load = OmegaConf.to_container(OmegaConf.select(run_cfg, "data.transforms.load") or {}, resolve=True)
    assert isinstance(load, dict)
    steps = {name: step for name, step in load.items() if isinstance(step, dict)}
    out: dict[str, Any] = {"spacing_mm": None, "orientation": None, "intensity": {}, "load_steps": steps}
    if OmegaConf.select(run_cfg, "data.as_rgb"):
        out["grey_to_rgb"] = "grey images repeated to 3 channels (data.as_rgb)"
    if OmegaConf.select(run_cfg, "data.size"):
        out["image_size"] = OmegaConf.select(run_cfg, "data.size")
    for name, step in steps.items():
        target = str(step.get("_target_", ""))
        if target.endswith(".Spacingd"):
            out["spacing_mm"] = step.get("pixdim")
        elif target.endswith(".Orientationd"):
            out["orientation"] = step.get("axcodes")
        elif "Intensity" in target:
            out["intensity"][name] = step
    return out


def _sidecar(
    cfg: DictConfig,
    run_cfg: DictConfig,
    module: Any,
    problem: str,
    output: Path,
    shape: list[int],
    out_shape: list[int],
    dynamic: dict[str, dict[int, str]] | None,
) -> dict[str, Any]:
    import monai
    import torch

    task = getattr(module, "task", None)
    activation = {"segmentation": "softmax over dim 1", "multilabel": "sigmoid"}.get(
        problem if problem == "segmentation" else str(task), "softmax over dim 1"
    )
    info: dict[str, Any] = {
        "format": cfg.format,
        "file": output.name,
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "problem": problem,
        "network": OmegaConf.select(run_cfg, "model.net._target_"),
        "input": {
            "name": INPUT_NAME,
            "example_shape": shape,
            "channels": shape[1],
            "spatial_dims": len(shape) - 2,
            "dtype": "float32",
            "dynamic_axes": {str(k): v for k, v in (dynamic or {}).get(INPUT_NAME, {}).items()},
        },
        "output": {"name": OUTPUT_NAME, "example_shape": out_shape, "activation": activation},
        "label_names": list(module.label_names),
        "preprocessing": preprocessing_summary(run_cfg),
        "versions": {"torch": torch.__version__, "monai": monai.__version__},
    }
    if problem == "classification":
        info["task"] = task
    else:
        info["sliding_window"] = dict(module.inferer)
    if cfg.format == "onnx":
        info["opset"] = int(cfg.onnx.opset)
    return info


def _dynamic_axes(shape: list[int], out_dims: int) -> dict[str, dict[int, str]]:
    """Batch and spatial axes of the input, batch and spatial axes of the output, named alike."""
    spatial = {i: f"dim{i - 2}" for i in range(2, len(shape))}
    inputs = {0: "batch", **spatial}
    outputs = {0: "batch", **({i: spatial[i] for i in range(2, out_dims)} if out_dims == len(shape) else {})}
    return {INPUT_NAME: inputs, OUTPUT_NAME: outputs}


def _run_onnx(path: Path, x: Any) -> tuple[Any, str]:
    """Outputs of an ONNX file on ``x``: onnxruntime when installed, else onnx's reference evaluator."""
    import numpy as np

    feed = {INPUT_NAME: x.numpy()}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, feed)[0]), f"onnxruntime {onnxruntime.__version__}"
    import onnx
    from onnx.reference import ReferenceEvaluator

    print("onnxruntime is not installed (pip install 'medvision[export]'): checking with onnx's reference evaluator")
    return np.asarray(ReferenceEvaluator(str(path)).run(None, feed)[0]), f"onnx.reference {onnx.__version__}"


def _output_path(cfg: DictConfig) -> Path:
    from medvision.utils.io import refuse_input_as_output

    suffix = FORMATS[cfg.format]
    output = (
        Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / f"{Path(cfg.ckpt_path).stem}{suffix}"
    )
    refuse_input_as_output(output, [cfg.ckpt_path], what="output")
    for path in (output, Path(f"{output}.json")):
        if path.exists() and not cfg.overwrite:
            raise MedvisionError(
                f"{path} exists already; it is not overwritten",
                fix="choose another output=<file>, or pass overwrite=true",
            )
    return output


def _convert(
    cfg: DictConfig, net: Any, x: Any, path: Path, info: dict[str, Any], dynamic: dict[str, dict[int, str]] | None
) -> tuple[Any, str]:
    """Write ``net`` to ``path`` in ``cfg.format`` (MONAI's converters) and run the file on ``x``.

    Returns:
        The exported model's output on ``x`` (numpy) and the runtime that computed it.
    """
    import torch
    from monai.networks.utils import convert_to_onnx, convert_to_torchscript

    if cfg.format == "onnx":
        convert_to_onnx(
            net,
            [x],
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=int(cfg.onnx.opset),
            dynamic_axes=dynamic,
            filename=str(path),
            dynamo=bool(cfg.onnx.dynamo),
        )
        return _run_onnx(path, x)
    try:
        convert_to_torchscript(
            net,
            str(path),
            extra_files={EMBEDDED_JSON: json.dumps(info)},
            use_trace=bool(cfg.torchscript.trace),
            inputs=[x],
        )
    except Exception as err:
        if cfg.torchscript.trace:
            raise
        raise MedvisionError(
            f"torch.jit.script could not compile {info['network']} ({type(err).__name__}: "
            f"{(str(err).strip().splitlines() or [''])[0]})",
            fix="pass torchscript.trace=true",
        ) from err
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(x).float().numpy(), f"torch.jit {torch.__version__}"


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the network of ``cfg.ckpt_path`` to ``cfg.format`` and check it against PyTorch.

    Args:
        cfg: the composed ``export`` config (``conf/export.yaml``).

    Returns:
        The sidecar (also written to ``<output>.json``); ``check.max_abs_diff`` holds the
        largest absolute difference seen.

    Raises:
        MedvisionError: bad options, an existing output, or outputs outside the tolerance.
    """
    import numpy as np
    import torch

    from medvision.inference.predict import load_module
    from medvision.utils.io import atomic_output, atomic_write_json

    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise MedvisionError(
            "medvision-export needs a checkpoint",
            fix="medvision-export ckpt_path=<run>/checkpoints/best.ckpt format=onnx",
        )
    if cfg.format not in FORMATS:
        raise MedvisionError(
            f"format={cfg.format} is not one of {'|'.join(FORMATS)}", fix="format=torchscript or format=onnx"
        )
    if cfg.get("print_config"):
        from medvision.utils.printing import print_config_tree

        print_config_tree(cfg)
    if cfg.format == "onnx" and importlib.util.find_spec("onnx") is None:
        raise MedvisionError(
            "format=onnx needs the onnx package, which is not installed",
            fix="pip install 'medvision[export]' (onnx and onnxruntime)",
        )
    output = _output_path(cfg)
    module, run_cfg, problem = load_module(cfg.ckpt_path, command="medvision-export")
    net = module.net.cpu().eval()
    shape = example_shape(cfg, run_cfg, module, problem)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(int(cfg.check.seed)))
    with torch.no_grad():
        expected = net(x).float()
    dynamic = _dynamic_axes(shape, expected.ndim) if cfg.format == "onnx" and cfg.onnx.dynamic_axes else None
    info = _sidecar(cfg, run_cfg, module, problem, output, shape, list(expected.shape), dynamic)
    with atomic_output(output) as tmp:
        actual, runtime = _convert(cfg, net, x, tmp, info, dynamic)
        reference = expected.numpy()
        max_abs = float(np.abs(actual - reference).max()) if actual.shape == reference.shape else float("inf")
        atol, rtol = float(cfg.check.atol), float(cfg.check.rtol)
        ok = actual.shape == reference.shape and bool(
            np.all(np.abs(actual - reference) <= atol + rtol * np.abs(reference))
        )
        info["check"] = {
            "runtime": runtime,
            "input": f"randn{shape} seed {int(cfg.check.seed)}",
            "atol": atol,
            "rtol": rtol,
            "max_abs_diff": max_abs,
            "passed": ok,
        }
        print(
            f"{cfg.format} vs PyTorch ({runtime}): max |difference| = {max_abs:.3g} "
            f"(tolerance {atol:g} + {rtol:g} x |PyTorch|): {'ok' if ok else 'FAILED'}"
        )
        if not ok:
            raise MedvisionError(
                f"the {cfg.format} export of {cfg.ckpt_path} differs from PyTorch by up to {max_abs:.3g} "
                f"(shapes {list(actual.shape)} vs {list(reference.shape)}); nothing was written",
                fix="try the other format, torchscript.trace=true, another onnx.opset, or a looser check.atol",
            )
    atomic_write_json(f"{output}.json", info)
    print(f"wrote {output} and {output}.json")
    info["path"] = str(output)
    return info
