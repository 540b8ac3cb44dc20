"""The main jobs as library functions: ingest a benchmark's passages, evaluate an encoder on it.

The CLI is a thin shell over these; they log, never print, never exit.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qdrant.embedding_cache import CachedEncoder
from hybrid_qdrant.encoder import EncoderSettings, SentenceTransformerEncoder
from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.evaluation import EvalOptions, EvaluationResult, evaluate
from hybrid_qdrant.ingest import IngestStats, ingest
from hybrid_qdrant.types import Benchmark

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreOptions:
    """Where the collection lives.

    Attributes:
        location: embedded store directory, or ``:memory:``; ignored when ``url`` is given.
        url: Qdrant server URL (http/https).
        api_key: the server's API key (never logged).
        collection: collection (or alias) name; None derives one from benchmark and model.
        recreate: drop and re-create an existing collection (only when asked).
        timeout: seconds per server request.
        prefer_grpc: use gRPC for a server.
        extra: further keyword options for ``open_store`` (quantization, HNSW, shards...).
    """

    location: str | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a repr or log line
    collection: str | None = None
    recreate: bool = False
    timeout: float = 30.0
    prefer_grpc: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def default_collection(benchmark: str, model: str, fingerprint: str, context: bool = False) -> str:
    """``{benchmark}[-context]-{model-slug}-{hash8}``: another model, encoding or passage text (LAReQA's
    sentence-with-paragraph ``context``) gets its own collection; language subsets share one (each
    evaluation filters its own languages' pools)."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", Path(model.rstrip("/")).name or model).strip("-").lower()[:40]
    source = f"{benchmark}-context" if context else benchmark
    return f"{source}-{slug}-{hashlib.sha1(fingerprint.encode()).hexdigest()[:8]}"


def build_encoder(settings: EncoderSettings, cache_dir: str | Path | None = None, use_cache: bool = True):
    """A sentence-transformers encoder, wrapped in the embedding cache unless disabled."""
    encoder = SentenceTransformerEncoder(settings)
    return CachedEncoder(encoder, root=cache_dir) if use_cache else encoder


def open_collection(store_options: StoreOptions, name: str):
    """Open the store for a collection name (see ``hybrid_qdrant.store.open_store``)."""
    from hybrid_qdrant.store import open_store

    return open_store(
        location=store_options.location,
        url=store_options.url,
        api_key=store_options.api_key,
        collection=name,
        recreate=store_options.recreate,
        timeout=store_options.timeout,
        prefer_grpc=store_options.prefer_grpc,
        **store_options.extra,
    )


def ingest_benchmark(
    benchmark: Benchmark,
    encoder,
    store,
    on_error: str = "stop",
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> IngestStats:
    """Write the benchmark's passages, streamed ones included (resuming a partial collection)."""
    from hybrid_qdrant.benchmarks import iter_passages

    streamed = getattr(benchmark, "corpus", None) is not None
    kwargs.setdefault("check_duplicates", not streamed)  # a streamed corpus keeps memory flat
    return ingest(
        iter_passages(benchmark),
        encoder,
        store,
        on_error=on_error,
        languages=benchmark.languages,
        progress=progress,
        **kwargs,
    )


@dataclass
class EvaluationRun:
    """What ``run_evaluation`` produced."""

    result: EvaluationResult
    collection: str
    ingest: IngestStats | None
    timings: dict[str, float]


def run_evaluation(
    benchmark: Benchmark,
    encoder,
    store,
    collection: str,
    options: EvalOptions | None = None,
    ingest_progress: Callable[[int], None] | None = None,
    slice_progress: Callable[[Any], None] | None = None,
    on_error: str = "stop",
) -> EvaluationRun:
    """Make the collection hold exactly the benchmark's passages, encode the queries, evaluate.

    Every passage is checked before scoring (its id stored with the same content hash, in batches, no
    encoding): missing or changed ones are encoded and written (see ``ingest``); then each evaluated
    language must hold exactly the benchmark's passages of that language, so the pools searched are
    the benchmark's and nothing else. A collection with points the benchmark does not have (another
    version of the data) is refused rather than scored.

    Args:
        benchmark: the loaded benchmark.
        encoder: an ``Encoder`` (cached or not).
        store: the opened store for ``collection``.
        collection: its name (for the report).
        options: EvalOptions.
        on_error: bad passages stop the ingestion (``"stop"``) or are skipped and counted (``"skip"``).

    Raises:
        StoreError: the collection holds passages the benchmark does not have.
    """
    options = options or EvalOptions()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stats = ingest_benchmark(benchmark, encoder, store, on_error=on_error, progress=ingest_progress)
    langs = tuple(options.languages or benchmark.languages)
    expected = {lang: stats.per_language.get(lang, 0) for lang in langs}
    check_pools(store, collection, expected)
    pool_is_collection = store.count() == sum(expected.values())
    timings["ingest"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    query_vectors = encoder.encode_queries([q.text for q in benchmark.queries])  # (n_queries, dim)
    timings["encode_queries"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    result = evaluate(
        benchmark,
        query_vectors,
        store,
        options,
        progress=slice_progress,
        pool_is_collection=pool_is_collection,
    )
    timings["retrieve_and_score"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    written = stats if stats.encoded else None
    return EvaluationRun(result, collection, written, timings)


def check_pools(store, collection: str, expected: dict[str, int]) -> None:
    """Each language's point count must be the benchmark's passage count of that language.

    Raises:
        StoreError: a language holds more points (passages the benchmark does not have: another
            version of the data) or fewer (a write that did not land).
    """
    for lang, want in expected.items():
        have = store.count(lang)
        if have > want:
            raise StoreError(
                f"collection '{collection}' holds {have} {lang} passages but the benchmark has {want}: it "
                "holds passages this benchmark does not have (another version of the data?); evaluate into "
                "another --collection or rebuild it with --recreate"
            )
        if have < want:
            raise StoreError(
                f"collection '{collection}' holds {have} of the benchmark's {want} {lang} passages after "
                "ingestion; run again to write the missing ones"
            )


@dataclass
class ReindexResult:
    """What ``reindex_with_alias`` did: the collection written, the alias switch, the ingestion."""

    alias: str
    collection: str
    previous: str | None
    stats: IngestStats


def reindex_with_alias(store, alias: str, write: Callable[[Any], IngestStats]) -> ReindexResult:
    """Zero-downtime re-index: fill a new versioned collection, then switch ``alias`` to it atomically.

    Queries through the alias keep hitting the old collection until the switch; the old collection is
    kept (delete it with ``hq collections delete``). An interrupted re-index is resumed: the newest
    ``{alias}_v{n}`` that the alias does not point to is an unfinished one and is filled up, not
    started again.

    Args:
        store: a store opened at the location or server (any collection name).
        alias: the alias queries use.
        write: fills the store it is given (e.g. ``lambda s: ingest_benchmark(bench, enc, s)``).
    """
    from hybrid_qdrant.store.naming import next_version, versioned_name

    previous = store.aliases().get(alias)
    versions = [c for c in store.collections() if re.fullmatch(re.escape(alias) + r"_v\d+", c)]
    newest = max(versions, key=lambda c: int(c.rsplit("_v", 1)[1]), default=None)
    if newest is not None and newest != previous:
        target = newest
        logger.info("resuming the unfinished re-index into %s", target)
    else:
        target = next_version(alias, store.collections()) if versions else versioned_name(alias, 1)
    with store.for_collection(target) as new_store:
        stats = write(new_store)
    store.set_alias(alias, target)
    logger.info("alias %s -> %s (was %s)", alias, target, previous)
    return ReindexResult(alias, target, previous, stats)
