"""Server connection settings: the URL, the API key (kept secret) and scrubbing it from messages."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hybrid_qdrant.errors import ConfigError

#: Environment variable the CLI reads the API key from.
API_KEY_ENV = "QDRANT_API_KEY"

_MASK = "***"


class Secret:
    """A string that never shows itself in ``str``, ``repr`` or f-strings; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_api_key(
    api_key: str | None = None, key_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The API key: ``api_key``, else the first line of ``key_file``, else ``$QDRANT_API_KEY``, else None."""
    if api_key:
        return api_key
    if key_file is not None:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {key_file}: {exc.strerror}") from None
        if not key or not key[0].strip():
            raise ConfigError(f"the API key file {key_file} is empty")
        return key[0].strip()
    env = os.environ if environ is None else environ
    return env.get(API_KEY_ENV) or None


def validate_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL with a host; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Qdrant URL must look like http(s)://host[:port], got {redact_url(url)!r}")
    return url


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (safe to print)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    except ValueError:
        return "<unparseable URL>"


def scrub(text: str, *secrets: Secret | str | None) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, _MASK)
    return text
