"""Patient privacy in what a run writes and logs: keyed pseudonyms, hidden data paths.

``privacy.log_ids`` (``conf/privacy/default.yaml``) decides what every output of a run shows of
its cases and data: W&B, TensorBoard and CSV logs, pictures (file names, titles, captions),
``test_cases.csv`` and the W&B ``test_cases`` table, ``splits.json``, the data audit report, the
prediction CSV and summary, and the config written to ``config_resolved.yaml``, to the loggers and
into every checkpoint:

========== =========================================== ===========================================
log_ids    case ids shown                              data paths (``data.root``, ``data.manifest``,
                                                       ``data.splits_file``, ``input``)
========== =========================================== ===========================================
pseudonym  ``case-<12 hex>``: HMAC-SHA256 of the id     ``<private:12 hex>`` (HMAC of the path)
           under a user-held key (same id + key ->
           same pseudonym, in every run)
path       the ids as the data name them (file names)  as given
none       none: pictures and rows are numbered        ``<private:12 hex>``
auto       ``pseudonym`` when the data come from DICOM, else ``path`` (the default)
========== =========================================== ===========================================

The key (never written to a run folder, never logged) is, first found: ``privacy.key_file``;
the environment variable ``MEDVISION_PRIVACY_KEY`` (the key itself); the file named by
``MEDVISION_PRIVACY_KEY_FILE``; ``~/.config/medvision/privacy.key`` (``$XDG_CONFIG_HOME``),
made with 32 random bytes on first use. Whoever holds the key can recompute the pseudonym of a
case id or path; without it a pseudonym cannot be traced back (not even by trying names).

A leaf module: it imports no other medvision package but :mod:`medvision.utils`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from medvision.utils.errors import MedvisionError

#: what ``privacy.log_ids`` chooses
LogIds = Literal["auto", "pseudonym", "path", "none"]
LOG_IDS: tuple[str, ...] = get_args(LogIds)

#: environment variables naming the key (the key itself; a file holding it)
KEY_ENV = "MEDVISION_PRIVACY_KEY"
KEY_FILE_ENV = "MEDVISION_PRIVACY_KEY_FILE"
#: a key shorter than this (characters) is refused
MIN_KEY_LENGTH = 16

#: config keys that locate the data a run reads (hidden unless ``log_ids`` shows paths)
PRIVATE_KEYS: tuple[str, ...] = ("data.root", "data.manifest", "data.splits_file", "input")

_PSEUDONYM = re.compile(r"^case-[0-9a-f]{12}$")
_TOKEN = re.compile(r"^<private:[0-9a-f]{12}>$")


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/medvision/privacy.key`` (default ``~/.config/medvision/privacy.key``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "medvision" / "privacy.key"


def new_key_file(path: str | os.PathLike[str]) -> Path:
    """Write a new random key (64 hex characters) to ``path``, readable by its owner only.

    Never replaces an existing file: when another process made it first, that key is kept
    (DDP ranks starting together agree on one key).
    """
    dest = Path(path).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: its key is kept
            os.link(tmp, dest)  # atomic, and fails if the file exists: never replaces a key
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _key_from_file(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise MedvisionError(
            f"the privacy key file {path} ({what}) does not exist",
            fix=f"point {what} at your key file, or make one: "
            'python -c "import secrets; print(secrets.token_hex(32))" > <file> (keep it: same key, same pseudonyms)',
        )
    return _checked(path.read_text(encoding="utf-8").strip(), f"{path} ({what})")


def _checked(text: str, where: str) -> bytes:
    if len(text) < MIN_KEY_LENGTH:
        raise MedvisionError(
            f"the privacy key of {where} has {len(text)} characters; at least {MIN_KEY_LENGTH} are needed",
            fix='use a long random key: python -c "import secrets; print(secrets.token_hex(32))"',
        )
    return text.encode("utf-8")


def read_key(key_file: str | os.PathLike[str] | None = None, create: bool = True) -> tuple[bytes, str]:
    """The privacy key and where it came from (see the module docstring for the order).

    Args:
        key_file: a file holding the key (``privacy.key_file``, ``--key``); ``None``: the
            environment, then the default file.
        create: make the default key file when nothing else names a key (``False``: refuse).

    Raises:
        MedvisionError: a named key file is missing, a key is too short, or no key is named and
            ``create`` is ``False``.
    """
    if key_file:
        path = Path(key_file).expanduser()
        return _key_from_file(path, "the key file given"), str(path)
    if os.environ.get(KEY_ENV):
        return _checked(os.environ[KEY_ENV].strip(), f"${KEY_ENV}"), f"${KEY_ENV}"
    if os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV]).expanduser()
        return _key_from_file(path, f"${KEY_FILE_ENV}"), str(path)
    path = default_key_file()
    if not path.is_file():
        if not create:
            raise MedvisionError(
                "no privacy key is given",
                fix=f"pass --key <file> or set ${KEY_ENV} / ${KEY_FILE_ENV}; make a key with "
                'python -c "import secrets; print(secrets.token_hex(32))" > <file> and keep it',
            )
        new_key_file(path)
        print(f"privacy: made a new pseudonym key in {path} (keep it: the same key gives the same pseudonyms)")
    return _key_from_file(path, "the default key file"), str(path)


def keyed_digest(key: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of ``kind`` and ``value`` under ``key``, as hex (kinds keep uses apart)."""
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """8 hex characters that tell keys apart without revealing them."""
    return keyed_digest(key, "fingerprint", "medvision")[:8]


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` is a case pseudonym (``case-<12 hex>``)."""
    return bool(_PSEUDONYM.match(value))


def is_private_token(value: Any) -> bool:
    """Whether ``value`` is a hidden path (``<private:12 hex>``)."""
    return isinstance(value, str) and bool(_TOKEN.match(value))


def _select(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Privacy:
    """What a run's outputs show of its cases and data (see the module docstring).

    Args:
        log_ids: ``auto``, ``pseudonym``, ``path`` or ``none``.
        key_file: the file holding the key (``None``: the environment, then the default file).
        from_dicom: the data come from DICOM files (``auto`` then means ``pseudonym``).
        private_keys: dotted config keys whose values locate the data (hidden unless ``path``).
    """

    log_ids: str = "auto"
    key_file: str | None = None
    from_dicom: bool = False
    private_keys: tuple[str, ...] = PRIVATE_KEYS
    _key: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.log_ids not in LOG_IDS:
            raise MedvisionError(
                f"privacy.log_ids={self.log_ids!r} is not one of {', '.join(LOG_IDS)}",
                fix="privacy.log_ids=pseudonym (keyed pseudonyms), path (ids as named), none (no ids) or auto",
            )
        self.private_keys = tuple(self.private_keys)

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None, from_dicom: bool = False) -> Privacy:
        """The settings of a ``privacy`` config node (``None``: the defaults)."""
        node = node or {}
        keys = node.get("private_keys")
        return cls(
            log_ids=str(node.get("log_ids") or "auto"),
            key_file=str(node["key_file"]) if node.get("key_file") else None,
            from_dicom=from_dicom,
            private_keys=tuple(str(k) for k in keys) if keys is not None else PRIVATE_KEYS,
        )

    # ----------------------------------------------------------------- mode and key
    @property
    def mode(self) -> str:
        """``pseudonym``, ``path`` or ``none`` (``auto`` resolved by :attr:`from_dicom`)."""
        if self.log_ids == "auto":
            return "pseudonym" if self.from_dicom else "path"
        return self.log_ids

    @property
    def active(self) -> bool:
        """Whether ids and data paths are hidden (any mode but ``path``)."""
        return self.mode != "path"

    @property
    def key(self) -> bytes:
        """The key (read, or made, on first use)."""
        if self._key is None:
            self._key = read_key(self.key_file)[0]
        return self._key

    def describe(self) -> str:
        """One line for the console: the mode and why."""
        why = " (auto: the data come from DICOM)" if self.log_ids == "auto" and self.from_dicom else ""
        return f"privacy.log_ids={self.mode}{why}"

    # ----------------------------------------------------------------- ids and paths
    def pseudonym(self, value: str) -> str:
        """``case-<12 hex>`` of ``value`` (a value that is a pseudonym already is kept)."""
        value = str(value)
        return value if is_pseudonym(value) else "case-" + keyed_digest(self.key, "case", value)[:12]

    def case_id(self, value: Any) -> str | None:
        """What outputs show for the case id ``value``: itself (``path``), its pseudonym, or ``None`` (``none``)."""
        if self.mode == "path":
            return str(value)
        return None if self.mode == "none" else self.pseudonym(str(value))

    def subject(self, value: str) -> str:
        """A subject (patient) id as outputs show it: itself (``path``), else ``subject-<12 hex>``."""
        return str(value) if not self.active else "subject-" + keyed_digest(self.key, "subject", str(value))[:12]

    def token(self, value: str) -> str:
        """``<private:12 hex>``: a keyed hash of a path (the key holder can check which path it was)."""
        value = str(value)
        return value if is_private_token(value) else f"<private:{keyed_digest(self.key, 'path', value)[:12]}>"

    def shown_path(self, value: str | os.PathLike[str] | None) -> str | None:
        """A data path as outputs show it: itself (``path``), else :meth:`token`."""
        if value is None:
            return None
        return str(value) if not self.active else self.token(str(value))

    def matches(self, token: str, value: str | os.PathLike[str]) -> bool:
        """Whether ``token`` is the hidden form of ``value`` (as given, or resolved)."""
        return token in {self.token(str(value)), self.token(str(Path(value).expanduser().resolve()))}

    # ----------------------------------------------------------------- samples
    def shown_samples(self, samples: Sequence[Any]) -> Sequence[Any]:
        """``samples`` whose ``id`` is what outputs may show (``path``: ``samples`` themselves)."""
        return samples if not self.active else ShownIds(samples, self)

    # ----------------------------------------------------------------- configs and text
    def private_values(self, config: Mapping[str, Any]) -> list[str]:
        """The values of :attr:`private_keys` in ``config`` (strings; list entries each)."""
        out: list[str] = []
        for key in self.private_keys:
            value = _select(config, key)
            values = value if isinstance(value, (list, tuple)) else [value]
            out += [str(v) for v in values if isinstance(v, (str, os.PathLike)) and str(v) and not is_private_token(v)]
        return out

    def redact_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a resolved config whose data paths are hidden (unchanged with ``path``)."""
        out = copy.deepcopy(dict(config))
        if not self.active:
            return out
        for key in self.private_keys:
            *parents, last = key.split(".")
            node: Any = out
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or node.get(last) in (None, ""):
                continue
            value = node[last]
            node[last] = [self.token(str(v)) for v in value] if isinstance(value, list) else self.token(str(value))
        return out

    def scrub(self, text: str, secrets_: Iterable[str]) -> str:
        """``text`` with every occurrence of each of ``secrets_`` replaced by its :meth:`token`
        (longest first, so that a path is replaced before a folder it starts with)."""
        if not self.active:
            return text
        for secret in sorted({s for s in secrets_ if s}, key=len, reverse=True):
            text = text.replace(secret, self.token(secret))
        return text

    def redact_run_info(self, info: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of :func:`medvision.utils.run_info.run_info`'s dictionary whose overrides hide data paths."""
        out = dict(info)
        if self.active and out.get("overrides"):
            secrets_ = self.private_values(config)
            out["overrides"] = [self._override(o, secrets_) for o in out["overrides"]]
        return out

    def _override(self, override: str, secrets_: list[str]) -> str:
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+~") in self.private_keys and value and value.lower() != "null":
            return f"{key}={self.token(value)}"
        return self.scrub(override, secrets_)

    def scrub_files(self, files: Iterable[str | os.PathLike[str]], secrets_: Iterable[str]) -> None:
        """Rewrite each existing text file with :meth:`scrub` (Hydra's ``.hydra/*.yaml``)."""
        from medvision.utils.io import atomic_write_text

        secrets_ = list(secrets_)
        for file in files:
            path = Path(file)
            if not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            scrubbed = self.scrub(text, secrets_)
            if scrubbed != text:
                atomic_write_text(path, scrubbed)

    def scrub_hydra_files(self, output_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> None:
        """Hide the data paths of ``config`` in Hydra's copies of the config and the command line's
        overrides (``<output_dir>/.hydra/*.yaml``, written before the run starts)."""
        if not self.active:
            return
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized() or not HydraConfig.get().output_subdir:
            return
        folder = Path(output_dir) / str(HydraConfig.get().output_subdir)
        self.scrub_files(sorted(folder.glob("*.yaml")), self.private_values(config))

    def wandb_settings(self) -> dict[str, Any]:
        """W&B settings of a run that hides ids: no console capture (a printed line may name a
        file), no system metadata (it records the command line, whose overrides name the data)."""
        return {"console": "off", "x_disable_meta": True} if self.active else {}


class ShownIds(Sequence):
    """Samples (MONAI dictionaries or records) whose ``id`` is replaced by :meth:`Privacy.case_id`
    on access (``none``: the ``id`` key is dropped, and consumers number their cases)."""

    def __init__(self, samples: Sequence[Any], privacy: Privacy) -> None:
        self.samples, self.privacy = samples, privacy

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        sample = self.samples[index]
        if not isinstance(sample, Mapping) or "id" not in sample:
            return sample
        shown = dict(sample)
        case = self.privacy.case_id(shown.pop("id"))
        if case is not None:
            shown["id"] = case
        return shown
