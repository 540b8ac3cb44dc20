"""One typed TOML loader for every config: training runs, evaluation jobs, sweeps.

A config is a root dataclass whose fields are *sections* (frozen dataclasses, one TOML table each,
possibly nested or repeated as ``[[section.key]]``). ``load`` reads a file, lays ``section.key``
overrides over it (from ``--set section.key=value`` and a command's flags), and builds the dataclasses:

- an unknown section or key is rejected with the closest known name;
- values are type-checked against the field annotations (ints widen to floats, lists become tuples,
  a comma-separated string is accepted where a list of strings is expected, as the flags take it);
- each section checks its own ranges and choices in ``__post_init__`` (``choice``, ``at_least``);
- a section dataclass may narrow the keys a table accepts with a ``config_keys(table)`` classmethod
  returning ``(allowed keys or None, what the table is)``.

Everything is checked when the config is built, before any data or model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from hybrid_qdrant.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "apply_overrides",
    "at_least",
    "build",
    "choice",
    "load",
    "parse_override",
    "read_toml",
    "split_csv",
    "to_plain",
]


def choice(value: Any, allowed: tuple[Any, ...], where: str) -> None:
    """ConfigError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{where} = {value!r} is not one of {', '.join(map(repr, allowed))}")


def at_least(value: float | None, low: float, where: str) -> None:
    """ConfigError when ``value`` (if set) is below ``low``."""
    if value is not None and value < low:
        raise ConfigError(f"{where} = {value} must be >= {low}")


def split_csv(value: str, key: str = "") -> list[str]:
    """``"de, en"`` -> ``["de", "en"]``: a string where a list of strings is expected, as the flags take
    it; an empty item (``"de,,en"``, ``"de,"``, ``""``) is an error naming ``key``."""
    parts = [part.strip() for part in value.split(",")]
    if not all(parts):
        raise ConfigError(f"{key + ' = ' if key else ''}{value!r} has an empty item")
    return parts


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.alpha=0.3"`` -> ``("train.alpha", 0.3)``; the value is TOML, or a bare string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def _sections(root: type) -> dict[str, type]:
    """A root config's sections: field name -> section dataclass."""
    hints = typing.get_type_hints(root)
    return {f.name: _dataclass_of(hints[f.name]) for f in dataclasses.fields(root)}


def _dataclass_of(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], root: type) -> dict[str, Any]:
    """A copy of raw config data with ``{"section.key": value}`` (or ``section.table.key``) set.

    Raises:
        ConfigError: a key that is not dotted, or an unknown section (with a suggestion).
    """
    known = _sections(root)
    out = _copy_tables(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {dotted!r} must look like section.key, e.g. train.alpha")
        if parts[0] not in known:
            hint = _suggest(parts[0], known)
            raise ConfigError(f"unknown section [{parts[0]}] in override {dotted!r}{hint}")
        table = out
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"override {dotted!r}: {part!r} is not a table")
        table[parts[-1]] = value
    return out


