"""Mono-, cross- and multilingual evaluation of a benchmark through a Qdrant collection.

Settings (arXiv 2408.10536, section 3.2; LAReQA):
    mono  - queries of language X against the passages of X (payload filter ``lang == X``);
    cross - queries of X against the passages of one other language Y (filter ``lang == Y``),
            every ordered pair X != Y;
    multi - queries of X against the pooled passages of the evaluated languages (filter ``lang`` in
            them; no filter when the collection holds exactly those languages), relevant passages in
            those languages only. A run over a language subset therefore never searches the others.

Every metric is a function of the ranks of a query's relevant passages. Qdrant answers each query of
each setting with its top ``depth`` hits; when every relevant passage of a query lies inside them the
ranks come straight from Qdrant. With ``full_ranking`` (LAReQA's mAP and rank distance are defined over
the full ranking) the ranks of relevant passages beyond the depth are computed exactly by scoring the
query against the slice's vectors as stored in the collection, so no metric is truncated; without it,
relevant passages beyond the depth count as not retrieved (trec_eval's convention) and the report
states the depth. Score ties are broken by doc id ascending, in Qdrant's hits and in exact scoring
alike (see ``metrics``). On request each slice's top hits also go to TREC run files (``runfiles``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hybrid_qdrant import ranking
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation import metrics as M
from hybrid_qdrant.evaluation.slices import SETTINGS, Slice, setting_metric, slices_for
from hybrid_qdrant.types import Benchmark, Qrels, Run

logger = logging.getLogger(__name__)

#: Metrics computed for every slice; rank distance only where a query has several relevant passages.
SLICE_METRICS = ("map", "recall@1", "recall@10", "recall@100", "ndcg@10", "mrr@10")
MULTI_METRICS = (*SLICE_METRICS, "rank_distance")
ENGINES = ("auto", "exact", "qdrant")


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs (a job's ``[evaluate]`` section).

    Attributes:
        settings: any of ``mono``, ``cross``, ``multi``.
        languages: restrict to these of the benchmark's languages (None: all; a job sets its languages
            in ``[benchmark]`` instead).
        engine: ``exact`` (numpy brute force over the vectors as stored in the collection, read once
            per language: the fastest exact path), ``qdrant`` (filtered queries through the store's
            query API, exact ranks computed beyond ``depth``; what a deployment runs) or ``auto``
            (default): ``exact`` for full-ranking metrics on a corpus held in memory, ``qdrant`` for a
            streamed corpus. Both give the same metrics up to float32 near-ties.
        depth: Qdrant query limit per query and slice; None picks 10 with ``full_ranking`` (deeper
            relevant passages get exact ranks anyway, and each hit costs Python time) and 100 without
            it (R@100 needs the top 100).
        full_ranking: compute ranks beyond ``depth`` exactly (LAReQA's mAP and rank distance are
            defined over the full ranking); None: on, except for a streamed corpus (MIRACL: millions of
            passages), whose metrics are then truncated at ``depth`` and say so.
        exact_search: ask Qdrant for exhaustive rather than HNSW search.
        query_batch: query vectors per store request.
    """

    settings: tuple[str, ...] = SETTINGS
    languages: tuple[str, ...] | None = None
    engine: str = "auto"
    depth: int | None = None
    full_ranking: bool | None = None
    exact_search: bool = True
    query_batch: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", tuple(self.settings))
        if self.languages is not None:
            object.__setattr__(self, "languages", tuple(lang.lower() for lang in self.languages))
        unknown = [s for s in self.settings if s not in SETTINGS]
        if unknown or not self.settings:
            raise ConfigError(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; choose from {', '.join(ENGINES)}")
        for key in ("depth", "query_batch"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")

    @classmethod
    def config_keys(cls, table) -> tuple[set[str], str]:
        """The ``[evaluate]`` keys: every field but ``languages`` (a job's languages are its benchmark's)."""
        return {
            f for f in cls.__dataclass_fields__ if f != "languages"
        }, "[evaluate] (languages: [benchmark])"

    def resolved(self, streamed: bool = False) -> EvalOptions:
        """These options with ``full_ranking``, ``depth`` and ``engine`` decided (for a streamed corpus
        or not)."""
        full = self.full_ranking if self.full_ranking is not None else not streamed
        depth = self.depth if self.depth is not None else (10 if full else 100)
        engine = self.engine
        if engine == "auto":
            engine = "exact" if full and not streamed else "qdrant"
        return replace(self, full_ranking=full, depth=depth, engine=engine)


@dataclass
class SliceResult:
    """Per-query metric values of one slice, with its counts."""

    slice: Slice
    per_query: dict[str, dict[str, float]]
    n_queries: int
    n_dropped: int = 0
    n_exact_fallback: int = 0
    seconds: float = 0.0

    def mean(self, metric: str) -> float | None:
        """Mean over the slice's queries (NaN values skipped); None when nothing is defined."""
        if not self.per_query or metric not in next(iter(self.per_query.values())):
            return None
        value = M.mean(self.per_query, metric)
        return None if math.isnan(value) else value


@dataclass
class EvaluationResult:
    """All slices of an evaluation, with macro averages as in the paper."""

    benchmark: str
    languages: tuple[str, ...]
    slices: list[SliceResult]
    options: EvalOptions
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    protocol: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # query id -> parallel group (where known)

    def metrics(self) -> dict[str, float]:
        """Flat metrics: ``{setting}/{metric}`` macro values and ``{setting}/{q}-{p}/{metric}`` per slice."""
        out: dict[str, float] = {}
        for setting in SETTINGS:
            rows = [r for r in self.slices if r.slice.setting == setting]
            if not rows:
                continue
            names = MULTI_METRICS if setting == "multi" else SLICE_METRICS
            for metric in names:
                per_slice = {r.slice: r.mean(metric) for r in rows}
                per_slice = {sl: v for sl, v in per_slice.items() if v is not None}
                for sl, value in per_slice.items():
                    out[sl.metric(metric)] = value
                if per_slice:
                    out[setting_metric(setting, metric)] = M.macro_average(per_slice)
        return out


def slice_qrels(
    qrels: Qrels, query_ids: Sequence[str], language: Callable[[str], str | None], langs: frozenset[str]
) -> Qrels:
    """Relevant passages of each query restricted to the slice's passage languages."""
    out: Qrels = {}
    for qid in query_ids:
        rel = {d: r for d, r in qrels.get(qid, {}).items() if r > 0 and language(d) in langs}
        if rel:
            out[qid] = rel
    return out


class StoreVectors:
    """The collection's vectors per language filter, read once (exact ranks beyond the depth; the audit's
    exact reference)."""

    def __init__(self, store) -> None:
        self.store = store
        self._by_lang: dict[Any, tuple[list[str], np.ndarray, dict[str, int]]] = {}

    def get(self, lang: Any) -> tuple[list[str], np.ndarray, dict[str, int]]:
        """(doc ids sorted, their vectors (n, dim) in that order, doc id -> row) of a language filter."""
        if lang not in self._by_lang:
            doc_ids, vectors = self.store.vectors(lang)
            # sorted by doc id, so that the column index is the tie-break order
            order = sorted(range(len(doc_ids)), key=doc_ids.__getitem__)
            ids = [doc_ids[i] for i in order]
            matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[order])
            self._by_lang[lang] = (ids, matrix, {d: i for i, d in enumerate(ids)})
        return self._by_lang[lang]


def _exact_ranks(
    qvecs: np.ndarray,
    qids: Sequence[str],
    qrels: Qrels,
    vectors: StoreVectors,
    lang: Any,
    run: Run | None = None,
    run_depth: int = 0,
) -> dict[str, dict[str, int]]:
    """Exact 1-based ranks of each query's relevant passages among all passages of the slice (and each
    query's top ``run_depth`` passages into ``run``, when given)."""
    doc_ids, matrix, position = vectors.get(lang)
    relevant = [[position[d] for d in qrels[q] if d in position] for q in qids]
    if run is not None and doc_ids:
        top, values = ranking.top_k_from_vectors(qvecs, matrix, run_depth)  # columns in doc-id order
        run.update(ranking.top_k_to_run(top, values, qids, doc_ids))
    return ranking.ranks_from_vectors(qvecs, matrix, doc_ids, relevant, qids)


def _qdrant_ranks(
    qvecs: np.ndarray,
    qids: Sequence[str],
    qrels: Qrels,
    store,
    lang: Any,
    options: EvalOptions,
    vectors: StoreVectors,
    run: Run | None = None,
    run_depth: int = 0,
) -> tuple[dict[str, dict[str, int]], int]:
    """Ranks from Qdrant's top hits; exact ranks for queries whose relevant passages lie deeper (and
    each query's top ``run_depth`` hits into ``run``, when given)."""
    ranks: dict[str, dict[str, int]] = {}
    deeper: list[int] = []
    depth = options.depth
    limit = max(depth + 1, run_depth)
    for start in range(0, len(qids), options.query_batch):
        hits = store.search(
            qvecs[start : start + options.query_batch], limit=limit, lang=lang, exact=options.exact_search
        )
        for offset, query_hits in enumerate(hits):
            i = start + offset
            qid = qids[i]
            ordered = query_hits  # score descending, ties by doc id (the store contract)
            if run is not None:
                run[qid] = {h.doc_id: h.score for h in ordered[:run_depth]}
            # a tie across the depth boundary makes the order inside it undecidable from these hits
            boundary_tie = len(ordered) > depth and ordered[depth].score == ordered[depth - 1].score
            top = ordered[:depth]
            found = {h.doc_id: r for r, h in enumerate(top, start=1) if h.doc_id in qrels[qid]}
            if (
                options.full_ranking
                and (boundary_tie or len(found) < len(qrels[qid]))
                and len(ordered) > depth
            ):
                deeper.append(i)
            else:
                ranks[qid] = found
    if deeper:
        sub = [qids[i] for i in deeper]
        ranks.update(_exact_ranks(qvecs[deeper], sub, qrels, vectors, lang))
    return ranks, len(deeper)


def evaluate(
    benchmark: Benchmark,
    query_vectors: np.ndarray,
    store,
    options: EvalOptions | None = None,
    progress: Callable[[Slice], None] | None = None,
    pool_is_collection: bool = False,
    runs=None,
) -> EvaluationResult:
    """Evaluate every slice of the requested settings.

    Args:
        benchmark: the loaded benchmark (its passages are in the store's collection).
        query_vectors: (len(benchmark.queries), dim) L2-normalised, in ``benchmark.queries`` order.
        store: a ``DataStore`` holding the benchmark's passages with ``lang`` in the payload.
        options: EvalOptions.
        progress: called after each slice.
        pool_is_collection: the collection holds exactly the evaluated languages' passages (checked by
            the caller), so the multilingual pool needs no language filter.
        runs: a ``runfiles.RunWriter`` (or anything with ``depth`` and ``write(setting, key, run,
            qrels)``): each slice's top max(depth, ``runs.depth``) hits per query and its relevant
            passages are handed to it (TREC run files); None (default) keeps only the ranks.

    Returns:
        EvaluationResult with per-query values for every slice.
    """
    options = (options or EvalOptions()).resolved(benchmark.streamed)
    if len(query_vectors) != len(benchmark.queries):
        raise ValueError(f"{len(query_vectors)} query vectors for {len(benchmark.queries)} queries")
    start = time.perf_counter()
    by_lang: dict[str, list[int]] = {}
    for i, q in enumerate(benchmark.queries):
        by_lang.setdefault(q.lang, []).append(i)
    vectors = StoreVectors(store)
    language = benchmark.passage_languages()
    results: list[SliceResult] = []
    langs = tuple(options.languages or benchmark.languages)
    pool = None if pool_is_collection else langs  # the multilingual pool: the evaluated languages only
    run_depth = max(options.depth, runs.depth) if runs is not None else 0
    for sl in slices_for(benchmark, options.settings, options.languages):
        t0 = time.perf_counter()
        rows = by_lang.get(sl.query_lang, [])
        all_ids = [benchmark.queries[i].query_id for i in rows]
        target = sl.passage_lang if sl.passage_lang is not None else pool  # the store's language filter
        slice_langs = frozenset([sl.passage_lang] if sl.passage_lang is not None else langs)
        qrels = slice_qrels(benchmark.qrels, all_ids, language, slice_langs)
        keep = [i for i, qid in zip(rows, all_ids, strict=False) if qid in qrels]
        qids = [benchmark.queries[i].query_id for i in keep]
        qvecs = query_vectors[keep]
        fallback = 0
        run: Run | None = {} if runs is not None else None
        if not qids:
            ranks: dict[str, dict[str, int]] = {}
        elif options.engine == "exact":
            ranks = _exact_ranks(qvecs, qids, qrels, vectors, target, run=run, run_depth=run_depth)
        else:
            ranks, fallback = _qdrant_ranks(
                qvecs, qids, qrels, store, target, options, vectors, run=run, run_depth=run_depth
            )
        if runs is not None:
            runs.write(sl.setting, sl.key, run, qrels)
        names = MULTI_METRICS if sl.setting == "multi" else SLICE_METRICS
        per_query = M.evaluate_ranks(qrels, ranks, names)
        results.append(
            SliceResult(sl, per_query, len(qids), len(rows) - len(keep), fallback, time.perf_counter() - t0)
        )
        if progress:
            progress(sl)
    counts = {
        "languages": len(langs),
        "passages": store.count(langs),  # the points of the evaluated languages: the pools searched
        "queries": len(benchmark.queries),
        "slices": len(results),
        "query_slices": sum(r.n_queries for r in results),
        "dropped_no_relevant": sum(r.n_dropped for r in results),
        "exact_fallback": sum(r.n_exact_fallback for r in results),
        **{f"skipped_{k}": v for k, v in benchmark.skipped.items()},
    }
    return EvaluationResult(
        benchmark.name,
        langs,
        results,
        options,
        counts,
        time.perf_counter() - start,
        dict(benchmark.protocol),
        {q.query_id: q.group_id for q in benchmark.queries if q.group_id is not None},
    )
