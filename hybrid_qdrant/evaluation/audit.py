"""``hq audit``: what a collection's index configuration costs against exact search.

For every audited variant of a collection's index (the collection as it is, and the variants of a grid:
HNSW ``m`` / ``ef_construct`` / ``ef``, scalar, binary or product quantization with or without
rescoring) the audit measures, per setting and per language pair (the evaluation's slices):

- mAP, R@10 and nDCG@10 of the variant's ranking minus those of exact search (the deltas);
- recall@k of the index against exact search (the share of its top k in the exact top k; a passage
  tied with the exact k-th counts);
- single-query latency percentiles, and the memory footprint of vectors, quantized vectors and graph;

and flags the language pairs that lose much more mAP than their setting's average.

The user's collection is only read. A variant that changes how the index is built is a scratch copy
made from the vectors stored in the collection (never re-encoded): on the embedded engine in a scratch
folder (removed afterwards), on a server as a scratch collection (deleted afterwards); the copy's index
is built before it is measured (embedded: ``optimize``; server: its optimizers, waited for). A variant
that only changes search parameters (``hnsw_ef``, ``rescore``, ``oversampling``) searches the
collection itself. Queries come from the embedding cache (or the encoder). The config and the grid's
variants: ``audit_grid``; the report: ``audit_report``.

The variant's ranking of a query: the index's top ``max(k, 10)`` hits as the index orders them, then
every other passage of the slice in exact order. A relevant passage the index does not return is thus
ranked below everything it returned, so a miss costs what it costs a deployment's top hits; mAP stays
defined over the full ranking.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_qdrant import ranking
from hybrid_qdrant.errors import ConfigError, StoreError
from hybrid_qdrant.evaluation import metrics as M
from hybrid_qdrant.evaluation.audit_grid import AuditConfig, AuditSection, Variant, load_audit, variants
from hybrid_qdrant.evaluation.evaluate import StoreVectors, slice_qrels
from hybrid_qdrant.evaluation.jobs import (
    JobConfig,
    JobProgress,
    build_encoder,
    collection_name,
    open_collection,
    prepare,
    store_kwargs,
)
from hybrid_qdrant.evaluation.report import check_output
from hybrid_qdrant.evaluation.slices import SETTINGS, Slice, slices_for
from hybrid_qdrant.store.base import DOC_ID_KEY, LANG_KEY, CollectionSpec, IndexInfo
from hybrid_qdrant.store.collection_options import QDRANT_HNSW_M, CollectionOptions
from hybrid_qdrant.store.compat import check_spec
from hybrid_qdrant.types import Benchmark

__all__ = [
    "AuditResult",
    "Reference",
    "Scratch",
    "SliceRef",
    "VariantResult",
    "audit_job",
    "footprint",
    "load_audit",
    "percentiles",
    "variant_ranks",
]

logger = logging.getLogger(__name__)

#: Quality metrics whose deltas the audit reports (each slice's, then macro averages per setting).
METRICS = ("map", "recall@10", "ndcg@10")


# ------------------------------------------------------------------------------------------- results


@dataclass
class VariantResult:
    """What was measured of one variant.

    Attributes:
        variant: the configuration.
        options: the index options it ran with (a copy's effective ones; the collection's own).
        index: the engine's account of the index (points, HNSW-indexed vectors, segments).
        memory: bytes of ``vectors``, ``quantized``, ``graph``, ``ram`` (what must stay in memory to
            serve at full speed), ``disk`` (embedded: the files), and how the graph was counted
            (``graph_source``: ``measured`` or ``estimate``).
        latency: per setting and ``all``: ``p50``, ``p95``, ``p99``, ``mean`` (ms) and ``n``.
        slices: per slice name: the variant's ``map``, ``recall@10``, ``ndcg@10`` and ``index_recall``.
        build_seconds: time to copy and index a scratch copy (None: the collection itself).
        score_seconds: time of the batched quality pass.
    """

    variant: Variant
    options: CollectionOptions
    index: IndexInfo | None
    memory: dict[str, Any]
    latency: dict[str, dict[str, float]]
    slices: dict[str, dict[str, float]]
    build_seconds: float | None = None
    score_seconds: float = 0.0


@dataclass
class AuditResult:
    """An audit: the exact reference and every variant, per slice."""

    benchmark: str
    model: str
    collection: str
    engine: str
    where: str
    languages: tuple[str, ...]
    settings: tuple[str, ...]
    slices: list[Slice]
    k: int
    depth: int
    exact: dict[str, dict[str, float]]  # slice name -> metric -> exact value
    exact_latency: dict[str, dict[str, float]]
    exact_memory: dict[str, Any]
    variants: list[VariantResult]
    counts: dict[str, int]
    audit: AuditSection
    seconds: float = 0.0
    report: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- the job


SCORE = "score slices"


def audit_job(cfg: AuditConfig, progress: JobProgress | None = None) -> AuditResult:
    """Audit the job's collection: the exact reference, then every variant (see the module docstring);
    with ``[audit] output``, write the report (JSON, Markdown, plot).

    Raises:
        ConfigError / DataError / ModelError / StoreError: before any work where they can be checked (the
        collection must exist and hold exactly the benchmark's passages, written with this model).
    """
    from hybrid_qdrant.evaluation.audit_report import write_audit

    progress = progress or JobProgress()
    t0 = time.perf_counter()
    planned = variants(cfg)
    if cfg.audit.output:
        check_output(cfg.audit.output)
    job = cfg.job()
    store_kwargs(job.store, job.collection)  # server settings checked before anything connects
    if job.store.url is None and any(v.copy for v in planned):
        _check_scratch(cfg.audit.scratch)
    benchmark = prepare(job)
    if benchmark.streamed:
        raise ConfigError(
            f"hq audit ranks every query exactly against the corpus held in memory; {benchmark.name} "
            "streams its corpus (audit a BEIR folder or LAReQA set instead)"
        )
    if cfg.collection.name:
        _require_collection(job, cfg.collection.name)  # before the model loads
    encoder = build_encoder(job, progress)
    name = collection_name(job, benchmark, encoder)
    with open_collection(job, name) as source:
        if not source.exists():
            raise StoreError(
                f"collection '{name}' does not exist at {_where(job)}; build it first with hq ingest "
                "(same benchmark, model and store options): the audit only reads it"
            )
        check_spec(name, source.spec(), CollectionSpec(dim=encoder.dim, encoder=encoder.fingerprint))
        langs = tuple(benchmark.languages)
        pool_is_collection = _check_passages(source, name, benchmark, langs)
        query_vectors = encoder.encode_queries([q.text for q in benchmark.queries])  # (n_queries, dim)
        progress.settle("query")
        reference = Reference(benchmark, query_vectors, source, cfg.audit, pool_is_collection)
        progress.start("exact ranks", len(reference.slices))
        reference.compute(lambda: progress.advance("exact ranks"))
        sample = reference.latency_sample(cfg.audit.latency_queries, cfg.audit.warmup, cfg.audit.seed)
        n_points = source.count()
        dim = source.spec().dim
        base = source.index_info()
        exact_latency = _latency(source, reference, sample, exact=True)
        exact_memory = {"vectors": n_points * dim * 4, "quantized": 0, "graph": 0, "ram": n_points * dim * 4}
        results = _measure_all(planned, source, base, reference, sample, job, cfg.audit, progress)
        result = AuditResult(
            benchmark=benchmark.name,
            model=cfg.audit.model_name or cfg.encoder.model,
            collection=name,
            engine="server" if job.store.url else "embedded",
            where=_where(job),
            languages=langs,
            settings=cfg.audit.settings,
            slices=[r.slice for r in reference.slices],
            k=cfg.audit.k,
            depth=reference.depth,
            exact=reference.exact,
            exact_latency=exact_latency,
            exact_memory=exact_memory,
            variants=results,
            counts={
                "passages": n_points,
                "queries": len(benchmark.queries),
                "slices": len(reference.slices),
                "query_slices": sum(len(r.qids) for r in reference.slices),
                "latency_sample": sum(len(pairs) for pairs in sample.values()),
            },
            audit=cfg.audit,
        )
    result.seconds = time.perf_counter() - t0
    if cfg.audit.output:
        result.report = write_audit(result, cfg.audit.output)
    return result


def _measure_all(
    planned: list[Variant],
    source,
    base: IndexInfo,
    reference: Reference,
    sample: dict[str, list[tuple[int, int]]],
    job: JobConfig,
    audit: AuditSection,
    progress: JobProgress,
) -> list[VariantResult]:
    """Measure every variant, in the order planned: those on the collection itself, then one scratch
    copy per distinct index (its search-parameter variants measured on it before it goes)."""
    results = [
        _measure(v, source, base, reference, sample, progress, _own_storage(source))
        for v in planned
        if not v.copy
    ]
    builds: dict[tuple, list[Variant]] = {}
    for variant in planned:
        if variant.copy:
            key = tuple(sorted(variant.options(base.options).set_options().items()))
            builds.setdefault(key, []).append(variant)
    with Scratch(job, audit) as scratch:
        for i, group in enumerate(builds.values()):
            options = group[0].options(base.options)
            progress.note(f"building a scratch copy: {_describe(options)}")
            with scratch.copy(source, i, options) as (copy, seconds):
                info, storage = copy.index_info(), _own_storage(copy)
                for variant in group:
                    result = _measure(variant, copy, info, reference, sample, progress, storage, options)
                    result.build_seconds = seconds
                    results.append(result)
    order = {v.name: i for i, v in enumerate(planned)}
    return sorted(results, key=lambda r: order[r.variant.name])


def _where(job: JobConfig) -> str:
    if job.store.url:
        from hybrid_qdrant.store.connection import redact_url

        return redact_url(job.store.url)
    return str(job.store.location)


def _require_collection(job: JobConfig, name: str) -> None:
    with open_collection(job, name) as store:
        if not store.exists():
            raise StoreError(
                f"collection '{name}' does not exist at {_where(job)}; build it first with hq ingest: "
                "the audit only reads it"
            )


def _check_scratch(scratch: str | None) -> None:
    """ConfigError unless scratch copies can be built in ``scratch`` (or the temporary folder)."""
    folder = Path(scratch) if scratch else Path(tempfile.gettempdir())
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"[audit] scratch {folder} is not a folder")
    try:
        with tempfile.TemporaryDirectory(dir=probe):
            pass
    except OSError as exc:
        raise ConfigError(f"[audit] scratch: cannot write into {probe} ({exc.strerror or exc})") from None


def _check_passages(store, name: str, benchmark: Benchmark, langs: Sequence[str]) -> bool:
    """The collection must hold exactly the benchmark's passages of each audited language (read only:
    the audit writes nothing). Returns whether it holds nothing else (the pooled setting needs no filter).

    Raises:
        StoreError: passages missing, changed or foreign.
    """
    expected: dict[str, set[str]] = {lang: set() for lang in langs}
    for p in benchmark.passages:
        if p.lang in expected:
            expected[p.lang].add(p.doc_id)
    for lang, ids in expected.items():
        stored = store.doc_ids(lang)
        if stored != ids:
            missing, extra = len(ids - stored), len(stored - ids)
            raise StoreError(
                f"collection '{name}' does not hold exactly the benchmark's {lang} passages ({missing} "
                f"missing, {extra} not in the benchmark); run hq ingest with the same options first: the "
                "audit only reads the collection"
            )
    return store.count() == sum(len(ids) for ids in expected.values())


# ------------------------------------------------------------------------------------------- reference


@dataclass
class SliceRef:
    """One slice's queries and their exact reference.

    Attributes:
        slice: the slice; target: its store filter (a language, the pooled languages, or None).
        qids / qvecs: its queries that have a relevant passage in the slice ((n, dim) vectors).
        qrels: their relevant passages in the slice.
        pool: (doc ids sorted, vectors, doc id -> row) of the slice's passages.
        ranks: exact 1-based ranks of each query's relevant passages.
        kth: each query's exact k-th best score (n,): a hit scoring at least this much (within
            ``SCORE_TOLERANCE``) is one of the exact top k, whichever of tied passages exact search
            happened to list.
    """

    slice: Slice
    target: Any
    qids: list[str]
    qvecs: np.ndarray
    qrels: dict[str, dict[str, int]]
    pool: tuple[list[str], np.ndarray, dict[str, int]]
    ranks: dict[str, dict[str, int]] = field(default_factory=dict)
    kth: np.ndarray | None = None


class Reference:
    """Exact search over the vectors as stored in the collection: every slice's ranks and top k."""

    def __init__(
        self,
        benchmark: Benchmark,
        query_vectors: np.ndarray,
        store,
        audit: AuditSection,
        pool_is_collection: bool,
    ) -> None:
        self.k = audit.k
        self.depth = max(audit.k, 10)
        self.dim = int(query_vectors.shape[1])
        self.vectors = StoreVectors(store)
        self.exact: dict[str, dict[str, float]] = {}
        langs = tuple(benchmark.languages)
        pooled = None if pool_is_collection else langs
        language = benchmark.passage_languages()
        by_lang: dict[str, list[int]] = {}
        for i, q in enumerate(benchmark.queries):
            by_lang.setdefault(q.lang, []).append(i)
        self.slices: list[SliceRef] = []
        for sl in slices_for(benchmark, audit.settings, None):
            rows = by_lang.get(sl.query_lang, [])
            ids = [benchmark.queries[i].query_id for i in rows]
            slice_langs = frozenset([sl.passage_lang] if sl.passage_lang is not None else langs)
            qrels = slice_qrels(benchmark.qrels, ids, language, slice_langs)
            keep = [i for i, qid in zip(rows, ids, strict=True) if qid in qrels]
            target = sl.passage_lang if sl.passage_lang is not None else pooled
            self.slices.append(
                SliceRef(
                    sl,
                    target,
                    [benchmark.queries[i].query_id for i in keep],
                    np.ascontiguousarray(query_vectors[keep], dtype=np.float32),
                    qrels,
                    ([], np.empty((0, 0), np.float32), {}),
                )
            )

    def compute(self, advance=lambda: None) -> None:
        """Exact ranks, metrics and top k of every slice (``advance`` after each)."""
        for ref in self.slices:
            ids, matrix, position = ref.pool = self.vectors.get(ref.target)
            relevant = [[position[d] for d in ref.qrels[q] if d in position] for q in ref.qids]
            ref.ranks = ranking.ranks_from_vectors(ref.qvecs, matrix, ids, relevant, ref.qids)
            per_query = M.evaluate_ranks(ref.qrels, ref.ranks, METRICS)
            self.exact[ref.slice.name] = {m: _mean(per_query, m) for m in METRICS}
            kth = [np.empty(0, np.float32)]
            for start in range(0, len(ref.qids), 1024):
                scores = ref.qvecs[start : start + 1024] @ matrix.T  # (chunk, n_pool)
                kth.append(ranking.top_k_from_scores(scores, self.k, ids)[1][:, -1])
            ref.kth = np.concatenate(kth)
            advance()

    def latency_sample(self, n: int, warmup: int, seed: int) -> dict[str, list[tuple[int, int]]]:
        """Per setting, ``n`` (slice index, query row) pairs drawn without replacement (seeded), and
        ``warmup`` more under ``"warmup"``."""
        rng = np.random.default_rng(seed)
        out: dict[str, list[tuple[int, int]]] = {}
        everything: list[tuple[int, int]] = []
        for setting in SETTINGS:
            pairs = [
                (i, row)
                for i, ref in enumerate(self.slices)
                if ref.slice.setting == setting
                for row in range(len(ref.qids))
            ]
            if pairs:
                picked = rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
                out[setting] = [pairs[j] for j in sorted(picked.tolist())]
                everything += pairs
        if everything and warmup:
            picked = rng.choice(len(everything), size=min(warmup, len(everything)), replace=False)
            out["warmup"] = [everything[j] for j in picked.tolist()]
        return out


