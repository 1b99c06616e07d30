"""User-facing errors: one clear message and a non-zero exit instead of a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: exit status of a run that stopped on a user mistake (bad config, bad file)
USER_ERROR_EXIT_CODE = 2


class MedvisionError(Exception):
    """A mistake in the user's config or data, reported without a traceback.

    Args:
        message: what is wrong, naming the file or config key.
        fix: how to fix it (optional, printed on its own line).
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  fix: {fix}")


def show_tracebacks() -> bool:
    """Whether user errors should keep their traceback (``HYDRA_FULL_ERROR=1`` or ``MEDVISION_DEBUG=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("MEDVISION_DEBUG") == "1"


def user_error(err: BaseException) -> MedvisionError | None:
    """The :class:`MedvisionError` that ``err`` is, or that caused it (``__cause__`` chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, MedvisionError):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def in_multirun_job(args: tuple[Any, ...]) -> bool:
    """Whether a Hydra task called with ``args`` runs as one job of a multirun (``-m``).

    A Hydra task gets its job's ``DictConfig``, and Hydra sets ``HydraConfig`` (with ``mode``) just
    before calling it; a command that is no Hydra app (argparse) never counts, whatever an earlier
    multirun in the same process left in ``HydraConfig``.
    """
    if "hydra" not in sys.modules or not args:
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    return isinstance(args[0], DictConfig) and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def report_user_errors(fn: F) -> F:
    """Decorate an entry point so a :class:`MedvisionError` ends in one message and exit code 2.

    Bugs (any other exception) keep their traceback. In a job of a multirun (:func:`in_multirun_job`)
    the message is printed the same way, but the job raises ``HydraUserError`` instead of exiting:
    ``sys.exit`` there would end the whole sweep (Hydra's basic launcher runs the jobs in its own
    process), while an exception is what Hydra records as the job's failure. The Optuna sweeper then
    records the trial as failed and goes on; Hydra's basic sweeper finishes the batch, prints the
    message (no traceback: ``HydraUserError`` is a Hydra ``CompactHydraException``) and exits with 1.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as raised:
            # a user mistake found inside a constructor reaches us wrapped by Hydra's instantiate
            # (InstantiationException); its cause is the message the user should read
            err = user_error(raised)
            if err is None or show_tracebacks():
                raise
            from rich.console import Console
            from rich.markup import escape

            # soft_wrap: a long path stays on one line (copyable) even through a pipe
            Console(stderr=True, soft_wrap=True).print(
                f"[bold red]medvision error:[/] {escape(str(err))}", highlight=False
            )
            if in_multirun_job(args):
                raise _hydra_user_error()(err.message, err.fix) from raised
            sys.exit(USER_ERROR_EXIT_CODE)

    return wrapper  # type: ignore[return-value]


@functools.cache
def _hydra_user_error() -> type[MedvisionError]:
    from hydra.errors import CompactHydraException

    doc = """A :class:`MedvisionError` that Hydra reports as one message (no traceback) and exit code 1.

    Raised (rather than ``sys.exit(2)``) by a job of a multirun, so that the sweep records the job
    as failed and goes on, and by the Optuna sweeper for a mistake in ``hydra.sweeper``. It pickles
    with its message (joblib and submitit send a failed job's exception back).
    """
    return type("HydraUserError", (MedvisionError, CompactHydraException), {"__doc__": doc, "__module__": __name__})


def __getattr__(name: str) -> Any:
    """``HydraUserError`` (a :class:`MedvisionError` and a Hydra ``CompactHydraException``) is made on
    first use (PEP 562): its base class comes from Hydra, which the commands that are no Hydra app
    (``medvision-compare --help`` answers in 0.05 s; importing Hydra takes 0.15 s) need not load."""
    if name == "HydraUserError":
        return _hydra_user_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
