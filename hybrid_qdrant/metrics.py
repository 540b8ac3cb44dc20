"""Retrieval metrics as pure functions of the ranks of a query's relevant items.

Every metric used here (mAP, recall@k, nDCG@k, MRR@k, rank distance) depends only on the 1-based
ranks of a query's relevant items and their grades, so the core works on ranks:

- ``ranks_from_run`` turns a BEIR run into ``{qid: {doc_id: rank}}`` for relevant items only;
- ``ranks_from_scores`` does the same from a dense score matrix without sorting whole rows (the
  brute-force numpy reference that Qdrant results are compared against);
- ``evaluate_ranks`` / ``evaluate_run`` compute per-query metrics from those ranks.

Tie-break: documents are ordered by score descending, then by doc id ascending (Python string order).
Ranks therefore never depend on the order of a run's dict or of a Qdrant response (mteb's retrieval
metrics document how insertion-order tie-breaking changes reported numbers). Note that trec_eval (and
so pytrec_eval / ir-measures) breaks ties by doc id *descending*: on runs with exactly tied scores the
two can differ; on runs without ties they agree.

Relevance: a qrels entry with grade > 0 is relevant; grades are the (linear) gains of nDCG, as in
trec_eval's ``ndcg_cut``. A relevant item absent from a run has rank infinity (absent from the ranks
mapping). Nothing here mutates its inputs.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hybrid_qdrant.types import Qrels, Run

__all__ = [
    "METRIC_NAMES",
    "Ranks",
    "RelevantRanks",
    "average_precision",
    "evaluate_ranks",
    "evaluate_run",
    "macro_average",
    "mean",
    "ndcg",
    "parse_metric",
    "queries_without_relevant",
    "rank_distance",
    "ranks_from_run",
    "ranks_from_scores",
    "ranks_from_vectors",
    "ranks_to_dict",
    "recall",
    "reciprocal_rank",
    "relevant_indices",
    "top_k_from_scores",
    "top_k_to_run",
]

logger = logging.getLogger(__name__)

Ranks = dict[str, dict[str, int]]
"""``{query_id: {doc_id: rank}}``: 1-based ranks of relevant items; an unretrieved item is absent."""

# Target number of elements of one (rows, relevant, docs) comparison block in ranks_from_scores:
# small enough to stay in cache (measured fastest at a few MB on 2 cores), large enough to amortise
# the per-chunk Python overhead.
_BLOCK_ELEMENTS = 4_000_000
# Scores computed per matrix product in ranks_from_vectors (16M float32 = 64 MB).
_SCORE_ELEMENTS = 16_000_000


@dataclass(frozen=True)
class RelevantRanks:
    """One query's relevant items: their grades (from qrels) and their ranks (from a run).

    Attributes:
        grades: doc_id -> grade, every relevant item of the query (grade > 0).
        ranks: doc_id -> 1-based rank for the relevant items that were retrieved; an item that was not
            retrieved is absent (rank infinity).
    """

    grades: Mapping[str, int]
    ranks: Mapping[str, int]

    def __post_init__(self) -> None:
        if any(not g > 0 for g in self.grades.values()):
            raise ValueError("RelevantRanks.grades must hold only relevant items (grade > 0)")
        unknown = [d for d in self.ranks if d not in self.grades]
        if unknown:
            raise ValueError(f"ranks given for items that are not relevant: {unknown[:5]}")
        values = list(self.ranks.values())
        if any(isinstance(r, bool) or int(r) != r or r < 1 for r in values):
            raise ValueError("ranks must be integers >= 1")
        if len(set(values)) != len(values):
            raise ValueError("two relevant items share a rank; ranks must be distinct")

    @property
    def n_relevant(self) -> int:
        """Number of relevant items in qrels (the denominator of AP and recall)."""
        return len(self.grades)

    @cached_property
    def sorted_ranks(self) -> list[int]:
        """Ranks of the retrieved relevant items, ascending."""
        return sorted(int(r) for r in self.ranks.values())

    @cached_property
    def ideal_gains(self) -> list[float]:
        """Grades of all relevant items, descending (the ideal ranking's gains)."""
        return sorted((float(g) for g in self.grades.values()), reverse=True)


# ---------------------------------------------------------------------------------------------
# Per-query metrics on ranks
# ---------------------------------------------------------------------------------------------


def _check_k(k: int | None, *, required: bool = False) -> None:
    if k is None:
        if required:
            raise ValueError("a cutoff k is required")
        return
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"cutoff k must be a positive integer, got {k!r}")


