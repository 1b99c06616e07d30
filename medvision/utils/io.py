"""Safe file writing: atomic writes (a reader never sees a half-written file, a crash never
leaves one) and the refusal to write an output over an input."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Args:
        path: destination file; its parent folder is created if missing.
        data: the content.

    Returns:
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (see :func:`atomic_write_text`)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it is renamed to ``path``.

    For writers that take a file name (NIfTI, TorchScript, ONNX): a reader never sees a
    half-written file and a crash never leaves one.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes[-2:]) if dest.name.endswith(".nii.gz") else dest.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what a plain open() would give
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def refuse_input_as_output(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    what: str = "output",
) -> Path:
    """Refuse to write ``output`` when it is one of ``inputs`` (the same file or folder).

    Paths are compared after resolving symlinks and ``..``, so ``data/../data/x.nii.gz`` and
    a link to ``x.nii.gz`` count as ``x.nii.gz``. Used before writing predictions, reports and
    exports, so that no input is ever overwritten by an output.

    Args:
        output: the path about to be written.
        inputs: paths read by the same command (``None`` entries are ignored).
        what: the config key or option that set ``output`` (named in the message).

    Returns:
        ``output``, resolved.

    Raises:
        MedvisionError: ``output`` is one of ``inputs``.
    """
    from medvision.utils.errors import MedvisionError

    dest = Path(output).resolve()
    for source in inputs:
        if source is not None and Path(source).resolve() == dest:
            raise MedvisionError(
                f"{what}={output} is also an input of this command ({source}); writing it would overwrite the input",
                fix=f"choose another path for {what}",
            )
    return dest