def variant_ranks(
    ref: SliceRef, row: int, returned: Sequence[int], exact_ranks: dict[str, int]
) -> dict[str, int]:
    """The ranks of a query's relevant passages in a variant's ranking: the index's hits in its order
    (``returned``: pool rows), then every other passage in exact order.

    A relevant passage the index returned has its position there; one it did not return comes after
    all of them, at ``len(returned) + 1 + (its exact rank - 1 - returned passages that beat it
    exactly)``. Ranks stay distinct and increasing in exact order at float32 near-ties.
    """
    ids, matrix, position = ref.pool
    at = {r: i for i, r in enumerate(returned, start=1)}
    ranks: dict[str, int] = {}
    missing = []
    for doc in ref.qrels[ref.qids[row]]:
        r = position.get(doc)
        if r is None:
            continue
        if r in at:
            ranks[doc] = at[r]
        elif doc in exact_ranks:
            missing.append((exact_ranks[doc], r, doc))
    if missing:
        q = ref.qvecs[row]
        got = np.fromiter(returned, dtype=np.int64, count=len(returned))
        got_scores = matrix[got] @ q if len(got) else np.empty(0, np.float32)  # (n_returned,)
        floor = len(returned)
        for exact, r, doc in sorted(missing):
            score = float(matrix[r] @ q)
            beaten_by = int(np.count_nonzero((got_scores > score) | ((got_scores == score) & (got < r))))
            floor = max(len(returned) + 1 + max(exact - 1 - beaten_by, 0), floor + 1)
            ranks[doc] = floor
    return ranks


