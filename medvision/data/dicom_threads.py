"""pydicom's strict reading made safe to enter from several threads at once.

pydicom 3 keeps its value-validation mode in one process-wide setting. ``pydicom.config.strict_reading()``
saves it, sets ``RAISE`` and puts the saved value back on exit. MONAI's ``PydicomReader`` enters that
context for every file's metadata (``Dataset.to_json_dict(suppress_invalid_tags=True)``). When two
threads read DICOM files at once (the data audit's and the fingerprint's thread pools, MONAI's
``CacheDataset`` and ``ThreadDataLoader``), the second thread saves the ``RAISE`` of the first and
puts it back last: the process then reads every later file strictly. A file with one value outside
the standard then fails with ``ValueError: Invalid value for VR ...`` long after the reads that
caused it, e.g. pydicom-data's ``bad_sequence.dcm``, whose SOP Instance UID is a 64-digit hex string.
Seen: 16 reads of two files in 4 threads left ``RAISE`` behind in the first of 20 tries.

:func:`install` replaces ``pydicom.config.strict_reading`` with a counted version under a lock: the
first thread in saves the setting, the last one out restores it. Every place of medvision that reads
images in threads calls it first; it is idempotent and costs nothing when pydicom is not installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_saved: int | None = None


def install() -> bool:
    """Make ``pydicom.config.strict_reading`` safe for threads (once per process).

    Returns:
        ``True`` when pydicom is installed (and now patched), ``False`` when it is not.
    """
    try:
        from pydicom import config
    except ImportError:
        return False
    if getattr(config.strict_reading, "medvision_counted", False):
        return True

    @contextmanager
    def strict_reading() -> Iterator[None]:
        """pydicom's ``strict_reading``, counted over threads: ``RAISE`` while any thread is inside."""
        global _depth, _saved
        with _lock:
            if _depth == 0:
                _saved = config.settings._reading_validation_mode
                config.settings.reading_validation_mode = config.RAISE
            _depth += 1
        try:
            yield
        finally:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    config.settings._reading_validation_mode = _saved

    strict_reading.medvision_counted = True  # type: ignore[attr-defined]
    config.strict_reading = strict_reading
    return True
