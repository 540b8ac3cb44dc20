"""Retrieval metrics as pure functions of the ranks of a query's relevant items.

Every metric used here (mAP, recall@k, nDCG@k, MRR@k, rank distance) depends only on the 1-based
ranks of a query's relevant items and their grades, so the core works on ranks:

- ``ranks_from_run`` turns a BEIR run into ``{qid: {doc_id: rank}}`` for relevant items only
  (``hybrid_qdrant.ranking`` does the same from dense scores or vectors: the numpy reference);
- ``evaluate_ranks`` / ``evaluate_run`` compute per-query metrics from those ranks;
- ``display_scale`` is how every table shows a metric (x 100, rank distance in ranks).

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
    "check_k",
    "display_scale",
    "evaluate_ranks",
    "evaluate_run",
    "macro_average",
    "mean",
    "ndcg",
    "parse_metric",
    "queries_without_relevant",
    "rank_distance",
    "ranks_from_run",
    "recall",
    "reciprocal_rank",
]

logger = logging.getLogger(__name__)

Ranks = dict[str, dict[str, int]]
"""``{query_id: {doc_id: rank}}``: 1-based ranks of relevant items; an unretrieved item is absent."""


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


def check_k(k: int | None, *, required: bool = False) -> None:
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
    check_k(k)
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
    check_k(k, required=True)
    if rr.n_relevant == 0:
        return 0.0
    return sum(1 for r in rr.sorted_ranks if r <= k) / rr.n_relevant


def ndcg(rr: RelevantRanks, k: int | None = None) -> float:
    """nDCG with linear gains (the grade) and log2(rank + 1) discount, as trec_eval's ``ndcg_cut``.

    The ideal DCG ranks all of the query's relevant items by grade; k = None uses the full ranking.
    """
    check_k(k)
    dcg = 0.0
    for doc_id, rank in rr.ranks.items():
        if k is None or rank <= k:
            dcg += rr.grades[doc_id] / math.log2(rank + 1)
    ideal = rr.ideal_gains if k is None else rr.ideal_gains[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def reciprocal_rank(rr: RelevantRanks, k: int | None = None) -> float:
    """1 / rank of the first relevant item if it is within k (any rank when k is None), else 0."""
    check_k(k)
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


def display_scale(metric: str) -> float:
    """How tables show a metric: x 100, except rank distance (in ranks, lower is better)."""
    return 1.0 if metric.split("/")[-1] == "rank_distance" else 100.0
