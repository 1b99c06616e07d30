"""Names derived from the data's labels (metric suffixes, file-safe names)."""

from __future__ import annotations

import re


def safe_name(label: str) -> str:
    """A label as a metric-name suffix: lower case, runs of other characters as ``_``."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", label).strip("_").lower() or "label"
