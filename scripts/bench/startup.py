"""Benchmark 5: start-up of the command line, ``medvision-train --help`` and ``--cfg job``.

Wall time of fresh processes (``subprocess``, median of the rounds), beside the time Python
takes to import the training stack (torch, Lightning, MONAI), which the CLI must not pay
before it needs it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import harness

SIZES: dict[str, dict[str, Any]] = {"tiny": {"rounds": 1}, "full": {"rounds": 5}}
COMMANDS: dict[str, list[str]] = {
    "--help": [str(harness.BIN / "medvision-train"), "--help"],
    "--cfg job": [str(harness.BIN / "medvision-train"), "--cfg", "job"],
    "import torch+lightning+monai": [sys.executable, "-c", "import torch, lightning.pytorch, monai"],
}
GOALS = {"--help": 1.5, "--cfg job": 3.0}
#: the import reference is slow (seconds a process) and has no goal: fewer rounds
REFERENCE, REFERENCE_ROUNDS = "import torch+lightning+monai", 3


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process; it must exit 0."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=harness.REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}")
    return wall


def run(ctx: harness.Context) -> list[dict[str, Any]]:
    """Rows: median wall time of each command (goals: --help < 1.5 s, --cfg job < 3 s)."""
    rounds = ctx.pick(SIZES)["rounds"]
    env = ctx.env()
    commands = {k: v for k, v in COMMANDS.items() if ctx.size == "full" or k in GOALS}  # smoke: the CLI only
    results = harness.alternate(
        {name: (lambda i, c=cmd: {"s": timed(c, env)}) for name, cmd in commands.items()},
        max(rounds, ctx.repeats if ctx.size == "full" else 1),
        ctx.log,
        rounds={REFERENCE: REFERENCE_ROUNDS},
    )
    note = (
        "wall time of a fresh process (Python start-up included), rounds alternate between the commands; "
        f"the import reference (~10 s a process) {REFERENCE_ROUNDS} rounds"
    )
    return [
        harness.value_row(
            "5",
            f"Start-up: `{name}`" if name.startswith("-") else f"Start-up reference: {name}",
            "s",
            harness.column(results[name], "s"),
            goal=GOALS.get(name),
            note=note,
        )
        for name in commands
    ]