def _copy_tables(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_tables(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load(path: str | Path | None, root: type[T], overrides: Mapping[str, Any] | None = None) -> T:
    """Read ``path`` (None: defaults only), apply ``{"section.key": value}`` overrides, build ``root``.

    Raises:
        ConfigError: unreadable TOML, an unknown section or key, a bad type or value.
    """
    data = read_toml(path) if path is not None else {}
    where = f" of {path}" if path is not None else ""
    return build_root(apply_overrides(data, overrides or {}, root), root, where)


def build_root(data: Mapping[str, Any], root: type[T], where: str = "") -> T:
    """Build a root config from parsed TOML: each field a section table (optional ones when present)."""
    known = _sections(root)
    unknown = [name for name in data if name not in known]
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]{where}{_suggest(unknown[0], known)}")
    hints = getattr(root, "config_missing", {})
    types_ = typing.get_type_hints(root)
    for name, table in data.items():
        if isinstance(table, dict) and dataclasses.is_dataclass(known[name]):
            _check_placement(name, table, known, where)
    sections = {}
    for f in dataclasses.fields(root):
        if f.name not in data:
            if _required(f):
                hint = f" ({hints[f.name]})" if f.name in hints else ""
                raise ConfigError(f"missing section [{f.name}]{where}{hint}")
            if f.default is None or not dataclasses.is_dataclass(known[f.name]):
                continue  # an optional section (off unless the TOML has it), or the field's default
        value = data.get(f.name, {})
        if dataclasses.is_dataclass(known[f.name]):
            if not isinstance(value, dict):
                raise ConfigError(f"[{f.name}]{where} must be a table")
            sections[f.name] = build(known[f.name], value, f"[{f.name}]", f.name)
        else:  # e.g. [[models]]: an array of tables at the top level
            sections[f.name] = _coerce(value, types_[f.name], f"[[{f.name}]]", f.name)
    return root(**sections)


def _fields_by_name(known: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every field of the sections (nested tables too) by name -> ``[section] key`` where it lives."""
    out: dict[str, str] = {}
    for section, cls in known.items():
        if not dataclasses.is_dataclass(cls):
            continue
        path = f"{prefix}{section}"
        out.setdefault(section, f"[{path}]")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, f"[{path}] {f.name}")
            nested = _dataclass_of(hints[f.name])
            if dataclasses.is_dataclass(nested):
                for name, place in _fields_by_name({f.name: nested}, f"{path}.").items():
                    out.setdefault(name, place)
    return out


def _check_placement(section: str, table: Mapping[str, Any], known: Mapping[str, Any], where: str) -> None:
    """A key that is not in its table but is another section's gets a pointer to where it belongs."""
    own = {f.name for f in dataclasses.fields(known[section])}
    elsewhere = _fields_by_name(known)
    for key in table:
        if key not in own and key in elsewhere:
            raise ConfigError(f"unknown key {key!r} in [{section}]{where}; it belongs in {elsewhere[key]}")


def build(cls: type[T], table: Mapping[str, Any], where: str, dotted: str) -> T:
    """Instantiate a section dataclass from a TOML table, rejecting unknown keys and bad types.

    ``where`` names the table in messages (``[train]``, ``[[data.sources]]``); ``dotted`` is its path.
    """
    allowed, what = cls.config_keys(table) if hasattr(cls, "config_keys") else (None, "")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in table:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown key {key!r} in {where}{hint}")
        if allowed is not None and key not in allowed:
            keys = ", ".join(sorted(allowed))
            raise ConfigError(f"key {key!r} does not apply to {what} in {where}; its keys: {keys}")
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(value, hints[key], where, f"{dotted}.{key}") for key, value in table.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f)]
    if missing:
        raise ConfigError(f"missing key {missing[0]!r} in {where}")
    return cls(**values)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(value: Any, hint: Any, where: str, dotted: str) -> Any:
    """Check a TOML value against a type hint; ints widen to floats, lists become tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    key = f"{where} {dotted.rpartition('.')[2]}"
    if origin in (typing.Union, types.UnionType):
        return _coerce(value, next(a for a in args if a is not type(None)), where, dotted)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table: [{dotted}]")
        return build(hint, value, f"[{dotted}]", dotted)
    if origin in (tuple, list):
        if isinstance(value, str):
            if args[0] is not str:
                kind = {int: "integers", float: "numbers"}.get(args[0], "tables")
                raise ConfigError(f"{key} must be a list of {kind}, got a string: write [...]")
            value = split_csv(value, key)  # "de,en": as the command-line flags take it
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {_toml_type(value)}")
        if dataclasses.is_dataclass(args[0]):
            if not all(isinstance(item, dict) for item in value):
                raise ConfigError(f"{key} must be tables: [[{dotted}]]")
            return tuple(build(args[0], item, f"[[{dotted}]]", dotted) for item in value)
        items = [_coerce(item, args[0], where, dotted) for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table")
        if args and args[1] is not Any:
            for item in value.values():
                _coerce(item, args[1], where, dotted)
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {_toml_type(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {_toml_type(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {_toml_type(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {_toml_type(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r}")  # a programming error, not a user error


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    names[dict] = "a table"
    return names.get(type(value), type(value).__name__)


def _suggest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def to_plain(value: Any) -> Any:
    """A config (or part of one) as TOML-ready data: dataclasses as tables, tuples as lists, None left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}  # fmt: skip
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
