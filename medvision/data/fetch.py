"""Download official dataset files with their checksum: ``medvision-data fetch ...``.

Standard library only (``urllib``, ``hashlib``): importing this module is instant.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from medvision.utils.errors import MedvisionError

#: seconds to wait for the server to answer (offline machines fail at DNS, in milliseconds)
TIMEOUT_S = 15.0


def md5sum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike[str], md5: str | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; check its MD5; rename into place.

    Args:
        url: the address.
        dest: the final file (its folder is created).
        md5: expected hex MD5 (``None``: not checked).
        timeout: seconds for the connection and each read.

    Raises:
        MedvisionError: no network, the server refused, or the checksum differs.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                out.write(block)
        if md5 is not None and (found := md5sum(tmp)) != md5:
            raise MedvisionError(
                f"{url} arrived with MD5 {found}, expected {md5}", fix="try again; the download was damaged"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise MedvisionError(
            f"could not download {url} ({type(err).__name__}: {reason})",
            fix=f"with no network here, download it elsewhere and put it at {dest}",
        ) from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def fetch_medmnist(flag: str, size: int = 28, dest: str | os.PathLike[str] = "data/medmnist") -> Path:
    """Download an official MedMNIST file from Zenodo into ``dest`` (skipped if already there, MD5-checked).

    Args:
        flag: the set, e.g. ``pathmnist`` or ``organmnist3d``.
        size: 28, 64, 128, 224 (2D) or 28, 64 (3D).
        dest: folder of the ``.npz`` files (``${paths.data_dir}/medmnist`` for the data config).

    Returns:
        The file's path.

    Raises:
        MedvisionError: unknown flag or size, no network (saying where to put the file by
            hand), or a checksum mismatch.
    """
    from medvision.data.medmnist_info import medmnist_info

    info = medmnist_info(flag)
    info.check_size(size)
    path = Path(dest) / info.filename(size)
    expected = info.md5[size]
    if path.is_file():
        if md5sum(path) == expected:
            return path
        raise MedvisionError(
            f"{path} exists but its MD5 is not the official {expected}", fix=f"delete {path} and fetch it again"
        )
    try:
        return download(info.url(size), path, md5=expected)
    except MedvisionError as err:
        raise MedvisionError(
            f"MedMNIST {flag} ({size} px): {err.message}",
            fix=f"download that file by hand (MD5 {expected}) and put it at {path.resolve()}",
        ) from err