def _mean(per_query: dict[str, dict[str, float]], metric: str) -> float:
    if not per_query:
        return math.nan
    return M.mean(per_query, metric)


# ------------------------------------------------------------------------------------------- measuring


def _measure(
    variant: Variant,
    store,
    info: IndexInfo,
    reference: Reference,
    sample: dict[str, list[tuple[int, int]]],
    progress: JobProgress,
    storage: dict[str, int] | None,
    options: CollectionOptions | None = None,
) -> VariantResult:
    """Score every slice through ``store`` with the variant's search parameters, time the latency
    sample, and count the memory."""
    for key, value in variant.search().items():
        setattr(store, key, value)  # the store's approximate-search settings (documented attributes)
    options = options if options is not None else info.options
    phase = SCORE
    progress.start(phase, len(reference.slices))
    t0 = time.perf_counter()
    slices: dict[str, dict[str, float]] = {}
    for ref in reference.slices:
        slices[ref.slice.name] = _score_slice(ref, store, reference)
        progress.advance(phase)
    seconds = time.perf_counter() - t0
    latency = _latency(store, reference, sample, exact=False)
    memory = footprint(info.points, reference.dim, options, info.indexed_vectors, storage)
    result = VariantResult(variant, options, info, memory, latency, slices, None, seconds)
    progress.note(_summary(result, reference))
    return result


