"""An audit's config (``[audit]``, ``[[grid]]`` and the job sections that find the collection) and the
variants a grid stands for.

Each ``[[grid]]`` table stands for every combination of its keys (each a value or a list). Keys that
change how the index is built (``BUILD_KEYS``) make a variant a scratch copy of the collection; keys
that change only a search (``SEARCH_KEYS``) are measured on whatever index the variant has. Keys left
out keep the collection's own setting. ``hybrid_qdrant.evaluation.audit`` measures the variants.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hybrid_qdrant import config as typed
from hybrid_qdrant.encoding.encoder import EncoderSettings
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.evaluate import EvalOptions
from hybrid_qdrant.evaluation.jobs import (
    BenchmarkSection,
    CacheSection,
    CollectionSection,
    JobConfig,
    ReportSection,
    StoreSection,
)
from hybrid_qdrant.evaluation.slices import SETTINGS
from hybrid_qdrant.store.collection_options import PRODUCT_COMPRESSIONS, QUANTIZATIONS, CollectionOptions

logger = logging.getLogger(__name__)

#: ``quantization`` in a grid: one of these, or ``none`` (no quantization, whatever the collection has).
GRID_QUANTIZATIONS = ("none", *QUANTIZATIONS)
#: Grid keys that change how the index is built (a scratch copy), and those that change a search only.
BUILD_KEYS = (
    "quantization",
    "product_compression",
    "hnsw_m",
    "hnsw_ef_construct",
    "full_scan_threshold",
    "indexing_threshold",
)
SEARCH_KEYS = ("hnsw_ef", "rescore", "oversampling")
COLLECTION_VARIANT = "collection"


# ------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AuditSection:
    """``[audit]``: what is measured and how.

    Attributes:
        settings: any of ``mono``, ``cross``, ``multi`` (default: all).
        k: hits asked of the index per query beyond the 10 that R@10 and nDCG@10 need: the index returns
            ``max(k, 10)`` and its recall@k against exact search is measured (default 10).
        latency_queries: single queries timed per setting and variant (a seeded sample of query-slices,
            the same for every variant; default 200).
        warmup: untimed queries before each variant's timing (default 20).
        seed: seed of the latency sample.
        include_collection: audit the collection as it is (its index, hq's default search parameters).
        scratch: embedded: folder in which the scratch copies are built (a temporary folder inside it,
            removed afterwards; default: the system's temporary folder).
        flag_factor / flag_min_loss: a language pair is flagged when it loses at least ``flag_min_loss``
            mAP (0.005 = 0.5 points) and at least ``flag_factor`` times its setting's mean loss.
        index_timeout: server: seconds to wait for a scratch copy's index to be built.
        output: ``NAME.json``; ``NAME.md`` and ``NAME.png`` go beside it.
        model_name: how the report names the model (default: ``[encoder] model``).
    """

    settings: tuple[str, ...] = SETTINGS
    k: int = 10
    latency_queries: int = 200
    warmup: int = 20
    seed: int = 0
    include_collection: bool = True
    scratch: str | None = None
    flag_factor: float = 2.0
    flag_min_loss: float = 0.005
    index_timeout: float = 600.0
    output: str | None = None
    model_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", tuple(s.strip().lower() for s in self.settings))
        unknown = [s for s in self.settings if s not in SETTINGS]
        if unknown or not self.settings:
            raise ConfigError(
                f"[audit] settings: unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}"
            )
        for key in ("k", "latency_queries"):
            typed.at_least(getattr(self, key), 1, f"[audit] {key}")
        for key in ("warmup", "seed", "flag_min_loss"):
            typed.at_least(getattr(self, key), 0, f"[audit] {key}")
        typed.at_least(self.flag_factor, 1, "[audit] flag_factor")
        if not 0 < self.index_timeout < math.inf:
            raise ConfigError(f"[audit] index_timeout = {self.index_timeout} must be a positive number")


@dataclass(frozen=True)
class GridSection:
    """``[[grid]]``: one table of a grid; every key takes a value or a list of values, and the table
    stands for every combination of its lists (keys left out: the collection's own setting).

    Attributes:
        name: the variants' label (a table that expands to several: a prefix of their names).
        quantization: ``none``, ``scalar``, ``binary`` or ``product``.
        product_compression: product quantization: 4, 8, 16, 32 or 64.
        hnsw_m / hnsw_ef_construct: HNSW graph degree and build beam.
        full_scan_threshold: KB of vectors below which a filtered search scores every matching point
            instead of walking the graph (Qdrant's default 10,000, i.e. 6,666 vectors of 384 floats).
        indexing_threshold: KB of vectors a segment needs before it gets a graph (Qdrant's default
            10,000; a smaller collection is searched exhaustively unless this is lowered).
        hnsw_ef: the search beam (default: hq's, ``max(128, 2 * limit)``).
        rescore: rescore quantized candidates with the original vectors.
        oversampling: fetch this many times the limit as quantized candidates to rescore.
    """

    name: str | None = None
    quantization: tuple[str, ...] = ()
    product_compression: tuple[int, ...] = ()
    hnsw_m: tuple[int, ...] = ()
    hnsw_ef_construct: tuple[int, ...] = ()
    full_scan_threshold: tuple[int, ...] = ()
    indexing_threshold: tuple[int, ...] = ()
    hnsw_ef: tuple[int, ...] = ()
    rescore: tuple[bool, ...] = ()
    oversampling: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        where = f"[[grid]]{f' {self.name!r}' if self.name else ''}"
        object.__setattr__(self, "quantization", tuple(q.strip().lower() for q in self.quantization))
        for q in self.quantization:
            typed.choice(q, GRID_QUANTIZATIONS, f"{where} quantization")
        for c in self.product_compression:
            typed.choice(c, PRODUCT_COMPRESSIONS, f"{where} product_compression")
        if self.product_compression and "product" not in self.quantization:
            raise ConfigError(f'{where} product_compression needs quantization = "product"')
        lows = {
            "hnsw_m": 0,
            "hnsw_ef_construct": 4,
            "full_scan_threshold": 1,
            "indexing_threshold": 0,
            "hnsw_ef": 1,
        }
        for key, low in lows.items():
            for value in getattr(self, key):
                typed.at_least(value, low, f"{where} {key}")
        for value in self.oversampling:
            if not 1 <= value < math.inf:
                raise ConfigError(f"{where} oversampling = {value} must be a number >= 1")
        if not any(getattr(self, key) for key in (*BUILD_KEYS, *SEARCH_KEYS)):
            raise ConfigError(
                f"{where} sets nothing; give at least one of {', '.join(BUILD_KEYS + SEARCH_KEYS)}"
            )


@dataclass(frozen=True)
class AuditCollection:
    """``[collection]``: the collection (or alias) audited; it is only read.

    Attributes:
        name: collection or alias (default: the one ``hq ingest`` makes for the benchmark and model).
    """

    name: str | None = None


@dataclass(frozen=True)
class AuditConfig:
    """An audit: the job sections that find the collection and the queries, ``[audit]``, and the grid."""

    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    cache: CacheSection = field(default_factory=CacheSection)
    store: StoreSection = field(default_factory=StoreSection)
    collection: AuditCollection = field(default_factory=AuditCollection)
    audit: AuditSection = field(default_factory=AuditSection)
    grid: tuple[GridSection, ...] = ()

    def __post_init__(self) -> None:
        variants(self)  # the grid expands (names unique), or a ConfigError now

    def job(self) -> JobConfig:
        """The evaluation job that reads the same collection and queries (for the shared checks)."""
        return JobConfig(
            benchmark=self.benchmark,
            encoder=self.encoder,
            cache=self.cache,
            store=self.store,
            collection=CollectionSection(name=self.collection.name),
            evaluate=EvalOptions(settings=self.audit.settings, engine="exact"),
            report=ReportSection(model_name=self.audit.model_name),
        )


def load_audit(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AuditConfig:
    """An audit config from a TOML file (or defaults) with ``{"section.key": value}`` overrides; a single
    value where a ``[[grid]]`` key takes a list is a list of one."""
    data = typed.read_toml(path) if path is not None else {}
    grid = data.get("grid")
    if isinstance(grid, list):
        data["grid"] = [_listed(table) if isinstance(table, dict) else table for table in grid]
    elif grid is not None:
        raise ConfigError(f"grid in {path} must be tables: write [[grid]]")
    where = f" of {path}" if path is not None else ""
    return typed.build_root(typed.apply_overrides(data, overrides or {}, AuditConfig), AuditConfig, where)


def _listed(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v if k == "name" or isinstance(v, list) else [v] for k, v in table.items()}


# ------------------------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One audited index configuration.

    Attributes:
        name: its label in the report.
        build: how a scratch copy's index differs from the collection's (key -> value; a None
            quantization removes it); None: the collection itself is searched.
        hnsw_ef / rescore / oversampling: search parameters (None: hq's or the engine's default).
    """

    name: str
    build: dict[str, Any] | None = None
    hnsw_ef: int | None = None
    rescore: bool | None = None
    oversampling: float | None = None

    @property
    def copy(self) -> bool:
        """Whether the variant is a scratch copy with its own index."""
        return self.build is not None

    def options(self, base: CollectionOptions) -> CollectionOptions:
        """The index options of the variant's copy: the collection's, with the variant's changes."""
        merged = {**base.index().set_options(), **(self.build or {})}
        if merged.get("quantization") != "product":
            merged.pop("product_compression", None)
        return CollectionOptions(**{k: v for k, v in merged.items() if v is not None})

    def search(self) -> dict[str, Any]:
        """The search parameters, by store attribute."""
        return {"hnsw_ef": self.hnsw_ef, "rescore": self.rescore, "oversampling": self.oversampling}


def variants(cfg: AuditConfig) -> list[Variant]:
    """The audited variants in order: the collection as it is (unless left out), then the grid's tables
    in order, each table's combinations in key order; repeated combinations once.

    Raises:
        ConfigError: nothing to audit, or two variants with one name.
    """
    out: list[Variant] = [Variant(COLLECTION_VARIANT)] if cfg.audit.include_collection else []
    for table in cfg.grid:
        keys = [key for key in (*BUILD_KEYS, *SEARCH_KEYS) if getattr(table, key)]
        combos = [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(getattr(table, k) for k in keys))
        ]
        made = []
        for combo in combos:
            variant = _variant(combo)
            if variant not in made:
                made.append(variant)
        for variant in made:
            name = variant.name
            if table.name:
                name = table.name if len(made) == 1 else f"{table.name}-{variant.name}"
            out.append(replace(variant, name=name))
    if not out:
        raise ConfigError("nothing to audit: [audit] include_collection is off and there is no [[grid]]")
    seen: dict[tuple, str] = {}
    names: set[str] = set()
    unique = []
    for variant in out:
        key = (tuple(sorted((variant.build or {}).items())), variant.copy, variant.hnsw_ef, variant.rescore,
               variant.oversampling)  # fmt: skip
        if key in seen and variant.name != COLLECTION_VARIANT:
            logger.info("grid variant %s repeats %s; measured once", variant.name, seen[key])
            continue
        if variant.name in names:
            raise ConfigError(
                f"two [[grid]] variants are named {variant.name!r}; give the tables other names"
            )
        seen[key] = variant.name
        names.add(variant.name)
        unique.append(variant)
    return unique


def _variant(combo: dict[str, Any]) -> Variant:
    """The variant of one combination of grid values, named after them."""
    build = {k: combo[k] for k in BUILD_KEYS if k in combo}
    if build.get("quantization") == "none":
        build["quantization"] = None
    quantized = build.get("quantization", "inherit") is not None
    if build.get("quantization") != "product":
        build.pop("product_compression", None)
    if "full_scan_threshold" in build:
        build["hnsw_full_scan_threshold"] = build.pop("full_scan_threshold")
    rescore = combo.get("rescore") if quantized else None
    oversampling = combo.get("oversampling") if quantized else None
    parts = []
    if "quantization" in build:
        q = build["quantization"] or "float"
        parts.append(f"{q}-x{build['product_compression']}" if "product_compression" in build else q)
    labels = {
        "hnsw_m": "m",
        "hnsw_ef_construct": "efc",
        "hnsw_full_scan_threshold": "fst",
        "indexing_threshold": "it",
    }
    for key, label in labels.items():
        if key in build:
            parts.append(f"{label}{build[key]}")
    if "hnsw_ef" in combo:
        parts.append(f"ef{combo['hnsw_ef']}")
    if rescore is not None:
        parts.append("rescore" if rescore else "no-rescore")
    if oversampling is not None:
        parts.append(f"os{oversampling:g}")
    return Variant(
        "-".join(parts) or "collection-defaults",
        build or None,
        combo.get("hnsw_ef"),
        rescore,
        oversampling,
    )
