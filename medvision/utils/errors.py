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


def report_user_errors(fn: F) -> F:
    """Decorate an entry point so a :class:`MedvisionError` ends in one message and exit code 2.

    Bugs (any other exception) keep their traceback.
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
            sys.exit(USER_ERROR_EXIT_CODE)

    return wrapper  # type: ignore[return-value]