#: Scores this close count as equal when a hit is checked against the exact k-th score (Qdrant's SIMD
#: and numpy's float32 dot products differ in the last bits).
SCORE_TOLERANCE = 1e-6


def _score_slice(ref: SliceRef, store, reference: Reference) -> dict[str, float]:
    """The variant's metrics and index recall@k on one slice: the share of its first k hits whose exact
    score reaches the exact k-th score (ties with the k-th passage count; ann-benchmarks' rule)."""
    if not ref.qids:
        return {**dict.fromkeys(METRICS, math.nan), "index_recall": math.nan}
    ids, matrix, position = ref.pool
    hits = store.search(ref.qvecs, limit=reference.depth, lang=ref.target, exact=False)
    k = min(reference.k, len(ids))
    ranks: dict[str, dict[str, int]] = {}
    recall = np.empty(len(ref.qids))
    for row, (qid, query_hits) in enumerate(zip(ref.qids, hits, strict=True)):
        returned = [position[h.doc_id] for h in query_hits]
        exact = matrix[returned[:k]] @ ref.qvecs[row]  # (<= k,) exact scores of the first k hits
        recall[row] = np.count_nonzero(exact >= ref.kth[row] - SCORE_TOLERANCE) / k if k else math.nan
        ranks[qid] = variant_ranks(ref, row, returned, ref.ranks.get(qid, {}))
    per_query = M.evaluate_ranks(ref.qrels, ranks, METRICS)
    return {**{m: _mean(per_query, m) for m in METRICS}, "index_recall": float(np.mean(recall))}


