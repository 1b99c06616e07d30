"""Config validation against the code itself: every ``_target_`` node is checked against the
signature of the class or function it names.

Hydra's struct mode already rejects unknown keys typed on the command line; keys written in a
user's own config files, and values of the wrong type anywhere, would otherwise surface as a
``TypeError`` deep inside instantiation (or not at all: ``batch_size: "4"``). No schema is
kept beside the code: the parameters and type hints of ``VolumeDataModule``, ``Trainer``,
MONAI's transforms and networks, ... are the schema.

Types are checked where they can be checked for sure (``int``, ``float``, ``bool``, ``str``,
``None``, ``Literal``, enums, and sequences/mappings of those); a parameter annotated with any
other class accepts every value, as does a nested node with its own ``_target_``.
"""

from __future__ import annotations

import collections.abc as cabc
import difflib
import enum
import importlib
import inspect
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medvision.utils.errors import MedvisionError

#: the groups checked by default
CORE_GROUPS: tuple[str, ...] = ("data", "model", "trainer", "callbacks", "logger")
#: arguments ``run()`` passes to the root node of a group itself (``None``: not known before
#: the data are read, so required parameters are not checked there)
PASSED_BY_RUN: dict[str, Collection[str] | None] = {"model": None, "trainer": ("callbacks", "logger")}

_SEQUENCES = (list, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Collection, cabc.Iterable, cabc.Set)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


def _describe(tp: Any) -> str:
    """A short human name of a type annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        choices = [c for a in args if typing.get_origin(a) is typing.Literal for c in typing.get_args(a)]
        others = [_describe(a) for a in args if typing.get_origin(a) is not typing.Literal]
        if choices:
            others.insert(0, "one of " + ", ".join(repr(c) for c in choices))
        return " or ".join(dict.fromkeys(others))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if tp is type(None) or tp is None:
        return "None"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else _describe(a) for a in args)}]" if args else name
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _accepts(value: Any, tp: Any) -> bool:
    """Whether ``value`` (plain YAML data) fits the annotation ``tp``; unknown types accept anything."""
    if tp is Any or tp is inspect.Parameter.empty or isinstance(tp, (str, typing.TypeVar)):
        return True
    if isinstance(value, dict) and "_target_" in value:
        return True  # an object built from its own config node (checked on its own)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or any(value == m.value or value == m.name for m in tp)
    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_accepts(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(_accepts(v, a) for v, a in zip(value, args, strict=True)))
    if tp in _SEQUENCES or origin in _SEQUENCES:
        return isinstance(value, (list, tuple)) and (not args or all(_accepts(v, args[0]) for v in value))
    if tp in _MAPPINGS or origin in _MAPPINGS:
        return isinstance(value, dict) and (len(args) != 2 or all(_accepts(v, args[1]) for v in value.values()))
    return True


def _locate(name: str) -> Any:
    """The object a dotted ``_target_`` names (the longest importable module, then attributes)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module named {parts[0]!r}")


