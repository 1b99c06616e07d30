"""Keep ``--help`` fast with Hydra plugins installed.

Hydra 1.3 deep-copies its config repository for every config group it lists in ``--help``, and
with it the ``ConfigStore`` singleton, which grows with every installed plugin (the Optuna
sweeper and submitit launcher register dozens of configs): ``medvision-train --help`` went from
1.4 s to 2.6 s. Hydra's main branch fixed this by always reading the live singleton (hydra
PR #2928, "Use latest configstore singleton instead of storing it"); :func:`share_config_store`
does the same for 1.3 by making a copy of the singleton the singleton itself.
"""

from __future__ import annotations

from typing import Any


def share_config_store() -> None:
    """Make ``copy.deepcopy(ConfigStore.instance())`` return the instance (Hydra's singleton stays one)."""
    from hydra.core.config_store import ConfigStore

    def _same(self: ConfigStore, memo: dict[int, Any]) -> ConfigStore:
        return self

    ConfigStore.__deepcopy__ = _same  # type: ignore[method-assign]