def _latency(
    store, reference: Reference, sample: dict[str, list[tuple[int, int]]], exact: bool
) -> dict[str, dict[str, float]]:
    """Single-query latency (ms) over the sample, per setting and all together, after the warmup."""

    def one(i: int, row: int) -> float:
        ref = reference.slices[i]
        start = time.perf_counter()
        store.search(ref.qvecs[row : row + 1], limit=reference.depth, lang=ref.target, exact=exact)
        return (time.perf_counter() - start) * 1000

    for i, row in sample.get("warmup", []):
        one(i, row)
    out: dict[str, dict[str, float]] = {}
    every: list[float] = []
    for setting, pairs in sample.items():
        if setting == "warmup":
            continue
        times = [one(i, row) for i, row in pairs]
        every += times
        out[setting] = percentiles(times)
    if every:
        out["all"] = percentiles(every)
    return out


def percentiles(times: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of latencies (ms), with their count."""
    values = np.asarray(times, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "n": len(values),
    }


def footprint(
    points: int, dim: int, options: CollectionOptions, indexed: int, storage: dict[str, int] | None
) -> dict[str, Any]:
    """Bytes of the original vectors (float32), the quantized vectors (scalar: dim + 4 bytes a vector;
    binary: one bit a dimension; product: dim x 4 / compression) and the HNSW graph (measured on the
    embedded engine's files; otherwise estimated as 2m 4-byte links a vector, uncompressed: an upper
    bound), with ``ram`` = graph + quantized vectors (originals may then live on disk, read only to
    rescore) or graph + originals, and ``disk`` = the embedded collection's files."""
    vectors = points * dim * 4
    quantized = 0
    if options.quantization == "scalar":
        quantized = points * (dim + 4)
    elif options.quantization == "binary":
        quantized = points * math.ceil(dim / 8)
    elif options.quantization == "product":
        quantized = points * dim * 4 // (options.product_compression or 16)
    if storage is not None:
        graph, source = storage.get("graph", 0), "measured"
    else:
        m = options.hnsw_m if options.hnsw_m is not None else QDRANT_HNSW_M
        graph, source = indexed * 2 * m * 4, "estimate"
    return {
        "vectors": vectors,
        "quantized": quantized,
        "graph": int(graph),
        "ram": int(graph + (quantized if options.quantization else vectors)),
        "disk": sum(storage.values()) if storage is not None else None,
        "graph_source": source,
    }


def _own_storage(store) -> dict[str, int] | None:
    measure = getattr(store, "storage_bytes", None)  # the embedded engine's files; a server has none
    return measure() if measure is not None else None


def _summary(result: VariantResult, reference: Reference) -> str:
    """One line per measured variant for the console."""
    parts = [result.variant.name + ":"]
    for setting in SETTINGS:
        names = [r.slice.name for r in reference.slices if r.slice.setting == setting]
        if names:
            delta = M.macro_average({n: result.slices[n]["map"] - reference.exact[n]["map"] for n in names})
            parts.append(f"{setting} mAP {100 * delta:+.2f}")
    recall = M.macro_average({n: v["index_recall"] for n, v in result.slices.items()})
    p50 = result.latency.get("all", {}).get("p50", math.nan)
    parts.append(
        f"recall@{reference.k} {recall:.4f}, p50 {p50:.2f} ms, RAM {result.memory['ram'] / 2**20:.1f} MiB"
    )
    return " ".join(parts)


def _describe(options: CollectionOptions) -> str:
    set_ = options.set_options()
    return ", ".join(f"{k} {v}" for k, v in set_.items()) if set_ else "the engine's default index"


# ------------------------------------------------------------------------------------------- scratch copies


class Scratch:
    """Builds scratch copies of the audited collection from its stored vectors: on the embedded engine
    in a temporary folder (removed at the end, whatever happens), on a server as collections named
    ``{collection}-audit-{token}-{i}`` (each deleted once measured). Use as a context manager."""

    def __init__(self, job: JobConfig, audit: AuditSection) -> None:
        self.job, self.audit = job, audit
        self.token = os.urandom(3).hex()
        self.root: Path | None = None

    def __enter__(self) -> Scratch:
        if not self.job.store.url:
            parent = Path(self.audit.scratch) if self.audit.scratch else None
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix="hq-audit-", dir=parent))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def copy(self, source, i: int, options: CollectionOptions) -> Iterator[tuple[Any, float]]:
        """A copy of ``source`` (its points' vectors, ``lang`` and ``doc_id``) indexed with ``options``,
        its index built; yields (store, seconds it took) and removes the copy afterwards. A scratch
        collection that exists already is refused, never reused or deleted."""
        from hybrid_qdrant.store import open_store

        kwargs = store_kwargs(self.job.store, self.job.collection)
        if self.root is not None:  # a folder of its own, removed whole afterwards
            location = self.root / str(i)
            kwargs["location"] = str(location)
            name = "variant"
        else:
            name = f"{source.collection}-audit-{self.token}-{i}"
        t0 = time.perf_counter()
        with contextlib.ExitStack() as cleanup:
            if self.root is not None:
                cleanup.callback(shutil.rmtree, location, True)
            store = cleanup.enter_context(open_store(collection=name, **{**kwargs, **options.set_options()}))
            created = False
            try:
                created = store.ensure_collection(source.spec())
                if not created:
                    raise StoreError(f"scratch collection '{name}' exists already; the audit leaves it alone")
                batch: list[Any] = []
                for record in source.iter_records(with_vectors=True, batch=1000):
                    batch.append(record)
                    if len(batch) == 1000:
                        _upsert_records(store, batch)
                        batch = []
                _upsert_records(store, batch)
                if self.root is None:
                    store.optimize(timeout=self.audit.index_timeout)  # the server's optimizers, waited for
                else:
                    store.optimize()  # the embedded engine builds the graph and quantized vectors now
                yield store, time.perf_counter() - t0
            finally:
                if created and self.root is None:
                    store.delete_collection(name)


def _upsert_records(store, records: Sequence[Any]) -> None:
    if records:
        payloads = [{LANG_KEY: r.payload.get(LANG_KEY), DOC_ID_KEY: r.doc_id} for r in records]
        store.upsert([r.doc_id for r in records], np.stack([r.vector for r in records]), payloads)
