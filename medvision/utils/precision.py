"""The machine's precision, ``${medvision.precision:${trainer.accelerator}}`` (the default experiment's).

Mixed precision where the hardware does it natively, fp32 elsewhere:

- ``cpu``: ``bf16-mixed`` on a CPU whose cores multiply bfloat16 in hardware (Intel AMX,
  ``amx_bf16``: Sapphire Rapids and newer Xeons), ``32-true`` on other CPUs, where oneDNN emulates
  bfloat16 and autocast only slows a step down;
- ``gpu``/``cuda``: ``16-mixed``, what ``trainer=gpu`` and ``trainer=ddp`` use (and nnU-Net trains in);
- anything else: ``32-true``.

On AMX, bfloat16 autocast trains the default 3D U-Net 1.5-1.7x faster than fp32 with the same
validation Dice (BENCHMARKS.md rows 7 and 8). The value is resolved when the run starts; the run's
``config_resolved.yaml``, its checkpoints and its loggers record it, and ``trainer.precision=32-true``
on the command line fixes fp32 on any machine.
"""

from __future__ import annotations

from functools import cache

#: where no mixed precision is native
DEFAULT = "32-true"
#: a CPU's choice where its cores have bfloat16 matrix units
CPU_BF16 = "bf16-mixed"
#: a GPU's choice (the trainer=gpu and trainer=ddp presets')
GPU_MIXED = "16-mixed"


@cache
def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX), as torch reports it."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # an older torch: no report, no guess
        return False
    return bool(capabilities().get("amx_bf16", False))


def default_precision(accelerator: str = "cpu") -> str:
    """The precision ``accelerator`` trains in natively on this machine (see the module's rules)."""
    accelerator = str(accelerator)
    if accelerator == "cpu":
        return CPU_BF16 if cpu_has_bf16_matrix_units() else DEFAULT
    if accelerator in ("gpu", "cuda"):
        return GPU_MIXED
    return DEFAULT
