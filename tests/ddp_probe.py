"""A callback that writes down, on every rank, the process group it trains in (for tests/test_ddp.py).

It asks torch.distributed itself (the public API), so the test checks what a run really started,
not how Lightning stores its settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class ProcessGroupProbe(pl.Callback):
    """At the start of training, write ``<output_dir>/process_group_rank<r>.json``.

    Args:
        output_dir: the run's folder (``${paths.output_dir}``).
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import torch.distributed as dist

        started = dist.is_available() and dist.is_initialized()
        record: dict[str, Any] = {
            "rank": trainer.global_rank,
            "backend": dist.get_backend() if started else None,
            "world_size": dist.get_world_size() if started else 1,
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / f"process_group_rank{trainer.global_rank}.json").write_text(json.dumps(record))
