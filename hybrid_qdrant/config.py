"""Typed command configs from TOML: unknown keys rejected with a suggestion, CLI flags override."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from hybrid_qdrant.errors import ConfigError

T = TypeVar("T")


def check_keys(data: dict[str, Any], cls: type, where: str) -> None:
    """Raise ConfigError for a key that ``cls`` (a dataclass) does not have, with a close match."""
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"unknown key {key!r} in {where}{hint}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def load_section(
    path: str | Path | None, cls: type[T], section: str, overrides: dict[str, Any] | None = None
) -> T:
    """Build ``cls`` from ``[section]`` of a TOML file (or from defaults), then apply non-None overrides.

    The file may hold the keys at top level or under ``[section]``.
    """
    data: dict[str, Any] = {}
    if path is not None:
        raw = read_toml(path)
        data = raw.get(section, raw) if isinstance(raw.get(section), dict) else raw
        check_keys(data, cls, f"[{section}] of {path}")
    try:
        obj = cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_keys(changes, cls, "the command-line options")
    return replace(obj, **changes) if changes else obj


@dataclass(frozen=True)
class EvaluateConfig:
    """``hq evaluate`` / ``hq ingest``: benchmark, model and store (TOML section ``[evaluate]``)."""

    benchmark: str = "xquad-r"
    data_dir: str | None = None
    split: str | None = None
    languages: list[str] | None = None
    context: bool = False
    answer_rule: str = "lareqa"
    model: str = "intfloat/multilingual-e5-small"
    adapter: str | None = None
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    query_prompt_name: str | None = None
    passage_prompt_name: str | None = None
    batch_size: int = 64
    device: str | None = None
    max_seq_length: int | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    location: str = ".hq/qdrant"
    url: str | None = None
    api_key_env: str = "QDRANT_API_KEY"
    api_key_file: str | None = None
    allow_insecure_key: bool = False
    prefer_grpc: bool = False
    timeout: float = 30.0
    collection: str | None = None
    alias: str | None = None
    recreate: bool = False
    quantization: str | None = None
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    on_disk: bool | None = None
    on_error: str = "stop"
    settings: list[str] | None = None
    engine: str = "qdrant"
    depth: int | None = None
    full_ranking: bool | None = None
    exact_search: bool = True
    output: str | None = None
    heatmap_scale: str = "fixed"

    def __post_init__(self) -> None:
        from hybrid_qdrant.report import HEATMAP_SCALES

        if self.heatmap_scale not in HEATMAP_SCALES:
            raise ConfigError(f"heatmap_scale {self.heatmap_scale!r}: choose {' or '.join(HEATMAP_SCALES)}")
        for key in ("batch_size", "depth", "max_seq_length"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        for key in ("languages", "settings"):  # "de,en" as the flags take it, not ['d', 'e', ',', ...]
            if isinstance(getattr(self, key), str):
                from hybrid_qdrant.training.config import comma_list

                object.__setattr__(self, key, comma_list(getattr(self, key), key))

    def eval_options(self):
        """The ``EvalOptions`` of this config (full ranking by default on the LAReQA sets)."""
        from hybrid_qdrant.evaluation import EvalOptions

        full = self.full_ranking if self.full_ranking is not None else self.benchmark in ("xquad-r", "mlqa-r")
        return EvalOptions(
            settings=tuple(self.settings or ("mono", "cross", "multi")),
            languages=tuple(self.languages) if self.languages else None,
            engine=self.engine,
            depth=self.depth,
            full_ranking=full,
            exact_search=self.exact_search,
        )