def _signature(target: Any) -> tuple[inspect.Signature, dict[str, Any]] | None:
    """Parameters and resolved type hints of a class's ``__init__`` or of a function."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check keys only
        hints = {}
    return signature, hints


#: annotations narrower than what the code accepts: (``_target_``, parameter) -> the true type.
#: MONAI's ``UNet`` annotates ``strides`` as ``Sequence[int]``, but hands each level's stride to
#: ``Convolution``, which takes one int or one per axis (planned anisotropic nets use the latter).
WIDER_ANNOTATIONS: dict[tuple[str, str], Any] = {
    ("monai.networks.nets.UNet", "strides"): typing.Sequence[int | typing.Sequence[int]],
}


def _check_node(node: Mapping[str, Any], path: str, passed: Collection[str] | None, problems: list[str]) -> None:
    """Keys, types and required parameters of one ``_target_`` node."""
    name = str(node["_target_"])
    try:
        target = _locate(name)
    except Exception as err:  # noqa: BLE001 - any import failure is a bad _target_ for the user
        first = (str(err).splitlines() or [""])[0]
        problems.append(f"{path}._target_: cannot import {name} ({type(err).__name__}: {first})")
        return
    found = _signature(target)
    if found is None:
        return
    signature, hints = found
    hints = {**hints, **{key: tp for (target_name, key), tp in WIDER_ANNOTATIONS.items() if target_name == name}}
    params = {
        k: p
        for k, p in signature.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        if key not in params:
            if not open_ended:
                close = difflib.get_close_matches(str(key), list(params), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(
                    f"{path}.{key}: {name} has no parameter '{key}'{hint}; valid keys: {', '.join(sorted(params))}"
                )
        elif value == "???":
            problems.append(f"{path}.{key} is not set (???): give it a value, e.g. {path}.{key}=...")
        elif key in hints and not _accepts(value, hints[key]):
            problems.append(f"{path}.{key}={value!r}: expected {_describe(hints[key])}")
    if passed is not None and not node.get("_partial_", False) and "_args_" not in node:
        for key, p in params.items():
            if p.default is inspect.Parameter.empty and key not in node and key not in passed:
                problems.append(f"{path}.{key} is missing: {name} requires it")


def _walk(value: Any, path: str, passed: Collection[str] | None, problems: list[str]) -> None:
    if isinstance(value, dict):
        if "_target_" in value:
            _check_node(value, path, passed, problems)
        for key, child in value.items():
            if not str(key).startswith("_"):
                _walk(child, f"{path}.{key}", (), problems)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _walk(child, f"{path}[{i}]", (), problems)


def validate_config(
    cfg: DictConfig | Mapping[str, Any],
    groups: Collection[str] = CORE_GROUPS,
    passed: Mapping[str, Collection[str] | None] = PASSED_BY_RUN,
) -> None:
    """Check every ``_target_`` node under ``groups`` against its target's signature.

    Reports, all at once: keys the target does not take (with the closest valid key and the
    list of valid ones), values of the wrong type (with the expected type, and the choices of
    a ``Literal`` or enum), values left at ``???``, and required parameters not given.

    Args:
        cfg: the composed config (interpolations are resolved here).
        groups: the top-level groups to check.
        passed: for a group's root node, the arguments the caller passes itself (not in the
            config); ``None`` skips the check for required parameters there.

    Raises:
        MedvisionError: one message listing every problem.
    """
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False) if isinstance(cfg, DictConfig) else cfg
    assert isinstance(data, Mapping)
    problems: list[str] = []
    for group in groups:
        node = data.get(group)
        if isinstance(node, dict) and "_target_" in node:
            _check_node(node, group, passed.get(group, ()), problems)
            for key, child in node.items():
                if not str(key).startswith("_"):
                    _walk(child, f"{group}.{key}", (), problems)
        else:
            _walk(node, group, (), problems)
    if problems:
        if len(problems) == 1:  # one line naming the key (and the valid choices)
            what, keys = problems[0], "this key"
        else:
            what = f"the config has {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems)
            keys = "these keys"
        raise MedvisionError(
            what,
            fix=f"correct {keys} in your config file or on the command line "
            "(medvision-train --cfg job prints the composed config)",
        )


def choices_of(tp: Any) -> tuple[Any, ...]:
    """The values a ``Literal`` type (or an enum, or a union of them) admits, in order."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(c for a in args for c in choices_of(a))
    if origin is typing.Literal:
        return args
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(m.value for m in tp)
    return ()


def check_choice(key: str, value: Any, choices: Any) -> Any:
    """``value`` if the closed set ``choices`` admits it, else the error config validation gives.

    The same check :func:`validate_config` makes before anything is built, for objects built
    in Python rather than from a config.

    Args:
        key: the config key, as the user writes it (``data.cache``).
        value: the value given.
        choices: a ``Literal[...]`` type or an enum.

    Returns:
        ``value``.

    Raises:
        MedvisionError: ``value`` is not one of ``choices``; the message names the key and the choices.
    """
    if not _accepts(value, choices):
        raise MedvisionError(
            f"{key}={value!r}: expected {_describe(choices)}",
            fix=f"set {key} to one of: {', '.join(str(c) for c in choices_of(choices))}",
        )
    return value
