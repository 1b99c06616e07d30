"""Prediction for image + clinical classifiers: the input is a CSV of cases, encoded with the training statistics.

``medvision-predict ckpt_path=<fusion run>/checkpoints/best.ckpt input=new_cases.csv output=predictions``
reads the CSV the way training read its manifest (:func:`medvision.data.clinical.read_manifest`:
``image`` or ``image_<modality>`` columns, the clinical columns, an optional ``id``; a ``label``
column is ignored) and encodes each case's record with the encoding stored in the checkpoint
(the training split's means, standard deviations and categories;
:func:`medvision.data.clinical.encode_cases`). A missing value, a non-numeric value in a numeric
column, a category unseen in training or a column the CSV lacks still gives a prediction (the
missing indicator set; an unseen category as no category) and a warning naming the case and the
column. Images go through the run's own ``data.transforms.load``; the rest is
:mod:`medvision.inference.predict`'s (CSV of probabilities, skipped cases, exit codes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medvision.utils.errors import MedvisionError


def takes_clinical(module: Any) -> bool:
    """Whether a module's network reads a clinical vector (a fusion classifier with ``inputs`` both or clinical)."""
    net = getattr(module, "net", None)
    return bool(getattr(module, "clinical", None)) and bool(getattr(net, "uses_clinical", False))


def attach_clinical(
    cases: Sequence[Any], source: str | Path, members: Sequence[Any], shown: Callable[[str], str] | None = None
) -> None:
    """Give each case of a CSV input its clinical record (its row), and warn about values encoded as missing.

    Args:
        cases: the cases :func:`medvision.inference.predict.find_cases` read from the CSV, in row order.
        source: the CSV file (``input=``).
        members: the prediction's members (:class:`medvision.inference.predict.Member`).
        shown: how a warning names a case (``privacy.log_ids``: its name, a pseudonym, a number).

    Raises:
        MedvisionError: ``input`` is not a CSV file.
    """
    from medvision.data.clinical import encode_cases, read_manifest

    path = Path(source).expanduser()
    if not path.is_file() or path.suffix.lower() != ".csv":
        raise MedvisionError(
            f"input={source}: this model reads each case's clinical record too, so input is a CSV of cases",
            fix="pass input=<cases.csv> with the image column(s) and the clinical columns of training "
            f"({', '.join(_columns(members))})",
        )
    image_columns = OmegaConf.select(members[0].run_cfg, "data.image_columns", default=None)
    manifest = read_manifest(path, require_label=False, image_columns=image_columns)
    if len(manifest.rows) != len(cases):
        raise MedvisionError(f"{path}: {len(manifest.rows)} rows but {len(cases)} cases were read")
    for case, row in zip(cases, manifest.rows, strict=True):
        case.clinical = row
    names = [shown(case.name) if shown else case.name for case in cases]
    said: set[str] = set()
    for member in members:
        if takes_clinical(member.module):
            for note in encode_cases(member.module.clinical, manifest.rows, names, manifest.fields)[1]:
                if str(note) not in said:
                    said.add(str(note))
                    _warn(str(note))


def clinical_input(module: Any, case: Any) -> Any:
    """The (1, F) clinical tensor of one case, encoded with ``module``'s training statistics."""
    import torch

    from medvision.data.clinical import encode_cases

    features, _ = encode_cases(module.clinical, [case.clinical or {}], [case.name])
    return torch.as_tensor(features)


def _columns(members: Sequence[Any]) -> list[str]:
    spec = getattr(members[0].module, "clinical", None) or {}
    return [*(spec.get("numeric") or {}), *(spec.get("categorical") or {})]


def _warn(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)
