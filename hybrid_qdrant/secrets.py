"""API keys: read from an environment variable or a file, and scrubbed from any text shown to users."""

from __future__ import annotations

import os
from pathlib import Path

from hybrid_qdrant.errors import ConfigError

_KNOWN: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``scrub`` removes it from messages."""
    if value and len(value) >= 4:
        _KNOWN.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in sorted(_KNOWN, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def read_api_key(env_var: str | None = "QDRANT_API_KEY", key_file: str | Path | None = None) -> str | None:
    """The API key from ``key_file`` (first line), else from the environment variable; None if neither."""
    key: str | None = None
    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"API key file not found: {path}")
        key = path.read_text(encoding="utf-8").strip().splitlines()[0].strip() if path.stat().st_size else ""
        if not key:
            raise ConfigError(f"API key file is empty: {path}")
    elif env_var:
        key = os.environ.get(env_var) or None
    register_secret(key)
    return key
