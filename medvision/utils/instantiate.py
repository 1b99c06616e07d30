"""Instantiate groups of objects (callbacks, loggers) from config, lightning-hydra-template style."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a group whose values carry ``_target_``.

    Args:
        cfg: e.g. ``cfg.callbacks`` or ``cfg.logger``: a mapping of name -> object config.
            Entries set to ``null`` (switched off from the command line) are skipped.

    Returns:
        The objects, in config order.
    """
    from hydra.utils import instantiate

    if not cfg:
        return []
    objects = []
    for _, conf in cfg.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            objects.append(instantiate(conf))
    return objects
