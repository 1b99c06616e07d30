"""Resuming a run in its own output folder: where it is, what it had written, its W&B run id.

``medvision-train ckpt_path=<run>/checkpoints/last.ckpt`` continues ``<run>``: the command line
gets ``hydra.run.dir=<run>`` (:func:`resume_overrides`), Lightning restores weights, optimiser,
scheduler and loop counters from the checkpoint, and the data and step randomness are functions
of ``(seed, epoch, step)`` (:mod:`medvision.data.sampling`, :mod:`medvision.callbacks.reseed`),
so the resumed run makes the steps the uninterrupted one would have made.
``ckpt_path=last hydra.run.dir=<run>`` does the same with the newest ``last.ckpt`` /
``preempted.ckpt`` of ``<run>/checkpoints``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from pathlib import Path

#: the file in a run's folder holding its W&B run id (a resumed run logs to the same W&B run)
WANDB_ID_FILE = "wandb_run_id.txt"


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run folder a checkpoint belongs to: ``<run>`` for ``<run>/checkpoints/<name>.ckpt``.

    Returns ``None`` unless the file exists inside the ``checkpoints/`` folder of a medvision run
    (a folder holding ``config_resolved.yaml``).
    """
    path = Path(ckpt_path)
    run = path.parent.parent
    if path.is_file() and path.parent.name == "checkpoints" and (run / "config_resolved.yaml").is_file():
        return run.resolve()
    return None


def resume_overrides(args: Sequence[str]) -> list[str]:
    """Command-line overrides with ``hydra.run.dir=<run>`` added when ``ckpt_path`` is a checkpoint of ``<run>``.

    Nothing is added for a multirun (``-m``), when ``hydra.run.dir`` is given, or when the
    checkpoint is not inside a run folder (:func:`run_dir_of_checkpoint`).

    Args:
        args: the command line after the program name.
    """
    args = list(args)
    if any(a in ("-m", "--multirun") for a in args) or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    ckpt = [a.split("=", 1)[1] for a in args if re.match(r"^\+*ckpt_path=", a)]
    run = run_dir_of_checkpoint(ckpt[-1].strip("'\"")) if ckpt else None
    return [*args, f"hydra.run.dir={run}"] if run is not None else args


def keep_previous_results(output_dir: str | Path, names: Sequence[str] = ("metrics.json",)) -> list[Path]:
    """Rename the results a resumed run would overwrite: ``metrics.json`` -> ``metrics.before_resume_1.json``.

    Args:
        output_dir: the run's folder.
        names: files of results in it.

    Returns:
        The new paths of the files that were there.
    """
    kept = []
    for name in names:
        path = Path(output_dir) / name
        if not path.is_file():
            continue
        k = 1
        while (target := path.with_name(f"{path.stem}.before_resume_{k}{path.suffix}")).exists():
            k += 1
        path.rename(target)
        kept.append(target)
    return kept


def wandb_run_id(output_dir: str | Path, create: bool = True) -> str | None:
    """The W&B run id of the run in ``output_dir``: read from its :data:`WANDB_ID_FILE`, or made and written.

    Args:
        output_dir: the run's folder.
        create: make and write a new id when there is none (rank 0); else return ``None``.
    """
    from medvision.utils.io import atomic_write_text

    path = Path(output_dir) / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    if not create:
        return None
    run_id = secrets.token_hex(4)  # 8 lowercase characters, like W&B's own ids
    atomic_write_text(path, run_id + "\n")
    return run_id