def average_precision(rr: RelevantRanks, k: int | None = None) -> float:
    """Average precision as LAReQA's mAP defines it.

    AP = (1 / R) * sum over relevant items ranked within k of (relevant items up to its rank) / rank,
    with R the number of relevant items in qrels: an unretrieved relevant item contributes 0. With k,
    this is trec_eval's ``map_cut``.
    """
    _check_k(k)
    if rr.n_relevant == 0:
        return 0.0
    total = 0.0
    for hits, rank in enumerate(rr.sorted_ranks, start=1):
        if k is not None and rank > k:
            break
        total += hits / rank
    return total / rr.n_relevant


def recall(rr: RelevantRanks, k: int) -> float:
    """Fraction of the query's relevant items ranked within the top k (hit@k with one relevant)."""
    _check_k(k, required=True)
    if rr.n_relevant == 0:
        return 0.0
    return sum(1 for r in rr.sorted_ranks if r <= k) / rr.n_relevant


def ndcg(rr: RelevantRanks, k: int | None = None) -> float:
    """nDCG with linear gains (the grade) and log2(rank + 1) discount, as trec_eval's ``ndcg_cut``.

    The ideal DCG ranks all of the query's relevant items by grade; k = None uses the full ranking.
    """
    _check_k(k)
    dcg = 0.0
    for doc_id, rank in rr.ranks.items():
        if k is None or rank <= k:
            dcg += rr.grades[doc_id] / math.log2(rank + 1)
    ideal = rr.ideal_gains if k is None else rr.ideal_gains[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def reciprocal_rank(rr: RelevantRanks, k: int | None = None) -> float:
    """1 / rank of the first relevant item if it is within k (any rank when k is None), else 0."""
    _check_k(k)
    if not rr.sorted_ranks:
        return 0.0
    first = rr.sorted_ranks[0]
    return 1.0 / first if k is None or first <= k else 0.0


def rank_distance(rr: RelevantRanks) -> float:
    """Max minus min rank of the query's relevant items (LAReQA's language-bias measure).

    In the pooled multilingual ranking the relevant items of a query are its parallel passages in every
    language, so a language-agnostic model ranks them next to each other (distance R - 1 at best).

    Returns:
        The distance, or NaN when it is undefined: fewer than 2 relevant items, or a relevant item not
        ranked (a run truncated before it). Rank the full corpus when reporting this metric.
    """
    if rr.n_relevant < 2 or len(rr.ranks) < rr.n_relevant:
        return math.nan
    return float(rr.sorted_ranks[-1] - rr.sorted_ranks[0])


# name -> (function, k policy): "required", "optional" or "forbidden"
_METRICS: dict[str, tuple[Callable[..., float], str]] = {
    "map": (average_precision, "optional"),
    "recall": (recall, "required"),
    "ndcg": (ndcg, "optional"),
    "mrr": (reciprocal_rank, "optional"),
    "rank_distance": (rank_distance, "forbidden"),
}

METRIC_NAMES: tuple[str, ...] = tuple(_METRICS)
"""Base names accepted by ``parse_metric`` (``name`` or ``name@k``)."""

_METRIC_RE = re.compile(r"^([a-z_]+)(?:@([1-9][0-9]*))?$")


def parse_metric(metric: str) -> tuple[str, int | None]:
    """Parse a metric name: ``name`` or ``name@k`` with k a positive integer.

    Names: ``map`` (``map@k`` = trec_eval map_cut), ``recall@k`` (k required), ``ndcg``/``ndcg@k``,
    ``mrr``/``mrr@k`` and ``rank_distance`` (no k). Without k, the full ranking counts.

    Returns:
        (base name, k or None).
    """
    match = _METRIC_RE.match(metric) if isinstance(metric, str) else None
    if match is None or match.group(1) not in _METRICS:
        raise ValueError(
            f"unknown metric {metric!r}; expected one of {', '.join(METRIC_NAMES)}, optionally with @k"
        )
    name, k = match.group(1), match.group(2)
    policy = _METRICS[name][1]
    if policy == "required" and k is None:
        raise ValueError(f"metric {metric!r} needs a cutoff, e.g. {name}@10")
    if policy == "forbidden" and k is not None:
        raise ValueError(f"metric {name!r} takes no cutoff")
    return name, None if k is None else int(k)


def _metric_value(name: str, k: int | None, rr: RelevantRanks) -> float:
    function, policy = _METRICS[name]
    if policy == "forbidden":
        return function(rr)
    return function(rr, k)


# ---------------------------------------------------------------------------------------------
# Runs -> ranks -> per-query metrics
# ---------------------------------------------------------------------------------------------


def _relevant_grades(judged: Mapping[str, int]) -> dict[str, int]:
    return {doc_id: grade for doc_id, grade in judged.items() if grade > 0}


def queries_without_relevant(qrels: Qrels) -> list[str]:
    """Query ids in qrels with no relevant item (grade > 0); metrics leave them out."""
    return [qid for qid, judged in qrels.items() if not any(g > 0 for g in judged.values())]


def _query_ranks(relevant: Sequence[str], scores: Mapping[str, float]) -> dict[str, int]:
    """Ranks of ``relevant`` docs in one query's run without sorting it.

    rank = #(score > s) + #(score == s and doc_id < d) + 1: O(n * r) numpy comparisons, faster than a
    Python sort of the run from ~30 documents up (measured: 0.3 ms vs 7 ms for 13000 docs, 11 relevant).
    """
    present = [d for d in relevant if d in scores]
    if not present:
        return {}
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))  # (n,)
    if np.isnan(values).any():
        raise ValueError("run scores must not be NaN")
    own = np.array([scores[d] for d in present], dtype=np.float64)  # (r,)
    greater = np.count_nonzero(values[None, :] > own[:, None], axis=1)  # (r,)
    equal = np.count_nonzero(values[None, :] == own[:, None], axis=1)  # (r,) includes itself
    out: dict[str, int] = {}
    counts = zip(present, greater.tolist(), equal.tolist(), own.tolist(), strict=True)
    for doc_id, n_greater, n_equal, score in counts:
        rank = n_greater + 1
        if n_equal > 1:
            rank += sum(1 for other, value in scores.items() if value == score and other < doc_id)
        out[doc_id] = rank
    return out


