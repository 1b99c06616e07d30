"""A fix of Lightning 2.6 that DDP metric equality needs (applied by ``medvision.train.build``).

``self.log(name, value, sync_dist=True)`` averages an epoch's values over DDP ranks as
``sync(sum of value x batch size) / sync(sum of batch sizes)``, both synced with a mean. Lightning
keeps the batch-size sum in an int64 tensor, and a mean over integers floors (gloo copies the
divided sum back into the integer tensor; NCCL's AVG divides integers): with uneven counts
(3 validation cases on 2 ranks: 2 + 1 -> 1.5 -> 1) every such metric (``val/loss``,
``test/loss``) is inflated, here by 1.5x. Reported as Lightning issue #21859, fixed upstream by
PR #21839 ("sync the accumulator in the value's floating dtype"); :func:`fix_mean_sync` applies
the same change to ``_ResultMetric.compute`` for the Lightning 2.6 this project pins.
"""

from __future__ import annotations

from typing import Any


def fix_mean_sync() -> None:
    """Sync Lightning's batch-size accumulator as a float, so uneven DDP counts give the true mean.

    Idempotent; does nothing on a Lightning other than 2.6 (whose code it replaces).
    """
    import lightning
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric

    if not lightning.__version__.startswith("2.6.") or getattr(_ResultMetric.compute, "_medvision_fix", False):
        return

    def compute(self: Any) -> Any:
        if self.is_tensor:
            value = self.meta.sync(self.value.clone())  # `clone` because `sync` is in-place
            if self.meta.is_mean_reduction:
                cumulated_batch_size = self.meta.sync(self.cumulated_batch_size.to(value.dtype))
                return value / cumulated_batch_size
            return value
        return self.value.compute()

    compute._medvision_fix = True  # type: ignore[attr-defined]
    _ResultMetric.compute = compute  # type: ignore[method-assign]
