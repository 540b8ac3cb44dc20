"""Collection and alias names: validation and versioned names for zero-downtime re-indexing."""

from __future__ import annotations

import re
from collections.abc import Iterable

from hybrid_qdrant.errors import StoreError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
_VERSION = re.compile(r"^(?P<base>.+)_v(?P<n>\d+)$")


def validate_name(name: str, what: str = "collection") -> str:
    """Return ``name`` if it is a valid collection / alias name (also a safe directory name)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in {".", ".."}:
        raise ValueError(
            f"invalid {what} name {name!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return name


def versioned_name(base: str, n: int) -> str:
    """``{base}_v{n}``."""
    return f"{validate_name(base)}_v{n}"


def versions(base: str, existing: Iterable[str]) -> list[str]:
    """The versions ``{base}_v{n}`` among ``existing``, oldest (smallest n) first."""
    validate_name(base)
    found = [(int(m["n"]), name) for name in existing if (m := _VERSION.match(name)) and m["base"] == base]
    return [name for _, name in sorted(found)]


def next_version(base: str, existing: Iterable[str]) -> str:
    """The first ``{base}_v{n}`` above every version of ``base`` in ``existing`` (starting at 1)."""
    taken = versions(base, existing)
    return versioned_name(base, int(_VERSION.match(taken[-1])["n"]) + 1 if taken else 1)


def check_deletable(name: str, aliases: dict[str, str]) -> None:
    """Refuse to drop an alias by its name, or a collection an alias still points to (StoreError)."""
    validate_name(name)
    if name in aliases:
        raise StoreError(
            f"'{name}' is an alias of '{aliases[name]}'; delete the alias or name the collection"
        )
    users = sorted(a for a, target in aliases.items() if target == name)
    if users:
        raise StoreError(
            f"collection '{name}' is the target of alias '{users[0]}'; switch or delete the alias first"
        )