def ranks_from_run(qrels: Qrels, run: Run) -> Ranks:
    """Ranks of each query's relevant items in a run (score descending, then doc id ascending).

    Returns:
        ``{qid: {doc_id: rank}}`` for every query that is in both qrels and the run and has a relevant
        item; relevant items the run does not contain are absent. Queries only in the run are ignored.
    """
    ranks: Ranks = {}
    for qid, judged in qrels.items():
        scores = run.get(qid)
        if scores is None:
            continue
        relevant = list(_relevant_grades(judged))
        if relevant:
            ranks[qid] = _query_ranks(relevant, scores)
    return ranks


def evaluate_ranks(
    qrels: Qrels, ranks: Mapping[str, Mapping[str, int]], metrics: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per-query metrics from the ranks of relevant items.

    Args:
        qrels: relevance judgements; grade > 0 is relevant.
        ranks: ``{qid: {doc_id: rank}}`` as from ``ranks_from_run`` / ``ranks_to_dict``; ranks of
            non-relevant docs are ignored.
        metrics: names as ``parse_metric`` reads them, e.g. ``["map", "recall@1", "ndcg@10"]``.

    Returns:
        ``{qid: {metric: value}}`` for every query in qrels with at least one relevant item, in qrels
        order. A query absent from ``ranks`` retrieved nothing: 0 for every metric (rank_distance NaN).
        Queries without a relevant item are left out (see ``queries_without_relevant``); queries only in
        ``ranks`` are ignored.
    """
    if isinstance(metrics, str):
        raise ValueError("metrics must be a sequence of names, not a single string")
    parsed = [(metric, *parse_metric(metric)) for metric in metrics]
    if not parsed:
        raise ValueError("no metrics requested")
    out: dict[str, dict[str, float]] = {}
    skipped = 0
    for qid, judged in qrels.items():
        grades = _relevant_grades(judged)
        if not grades:
            skipped += 1
            continue
        query_ranks = ranks.get(qid, {})
        rr = RelevantRanks(grades, {d: r for d, r in query_ranks.items() if d in grades})
        out[qid] = {metric: _metric_value(name, k, rr) for metric, name, k in parsed}
    if skipped:
        logger.info("%d of %d queries have no relevant item and are not scored", skipped, len(qrels))
    return out


def evaluate_run(qrels: Qrels, run: Run, metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-query metrics of a run: ``evaluate_ranks(qrels, ranks_from_run(qrels, run), metrics)``."""
    return evaluate_ranks(qrels, ranks_from_run(qrels, run), metrics)


def mean(per_query: Mapping[str, Mapping[str, float]], metric: str) -> float:
    """Mean of one metric over queries; NaN values (undefined rank distance) are skipped.

    Returns:
        The mean, or NaN when every value is NaN.
    """
    if not per_query:
        raise ValueError("no queries to average")
    try:
        values = [float(scores[metric]) for scores in per_query.values()]
    except KeyError:
        raise ValueError(f"metric {metric!r} is missing for some queries") from None
    return _nanmean(values)


def macro_average(values_by_slice: Mapping[str, float]) -> float:
    """Unweighted mean over slices (per-language or per-language-pair means), NaN slices skipped.

    Returns:
        The mean, or NaN when every slice is NaN.
    """
    if not values_by_slice:
        raise ValueError("no slices to average")
    return _nanmean([float(v) for v in values_by_slice.values()])


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return math.fsum(defined) / len(defined) if defined else math.nan


# ---------------------------------------------------------------------------------------------
# Dense score matrices: the vectorised reference
# ---------------------------------------------------------------------------------------------


def _float_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (n_queries, n_docs), got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
            raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
        scores = scores.astype(np.float64)
    return scores


def _doc_order(doc_ids: Sequence[str] | np.ndarray | None, n_docs: int) -> np.ndarray:
    """Position of each column in ascending doc-id order (the tie-break key); column order if None."""
    if doc_ids is None:
        return np.arange(n_docs, dtype=np.int64)
    ids = np.asarray(doc_ids, dtype=str)
    if ids.shape != (n_docs,):
        raise ValueError(f"doc_ids must have one id per column ({n_docs}), got shape {ids.shape}")
    order = np.argsort(ids, kind="stable")
    if n_docs > 1 and (ids[order[1:]] == ids[order[:-1]]).any():
        raise ValueError("doc_ids must be unique")
    position = np.empty(n_docs, dtype=np.int64)
    position[order] = np.arange(n_docs, dtype=np.int64)
    return position


def relevant_indices(mask: np.ndarray) -> np.ndarray:
    """Column indices of the True entries of a boolean (n_queries, n_docs) mask, row by row.

    Returns:
        int64 array (n_queries, max relevant per row), ascending within a row, padded with -1.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError("mask must be a 2-D boolean array")
    counts = mask.sum(axis=1)  # (n_q,)
    width = int(counts.max()) if counts.size else 0
    rows, cols = np.nonzero(mask)  # row-major: columns ascending within a row
    starts = np.cumsum(counts) - counts
    slots = np.arange(rows.size) - np.repeat(starts, counts)
    out = np.full((mask.shape[0], width), -1, dtype=np.int64)
    out[rows, slots] = cols
    return out


def _pad_ragged(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Ragged per-row index lists as an int64 (n_rows, max length) array padded with -1."""
    lengths = [len(row) for row in rows]
    out = np.full((len(rows), max(lengths, default=0)), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = np.asarray(row, dtype=np.int64)
    return out


def _check_indices(relevant: np.ndarray | Sequence[Sequence[int]], n_queries: int, n_docs: int) -> np.ndarray:
    if not isinstance(relevant, np.ndarray):
        if len(relevant) != n_queries:
            raise ValueError(f"relevant has {len(relevant)} rows for {n_queries} queries")
        relevant = _pad_ragged(relevant)
    if relevant.dtype == np.bool_:
        if relevant.shape != (n_queries, n_docs):
            raise ValueError(f"relevant mask must have shape {(n_queries, n_docs)}, got {relevant.shape}")
        return relevant_indices(relevant)
    if relevant.ndim != 2 or relevant.shape[0] != n_queries or not np.issubdtype(relevant.dtype, np.integer):
        raise ValueError(
            f"relevant must be a boolean mask {(n_queries, n_docs)} or integer indices (n_queries, r)"
        )
    relevant = relevant.astype(np.int64, copy=False)
    if relevant.size and (relevant.min() < -1 or relevant.max() >= n_docs):
        raise ValueError(f"relevant indices must lie in [0, {n_docs}) or be -1 (padding)")
    if relevant.shape[1] > 1:
        ordered = np.sort(relevant, axis=1)
        if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
            raise ValueError("a relevant index repeats within a row")
    return relevant


def _count_true(block: np.ndarray) -> np.ndarray:
    """Count True along the last axis of a C-contiguous bool array whose last axis is a multiple of 8."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0: popcount of 8 bools at a time (True is 0x01)
        words = block.view(np.uint64)
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    return np.count_nonzero(block, axis=-1).astype(np.int64)  # pragma: no cover


def _rank_chunk_size(chunk_size: int | None, n_rel: int, width: int) -> int:
    if chunk_size is None:
        return max(1, _BLOCK_ELEMENTS // (max(n_rel, 1) * width))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _rank_block(block: np.ndarray, idx: np.ndarray, doc_order: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """Ranks for one chunk of rows: block (c, n_docs) scores, idx (c, r) indices padded with -1."""
    if np.isnan(block).any():
        raise ValueError("scores must not be NaN")
    n_docs = block.shape[1]
    rows = buffer[: block.shape[0]]  # (c, width); the NaN padding compares False with everything
    rows[:, :n_docs] = block
    valid = idx >= 0
    own = np.take_along_axis(block, np.where(valid, idx, 0), axis=1)  # (c, r)
    own = np.where(valid, own, np.nan)  # padding counts 0 everywhere
    greater = _count_true(rows[:, None, :] > own[:, :, None])  # (c, r)
    at_least = _count_true(rows[:, None, :] >= own[:, :, None])  # (c, r), includes itself
    ranks = greater + 1
    tied_i, tied_j = np.nonzero(at_least - greater > 1)
    if tied_i.size:  # exact ties: add the tied docs whose id sorts first
        equal = block[tied_i] == own[tied_i, tied_j][:, None]  # (m, n_docs)
        earlier = doc_order[None, :] < doc_order[idx[tied_i, tied_j]][:, None]  # (m, n_docs)
        ranks[tied_i, tied_j] += np.count_nonzero(equal & earlier, axis=1)
    return np.where(valid, ranks, 0)


def ranks_from_scores(
    scores: np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    doc_ids: Sequence[str] | np.ndarray | None = None,
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Exact 1-based ranks of relevant items in each row of a dense score matrix, without sorting rows.

    rank = #(score > s) + #(score == s and doc_id < own doc_id) + 1, the same ranking as
    ``ranks_from_run`` on the full-depth run. Rows are processed in chunks to bound memory. Measured on
    2 cores: 0.6-0.7 s for 13090 x 13000 float32 scores with 11 relevant per row (float64: ~3 s).

    Args:
        scores: (n_queries, n_docs) real scores, no NaN.
        relevant: boolean mask (n_queries, n_docs); or integer column indices (n_queries, r) padded
            with -1; or one sequence of column indices per row (ragged). A mask is read as
            ``relevant_indices(mask)``.
        doc_ids: the id of each column, for the tie-break; None breaks ties by column index.
        chunk_size: rows per chunk; None keeps a (rows, r, n_docs) comparison block near 4M elements.

    Returns:
        int64 array (n_queries, r): ranks aligned with the (padded) relevant indices, 0 at padding.
    """
    scores = _float_scores(scores)
    n_queries, n_docs = scores.shape
    indices = _check_indices(relevant, n_queries, n_docs)
    doc_order = _doc_order(doc_ids, n_docs)
    out = np.zeros(indices.shape, dtype=np.int64)
    if n_queries == 0 or indices.shape[1] == 0:
        return out
    width = n_docs + (-n_docs) % 8  # pad columns so a row of bools views as uint64 words
    chunk_size = _rank_chunk_size(chunk_size, indices.shape[1], width)
    buffer = np.full((min(chunk_size, n_queries), width), np.nan, dtype=scores.dtype)
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        out[start:stop] = _rank_block(scores[start:stop], indices[start:stop], doc_order, buffer)
    return out


def ranks_from_vectors(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    doc_ids: Sequence[str] | np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    query_ids: Sequence[str],
    *,
    chunk_size: int | None = None,
) -> Ranks:
    """Exact ranks by dot product, scoring a chunk of queries at a time (no full score matrix).

    Args:
        query_vectors: (n_queries, dim); doc_vectors: (n_docs, dim). Normalised vectors make the dot
            product the cosine similarity.
        doc_ids: the id of each doc vector (tie-break and output keys).
        relevant: per query, the relevant rows of ``doc_vectors`` (as in ``ranks_from_scores``).
        query_ids: the id of each query vector.
        chunk_size: queries per chunk; None as in ``ranks_from_scores``.

    Returns:
        ``{qid: {doc_id: rank}}`` with every relevant item ranked among all docs.
    """
    queries, docs = np.asarray(query_vectors), np.asarray(doc_vectors)
    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise ValueError(f"vectors must be (n, dim) with one dim, got {queries.shape} and {docs.shape}")
    if len(query_ids) != queries.shape[0]:
        raise ValueError(f"{len(query_ids)} query ids for {queries.shape[0]} query vectors")
    n_queries, n_docs = queries.shape[0], docs.shape[0]
    indices = _check_indices(relevant, n_queries, n_docs)
    doc_order = _doc_order(doc_ids, n_docs)
    ranks = np.zeros(indices.shape, dtype=np.int64)
    if n_queries and indices.shape[1]:
        dtype = np.result_type(queries.dtype, docs.dtype, np.float32)
        width = n_docs + (-n_docs) % 8
        chunk_size = _rank_chunk_size(chunk_size, indices.shape[1], width)
        buffer = np.full((min(chunk_size, n_queries), width), np.nan, dtype=dtype)
        docs_t = docs.astype(dtype, copy=False).T  # (dim, n_docs)
        # score many queries per matrix product (small products are slow), rank them chunk by chunk
        score_rows = max(chunk_size, _SCORE_ELEMENTS // max(n_docs, 1))
        for outer in range(0, n_queries, score_rows):
            block = queries[outer : outer + score_rows].astype(dtype, copy=False) @ docs_t  # (s, n_docs)
            for inner in range(0, block.shape[0], chunk_size):
                start, stop = outer + inner, outer + min(inner + chunk_size, block.shape[0])
                ranks[start:stop] = _rank_block(
                    block[inner : inner + chunk_size], indices[start:stop], doc_order, buffer
                )
    return ranks_to_dict(ranks, indices, query_ids, doc_ids)


def top_k_from_scores(
    scores: np.ndarray,
    k: int,
    doc_ids: Sequence[str] | np.ndarray | None = None,
    *,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row, ordered by score descending then doc id ascending.

    Uses a partial partition per row; rows with a tie across the k-th place pick the tied docs with the
    smallest ids, so the result equals the head of the full ranking.

    Args:
        scores: (n_queries, n_docs) real scores, no NaN.
        k: how many per row; more than n_docs returns all n_docs.
        doc_ids: the id of each column, for the tie-break; None breaks ties by column index.
        chunk_size: rows per chunk.

    Returns:
        (indices, values): int64 column indices and their scores, both (n_queries, min(k, n_docs)).
    """
    scores = _float_scores(scores)
    _check_k(k, required=True)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    n_queries, n_docs = scores.shape
    k = min(int(k), n_docs)
    doc_order = _doc_order(doc_ids, n_docs)
    indices = np.empty((n_queries, k), dtype=np.int64)
    values = np.empty((n_queries, k), dtype=scores.dtype)
    if k == 0:
        return indices, values
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        block = scores[start:stop]  # (c, n_docs)
        if np.isnan(block).any():
            raise ValueError("scores must not be NaN")
        if k < n_docs:
            picked = np.argpartition(block, n_docs - k, axis=1)[:, n_docs - k :]  # (c, k), unordered
        else:
            picked = np.broadcast_to(np.arange(n_docs), block.shape).copy()
        kth = np.take_along_axis(block, picked, axis=1).min(axis=1)  # (c,)
        ambiguous = np.nonzero(np.count_nonzero(block >= kth[:, None], axis=1) > k)[0]
        for row in ambiguous:  # a tie straddles the k-th place: take the tied docs with smallest ids
            above = np.flatnonzero(block[row] > kth[row])
            tied = np.flatnonzero(block[row] == kth[row])
            tied = tied[np.argsort(doc_order[tied], kind="stable")[: k - above.size]]
            picked[row] = np.concatenate([above, tied])
        picked_scores = np.take_along_axis(block, picked, axis=1)  # (c, k)
        order = np.lexsort((doc_order[picked], -picked_scores), axis=1)  # (c, k)
        indices[start:stop] = np.take_along_axis(picked, order, axis=1)
        values[start:stop] = np.take_along_axis(picked_scores, order, axis=1)
    return indices, values


def ranks_to_dict(
    ranks: np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    query_ids: Sequence[str],
    doc_ids: Sequence[str] | np.ndarray,
) -> Ranks:
    """Dict form of ``ranks_from_scores`` output, for ``evaluate_ranks``.

    Args:
        ranks: (n_queries, r) as returned by ``ranks_from_scores``.
        relevant: the indices (or mask) passed to ``ranks_from_scores``.
        query_ids: the id of each row; doc_ids: the id of each column.
    """
    ranks = np.asarray(ranks)
    indices = _check_indices(relevant, len(query_ids), len(doc_ids))
    if ranks.shape != indices.shape:
        raise ValueError(f"ranks shape {ranks.shape} does not match relevant indices {indices.shape}")
    ids = [str(d) for d in doc_ids]
    out: Ranks = {}
    for qid, row_idx, row_ranks in zip(query_ids, indices.tolist(), ranks.tolist(), strict=True):
        out[qid] = {ids[j]: r for j, r in zip(row_idx, row_ranks, strict=True) if j >= 0 and r > 0}
    return out


def top_k_to_run(
    indices: np.ndarray, values: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str] | np.ndarray
) -> Run:
    """A BEIR run from ``top_k_from_scores`` output: ``{qid: {doc_id: score}}``."""
    indices, values = np.asarray(indices), np.asarray(values)
    if indices.shape != values.shape or indices.ndim != 2 or indices.shape[0] != len(query_ids):
        raise ValueError("indices and values must both be (len(query_ids), k)")
    ids = [str(d) for d in doc_ids]
    return {
        qid: {ids[j]: float(v) for j, v in zip(row_idx, row_vals, strict=True)}
        for qid, row_idx, row_vals in zip(query_ids, indices.tolist(), values.tolist(), strict=True)
    }
