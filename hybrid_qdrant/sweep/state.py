"""The sweep's state file: which cells are done, with a fingerprint of the settings each ran with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.errors import DataError

STATE_FILE = "sweep_state.json"
STATE_VERSION = 1


def load_state(root: Path) -> dict[str, Any]:
    """The state in ``root`` (empty when there is none yet).

    Raises:
        DataError: an unreadable state, or one written by another version.
    """
    path = root / STATE_FILE
    if not path.is_file():
        return {"version": STATE_VERSION, "cells": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the sweep state {path}: {exc}") from exc
    if state.get("version") != STATE_VERSION:
        raise DataError(f"{path} was written by another version of hq sweep; use another dir")
    return state


def save_state(root: Path, state: dict[str, Any]) -> None:
    """Write the state atomically."""
    atomic_write_bytes(root / STATE_FILE, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def fingerprint(*parts: Any) -> str:
    """A short hash of settings (JSON, keys sorted)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


__all__ = ["STATE_FILE", "STATE_VERSION", "fingerprint", "load_state", "save_state"]
