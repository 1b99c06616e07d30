"""Ensembles: several checkpoints predicting as one model, and the portable ensemble folder.

``ckpt_path`` of ``medvision-predict`` and ``medvision-eval`` takes one checkpoint, a list
(``ckpt_path=[a.ckpt,b.ckpt]``) or an **ensemble folder**. The members' class probabilities are
averaged (each member with its own preprocessing from its own checkpoint, inverted to the
input's grid first, so members of different plans ensemble too). Members must solve the same
problem with the same labels; otherwise one clear error names both.

An ensemble folder (written by ``medvision-auto``, or by :func:`write_ensemble`) is one
portable unit::

    <folder>/ensemble.json        members (file names inside the folder), problem, labels, figures
    <folder>/<member>.ckpt        the members' checkpoints (each holds its run config and plan)
    <folder>/postprocessing.json  the postprocessing chosen on cross-validation (segmentation)
    <folder>/plan.json            the plan the members were trained with (when planned)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from medvision.utils.errors import MedvisionError

#: the manifest of an ensemble folder
ENSEMBLE_FILE = "ensemble.json"


def member_checkpoints(ckpt_path: Any) -> tuple[list[Path], Path | None]:
    """The member checkpoints that ``ckpt_path`` names, and the ensemble folder if it is one.

    Args:
        ckpt_path: a checkpoint file, a list of them, or an ensemble folder.

    Raises:
        MedvisionError: a named file or folder does not exist, a folder holds no ``ensemble.json``,
            or the list is empty.
    """
    if isinstance(ckpt_path, (list, tuple, ListConfig)):
        paths = [Path(str(p)).expanduser() for p in ckpt_path]
        if not paths:
            raise MedvisionError("ckpt_path=[] names no checkpoint", fix="ckpt_path=[a.ckpt,b.ckpt] or a single path")
        for p in paths:
            if not p.is_file():
                raise MedvisionError(f"ensemble member {p} does not exist", fix="check the paths in ckpt_path=[...]")
        return paths, None
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir():
        manifest = path / ENSEMBLE_FILE
        if not manifest.is_file():
            raise MedvisionError(
                f"ckpt_path={path} is a folder without {ENSEMBLE_FILE}",
                fix="pass a .ckpt file, a list ckpt_path=[a.ckpt,b.ckpt], or an ensemble folder "
                "written by medvision-auto",
            )
        members = [path / str(m) for m in json.loads(manifest.read_text()).get("members", [])]
        missing = [str(m) for m in members if not m.is_file()]
        if not members or missing:
            raise MedvisionError(
                f"the ensemble folder {path} misses its member checkpoint(s) {missing or '(none listed)'}",
                fix="copy the whole folder (it is one unit), or write it again with medvision-auto",
            )
        return members, path
    return [path], None


def read_folder(folder: Path | None, name: str) -> dict[str, Any] | None:
    """A JSON file of an ensemble folder (``None`` when there is no folder or no such file)."""
    if folder is None or not (folder / name).is_file():
        return None
    return json.loads((folder / name).read_text())


def check_members(members: Sequence[tuple[Path, str, Sequence[str]]]) -> None:
    """Refuse members that do not solve one problem with one set of labels.

    Args:
        members: ``(checkpoint, problem, label names)`` of each member.

    Raises:
        MedvisionError: two members differ; the message names both files and what differs.
    """
    first, problem, labels = members[0]
    for path, other_problem, other_labels in members[1:]:
        if other_problem != problem:
            raise MedvisionError(
                f"the ensemble mixes problems: {first} is a {problem} model, {path} a {other_problem} model",
                fix="ensemble checkpoints of one problem (and one label set) only",
            )
        if list(other_labels) != list(labels):
            raise MedvisionError(
                f"the ensemble mixes label sets: {first} has labels {list(labels)}, {path} has {list(other_labels)}",
                fix="ensemble checkpoints trained on the same labels only",
            )


def write_ensemble(
    folder: Path,
    checkpoints: Mapping[str, Path],
    problem: str,
    label_names: Sequence[str],
    postprocessing: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an ensemble folder (members copied in, atomically as a whole: a temporary folder renamed).

    Args:
        folder: the folder to write (replaced if it exists: it is medvision's output, not user data).
        checkpoints: member name -> checkpoint file (copied to ``<name>.ckpt``).
        problem: ``segmentation`` or ``classification``.
        label_names: the members' labels.
        postprocessing: the decision of :func:`medvision.inference.postprocess.choose_postprocessing`.
        plan: the members' plan (``plan.json`` of a planned run).
        extra: more figures for ``ensemble.json`` (e.g. the cross-validation Dice).
    """
    from medvision.inference.postprocess import DECISION_FILE

    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    members = []
    for name, ckpt in checkpoints.items():
        shutil.copy2(ckpt, tmp / f"{name}.ckpt")
        members.append(f"{name}.ckpt")
    manifest = {
        "members": members,
        "problem": problem,
        "label_names": list(label_names),
        "postprocessing": DECISION_FILE if postprocessing is not None else None,
        **dict(extra or {}),
    }
    (tmp / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if postprocessing is not None:
        (tmp / DECISION_FILE).write_text(json.dumps(postprocessing, indent=2) + "\n")
    if plan is not None:
        (tmp / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder
