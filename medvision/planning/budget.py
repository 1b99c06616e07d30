"""The budget a plan must fit: wall time and device memory, and the measured speed of a net.

``plan.time_budget`` is a duration (``10min``, ``2h``, ``24h``, ``90s`` or seconds);
``auto`` is 10 minutes on a CPU and 24 hours on a GPU. ``plan.memory_gb`` is the device memory
a training step may use; ``auto`` is the GPU's memory, or half the machine's RAM on a CPU.

Speed is measured, not guessed: :func:`step_seconds` times a few real training steps
(forward, backward, optimiser) of the planned MONAI ``DynUNet`` at the planned patch and batch on
the configured device, and caches the figure by device, threads and net, so that planning the
same data twice on one machine gives the same plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvision.utils.errors import MedvisionError

#: wall time of ``time_budget=auto`` on a CPU and on a GPU
AUTO_BUDGET_S = {"cpu": 600.0, "gpu": 86_400.0}
_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(value: Any, accelerator: str = "cpu") -> float:
    """Seconds of a duration: ``600``, ``"90s"``, ``"10min"``, ``"2h"``, ``"1d"``, or ``"auto"``.

    Raises:
        MedvisionError: the value is no duration.
    """
    if value is None or str(value).strip().lower() == "auto":
        return AUTO_BUDGET_S["gpu" if accelerator in ("gpu", "cuda") else "cpu"]
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-z]*)\s*", str(value).lower())
    if not match or (match.group(2) and match.group(2) not in _UNITS):
        raise MedvisionError(
            f"plan.time_budget={value!r} is not a duration",
            fix="write e.g. plan.time_budget=10min, 2h, 24h, 90s or a number of seconds",
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def device_memory_gb(memory_gb: Any, accelerator: str) -> float:
    """``plan.memory_gb``, or for ``auto`` the GPU's memory (CPU: half the machine's RAM)."""
    if memory_gb is not None and str(memory_gb).lower() != "auto":
        return float(memory_gb)
    if accelerator in ("gpu", "cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 2**30
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return pages * size / 2**30 / 2


def uses_gpu(accelerator: str) -> bool:
    """Whether the trainer's ``accelerator`` trains on a GPU here."""
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def _device_name(gpu: bool) -> str:
    import platform

    import torch

    if gpu:
        return torch.cuda.get_device_name(0)
    # not the thread count: DDP ranks re-plan with other thread settings and must read the same figure
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} cpus"


def step_seconds(
    in_channels: int,
    out_channels: int,
    patch: Sequence[int],
    batch: int,
    net: dict[str, Any],
    gpu: bool,
    cache_dir: str | Path | None = None,
    steps: int = 2,
) -> float:
    """Seconds of one training step (fp32 forward, Dice+CE backward, AdamW) of the planned net.

    Args:
        in_channels: input channels.
        out_channels: classes.
        patch: patch size.
        batch: patches per step.
        net: the ``model.net`` node of the plan (``_target_`` a MONAI network class and its arguments).
        gpu: time it on the GPU.
        cache_dir: folder caching the measurement (``None``: measure every time).
        steps: timed steps (after one warm-up step).
    """
    key = json.dumps([_device_name(gpu), in_channels, out_channels, list(patch), batch, net], sort_keys=True)
    path = Path(cache_dir) / f"speed-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return float(json.loads(path.read_text())["step_s"])
        except (ValueError, KeyError, OSError):
            pass
    import importlib

    import torch
    from monai.losses import DiceCELoss

    device = torch.device("cuda" if gpu else "cpu")
    module, _, name = str(net["_target_"]).rpartition(".")
    kwargs = {k: v for k, v in net.items() if not k.startswith("_")}
    kwargs.update(in_channels=in_channels, out_channels=out_channels, spatial_dims=len(patch))
    model = getattr(importlib.import_module(module), name)(**kwargs).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(batch, in_channels, *patch, device=device)
    y = torch.randint(0, out_channels, (batch, 1, *patch), device=device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimiser.step()

    step()
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if gpu:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if path is not None:
        # cached, so that the same data and budget give the same plan again; a time taken while other
        # work loaded the CPU is too slow (the load is kept beside it), and the run's budget_pace
        # re-fits the epochs to the pace it really trains at
        from medvision.utils.io import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": json.loads(key), "step_s": seconds, "load_average": _load_average()}
        atomic_write_text(path, json.dumps(record))
    return seconds


def _load_average() -> float | None:
    """The 1-minute load average while timing (``None`` where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
