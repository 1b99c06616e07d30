"""Fit the epoch count to the pace this run actually trains at, once, so the schedule ends in ``max_time``.

A planned run (``plan=auto``) sets ``trainer.max_epochs`` from a step time measured before the
run, in isolation, and ``trainer.max_time`` from the budget. The real pace differs by tens of per
cent (augmentation, data loading, other work on the machine): too slow, and ``max_time`` cuts the
run while the learning rate is still high; too fast, and a fifth of the budget is left unused.
nnU-Net does not have this problem because it trains as long as it trains (1000 epochs, days).

This callback times the first ``after_epochs`` epochs (training and validation separately), then
sets ``max_epochs`` so that the remaining epochs, at the measured pace, end within the time
``max_time`` has left (times ``safety``), and stretches or shrinks the learning-rate schedule with
it (``T_max`` of cosine annealing, ``total_iters`` of polynomial/linear decay; the rate is set to
the new schedule's value at this epoch), so the rate still anneals to its floor in the last
epoch. It decides once more halfway (``refine_at`` of the time or of the decided epochs), from
the epochs since (the first ones run slower while caches fill). The decision is stored in the
checkpoint: a resumed run keeps it. Under DDP rank 0 decides and every rank takes its decision.

Runs without ``max_time`` are left alone. A run that must not depend on the machine's pace
(an exact rerun elsewhere) sets ``+callbacks.budget_pace=null``.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Timer

#: scheduler attributes that count the run's length (in epochs or in steps, per its interval)
LENGTH_ATTRIBUTES = ("T_max", "total_iters")


class BudgetPace(pl.Callback):
    """Set ``max_epochs`` (and the schedule's length) once from the measured pace of the first epochs.

    Args:
        after_epochs: epochs to time before deciding (the first is a warm-up and is left out of
            the pace when there are two or more).
        safety: the share of the remaining time the remaining epochs may fill.
        min_epochs: the fewest epochs the run may be set to.
        val_pass_s: seconds of one validation pass to assume while none has run yet (the plan's
            estimate); ``None``: one epoch's training time.
        refine_at: share of ``max_time`` or of the decided epochs (whichever comes first) after
            which the decision is made once more from the epochs since the first (``1``: never).
    """

    def __init__(
        self,
        after_epochs: int = 2,
        safety: float = 0.95,
        min_epochs: int = 2,
        val_pass_s: float | None = None,
        refine_at: float = 0.5,
    ) -> None:
        if after_epochs < 1 or not 0 < safety <= 1:
            raise ValueError(f"BudgetPace: after_epochs >= 1 and 0 < safety <= 1 (got {after_epochs}, {safety})")
        self.after_epochs = after_epochs
        self.safety = safety
        self.min_epochs = min_epochs
        self.val_pass_s = val_pass_s
        self.refine_at = refine_at
        #: the decision once made: {"planned_epochs", "epochs", "train_epoch_s", "val_pass_s", ...}
        self.decision: dict[str, Any] | None = None
        self._epoch_start = 0.0
        self._val_start = 0.0
        self._epoch_val_s = 0.0
        self._train_s: list[float] = []
        self._val_s: list[float] = []
        #: whether the decision was refined at ``refine_at`` of the time
        self.refined = False
        #: epochs timed when the current decision was made (this process)
        self._decided_at = 0

    # ------------------------------------------------------------------ timing
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_val_s = 0.0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seconds = time.perf_counter() - self._val_start
        self._val_s.append(seconds)
        self._epoch_val_s += seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2 runs the epoch's validation before this hook: take it out of the training time
        self._train_s.append(time.perf_counter() - self._epoch_start - self._epoch_val_s)
        if self.decision is None:
            if len(self._train_s) < self.after_epochs:
                return
            recent = self._train_s[1:] if len(self._train_s) > 1 else self._train_s  # the first warms up
        else:
            # once more at ``refine_at`` of the time, from the epochs since the first decision
            # (early epochs run slower: caches fill, the allocator settles)
            since = self._train_s[self._decided_at :]
            halfway = max(_elapsed_fraction(trainer), (trainer.current_epoch + 1) / self.decision["epochs"])
            if self.refined or len(since) < 2 or halfway < self.refine_at:
                return
            recent = since
        decision = self._decide(trainer, recent) if trainer.is_global_zero else None
        decision = trainer.strategy.broadcast(decision)
        if decision is None:
            return
        if self.decision is not None:
            self.refined = True
        self.decision = decision
        self._decided_at = len(self._train_s)
        # the first decision re-plans the schedule as if from the start (two epochs in); a refinement
        # anneals from the rate reached, over the new remaining epochs (the rate never jumps up)
        self._apply(trainer, restart=not self.refined)
        if trainer.is_global_zero:
            print(
                f"budget pace{' (refined)' if self.refined else ''}: {decision['train_epoch_s']:.1f} s per epoch "
                f"(+{decision['val_pass_s']:.1f} s per validation): {decision['previous_epochs']} epochs -> "
                f"{decision['epochs']}, learning-rate schedule fitted to match"
            )

    # ------------------------------------------------------------------ decision
    def _decide(self, trainer: pl.Trainer, recent: list[float]) -> dict[str, Any] | None:
        remaining = _time_remaining(trainer)
        planned = trainer.max_epochs
        if remaining is None or planned is None or planned < 0:
            return None
        done = trainer.current_epoch + 1
        train_s = statistics.median(recent)
        every = trainer.check_val_every_n_epoch or 1
        if self._val_s:
            val_s = statistics.median(self._val_s)
        else:  # no validation yet: the plan's estimate, else one epoch's training time
            val_s = self.val_pass_s if self.val_pass_s is not None else train_s
        per_epoch = train_s + val_s / every
        more = math.floor(remaining * self.safety / max(per_epoch, 1e-6))
        epochs = max(self.min_epochs, done + 1, done + more)
        return {
            "planned_epochs": int(self.decision["planned_epochs"] if self.decision else planned),
            "previous_epochs": int(planned),
            "epochs": int(epochs),
            "decided_after_epoch": int(trainer.current_epoch),
            "train_epoch_s": round(train_s, 3),
            "val_pass_s": round(val_s, 3),
            "remaining_s": round(remaining, 1),
        }

    def _apply(self, trainer: pl.Trainer, restart: bool = True) -> None:
        """Set ``max_epochs`` and every scheduler's length to the decision; ``restart``: and the rate
        to the new schedule's value at this epoch."""
        assert self.decision is not None
        planned, epochs = self.decision["previous_epochs"], self.decision["epochs"]
        trainer.fit_loop.max_epochs = epochs
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            changed = False
            for name in LENGTH_ATTRIBUTES:
                length = getattr(scheduler, name, None)
                if isinstance(length, int) and length > 0:
                    # epoch-interval schedules count epochs; step-interval ones steps per epoch x epochs
                    setattr(scheduler, name, max(1, round(length * epochs / planned)))
                    changed = True
            closed_form = getattr(scheduler, "_get_closed_form_lr", None)
            if changed and restart and callable(closed_form):
                # the rate now is the new schedule's at this point, as if it had been planned so
                # (the recursive form would carry on from the old curve's rate)
                for group, lr in zip(scheduler.optimizer.param_groups, closed_form(), strict=True):
                    group["lr"] = lr
                scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]

    # ------------------------------------------------------------------ resume
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed run: the decision is back from the checkpoint (the schedulers' lengths come back
        # with their own state); max_epochs is the config's again, before the loop checks it
        if self.decision is not None:
            trainer.fit_loop.max_epochs = self.decision["epochs"]

    def state_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "refined": self.refined}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.decision = state_dict.get("decision")
        self.refined = bool(state_dict.get("refined", False))


def _elapsed_fraction(trainer: pl.Trainer) -> float:
    """The share of ``max_time`` spent (0 without a ``Timer``)."""
    for timer in trainer.callbacks:
        if isinstance(timer, Timer) and (remaining := timer.time_remaining()) is not None:
            elapsed = timer.time_elapsed()
            return elapsed / max(elapsed + remaining, 1e-6)
    return 0.0


def _time_remaining(trainer: pl.Trainer) -> float | None:
    """Seconds ``max_time`` has left (Lightning's ``Timer``), or None without one."""
    remaining = [t.time_remaining() for t in trainer.callbacks if isinstance(t, Timer)]
    found = [r for r in remaining if r is not None]
    return min(found) if found else None
