"""Significance tests and intervals for retrieval results whose queries come in parallel groups.

The unit of resampling is the *cluster*: the queries that are versions of one question (XQuAD-R: 1,190
questions asked in 11 languages; a query's ``group_id``), or the query alone when it has no group.
Values of one cluster are strongly correlated, so resampling single queries as if independent makes
intervals too narrow (1.2-2.2x on XQuAD-R). Training seeds are the second source of noise: a system
may be given as several runs (one per seed), and the interval then covers both.

- ``hierarchical_bootstrap``: a two-level bootstrap (Davison & Hinkley 1997, section 3.8; Field &
  Welsh 2007; as used for multi-level data by Saravanan et al. 2020): each resample draws clusters with
  replacement and, independently, each system's runs with replacement; the statistic is the weighted
  mean over the drawn clusters' queries of (mean over A's drawn runs - mean over B's drawn runs). The
  interval is the percentile interval; the two-sided p-value counts resamples at least as far from the
  observed value as the observed value is from 0 (the distribution shifted to the null).
- ``cluster_randomization_test``: the paired sign-flip permutation test (Fisher; Smucker et al. 2007)
  with one sign per cluster (a cluster's queries swap systems together).
- ``paired_bootstrap`` / ``randomization_test``: the same on two ``{qid: value}`` maps, with clusters
  from ``groups`` (``{qid: group}``; None: every query its own cluster, the classic query-level tests).

Weights: a query may carry a weight (``hq compare`` weights queries so that the statistic is the
report's macro average over slices, e.g. equal weight per language); the statistic is then the ratio
``sum(w * x) / sum(w)`` over the drawn queries. With unit weights and singleton clusters every function
here reduces exactly (same random draws) to the query-level test. Monte-Carlo p-values are
``(1 + hits) / (1 + n_resamples)`` (Phipson & Smyth 2010), never 0. Queries are paired in sorted id
order, clusters numbered in first-seen order, so results depend only on the values and the seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapResult",
    "align_runs",
    "bootstrap_mean",
    "cluster_codes",
    "cluster_randomization_test",
    "hierarchical_bootstrap",
    "paired_bootstrap",
    "paired_values",
    "randomization_test",
]

logger = logging.getLogger(__name__)

# Elements of one (resamples, clusters) block; bounds memory for large query sets.
_BLOCK_ELEMENTS = 2_000_000
# Relative tolerance when comparing resampled statistics with the observed one (float summation order).
_RTOL = 1e-10


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of a bootstrap of a mean (``b`` absent) or of a paired difference ``a - b``.

    Attributes:
        mean_difference: the observed statistic (the weighted mean of a - b, or of a).
        ci_low / ci_high: percentile confidence interval.
        p_value: two-sided p-value for "the statistic is 0".
        n_queries: queries used (shared by every run).
        n_resamples: bootstrap resamples drawn.
        confidence: level of the interval (e.g. 0.95).
        n_clusters: clusters the queries form (the resampling unit).
        n_runs_a / n_runs_b: runs (seeds) per side; 0 for an absent side.
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_queries: int
    n_resamples: int
    confidence: float
    n_clusters: int = 0
    n_runs_a: int = 1
    n_runs_b: int = 1


def _defined(values: Mapping[str, float]) -> dict[str, float]:
    return {q: float(v) for q, v in values.items() if not math.isnan(float(v))}


def align_runs(
    runs_a: Sequence[Mapping[str, float]],
    runs_b: Sequence[Mapping[str, float]] = (),
    *,
    min_overlap: float = 0.9,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Align per-query values of several runs per side on the queries every run defines.

    NaN values (an undefined metric, e.g. rank distance) are dropped first. Queries missing from some run
    are left out (logged); too few shared queries is an error, since the runs were then evaluated on
    different query sets.

    Args:
        runs_a, runs_b: ``{qid: value}`` per run; ``runs_b`` may be empty (a mean, not a difference).
        min_overlap: the shared queries must be at least this fraction of the largest run.

    Returns:
        (query ids sorted, A of shape (runs_a, n), B of shape (runs_b, n)), float64.
    """
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must lie in [0, 1], got {min_overlap}")
    if not runs_a:
        raise ValueError("no runs to compare")
    defined = [_defined(run) for run in (*runs_a, *runs_b)]
    qids = sorted(set(defined[0]).intersection(*defined[1:]))
    largest = max(len(d) for d in defined)
    if not qids:
        sizes = " vs ".join(str(len(d)) for d in defined)
        raise ValueError(f"no shared queries with defined values ({sizes} queries)")
    if len(qids) < min_overlap * largest:
        raise ValueError(
            f"the runs share only {len(qids)} of {largest} queries (< {min_overlap:.0%}): "
            "were they evaluated on the same queries?"
        )
    if len(qids) < largest:
        logger.warning("comparing on %d shared queries; %d left out", len(qids), largest - len(qids))
    matrix = np.array([[d[q] for q in qids] for d in defined], dtype=np.float64).reshape(len(defined), -1)
    return qids, matrix[: len(runs_a)], matrix[len(runs_a) :]


def paired_values(
    a: Mapping[str, float], b: Mapping[str, float], *, min_overlap: float = 0.9
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pair two per-query value maps on their shared query ids (see ``align_runs``).

    Returns:
        (query ids sorted, values of a, values of b), the arrays float64 of shape (n,).
    """
    qids, values_a, values_b = align_runs([a], [b], min_overlap=min_overlap)
    return qids, values_a[0], values_b[0]


def cluster_codes(qids: Sequence[str], groups: Mapping[str, str | None] | None = None) -> np.ndarray:
    """Cluster number of each query (n,): its group in ``groups``, or its own cluster when it has none."""
    codes: dict[tuple[bool, str], int] = {}
    out = np.empty(len(qids), dtype=np.int64)
    for i, qid in enumerate(qids):
        group = groups.get(qid) if groups is not None else None
        key = (True, str(group)) if group is not None else (False, qid)
        out[i] = codes.setdefault(key, len(codes))
    return out


def _check_common(n_resamples: int, seed: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return w


def _cluster_sums(values: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """(runs, n) -> (runs, clusters): per-cluster sums of each run's (weighted) values."""
    out = np.zeros((values.shape[0], n_clusters), dtype=np.float64)
    for r in range(values.shape[0]):
        out[r] = np.bincount(clusters, weights=values[r], minlength=n_clusters)
    return out


def _run_means(rng: np.random.Generator, sums: np.ndarray, size: int) -> np.ndarray:
    """(size, clusters): the cluster sums averaged over ``sums.shape[0]`` runs drawn with replacement."""
    runs = sums.shape[0]
    if runs == 1:
        return np.broadcast_to(sums[0], (size, sums.shape[1]))
    picks = rng.integers(0, runs, size=(size, runs))  # (size, runs) run indices
    counts = np.stack([np.bincount(row, minlength=runs) for row in picks]) / runs  # (size, runs)
    return counts @ sums  # (size, clusters)


def hierarchical_bootstrap(
    a: np.ndarray,
    b: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Bootstrap over clusters and runs of the weighted mean of ``a`` (or of ``a - b``).

    Args:
        a: (runs_a, n) or (n,) values, queries aligned across runs (see ``align_runs``).
        b: (runs_b, n) or (n,) values of the other system, or None for the mean of ``a``.
        clusters: (n,) cluster number of each query (``cluster_codes``); None: one cluster per query.
        weights: (n,) non-negative query weights; None: equal.
        n_resamples, seed: resamples and the seed of numpy's default generator.
        confidence: interval level in (0, 1).
    """
    _check_common(n_resamples, seed)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = None if b is None else np.atleast_2d(np.asarray(b, dtype=np.float64))
    n = a.shape[1]
    if b is not None and b.shape[1] != n:
        raise ValueError(f"a has {n} queries, b {b.shape[1]}")
    if n < 2:
        raise ValueError("a bootstrap needs at least 2 queries")
    clusters = np.arange(n) if clusters is None else np.asarray(clusters, dtype=np.int64)
    if clusters.shape != (n,):
        raise ValueError(f"clusters must have shape ({n},), got {clusters.shape}")
    _, clusters = np.unique(clusters, return_inverse=True)  # 0..C-1, in sorted order of the codes
    n_clusters = int(clusters.max()) + 1
    w = _weights(weights, n)
    sums_a = _cluster_sums(a * w, clusters, n_clusters)  # (runs_a, C)
    sums_b = None if b is None else _cluster_sums(b * w, clusters, n_clusters)
    mass = np.bincount(clusters, weights=w, minlength=n_clusters)  # (C,)
    observed = float(sums_a.mean(0).sum() - (0.0 if sums_b is None else sums_b.mean(0).sum())) / mass.sum()

    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // n_clusters)
    for start in range(0, n_resamples, block):
        size = min(start + block, n_resamples) - start
        picks = rng.integers(0, n_clusters, size=(size, n_clusters))  # (size, C) cluster indices
        diff = _run_means(rng, sums_a, size)
        if sums_b is not None:
            diff = diff - _run_means(rng, sums_b, size)
        totals = np.take_along_axis(np.ascontiguousarray(diff), picks, axis=1).sum(axis=1)  # (size,)
        stats[start : start + size] = totals / mass[picks].sum(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    spread = np.abs(a).mean() + (0.0 if b is None else np.abs(b).mean())
    tolerance = _RTOL * float(spread)
    hits = int(np.count_nonzero(np.abs(stats - observed) >= abs(observed) - tolerance))
    return BootstrapResult(
        mean_difference=observed,
        ci_low=float(low),
        ci_high=float(high),
        p_value=(1 + hits) / (1 + n_resamples),
        n_queries=n,
        n_resamples=int(n_resamples),
        confidence=float(confidence),
        n_clusters=n_clusters,
        n_runs_a=a.shape[0],
        n_runs_b=0 if b is None else b.shape[0],
    )


def cluster_randomization_test(
    diff: np.ndarray,
    clusters: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    n_resamples: int = 10000,
    seed: int = 0,
) -> float:
    """Two-sided sign-flip permutation test of the weighted mean of ``diff`` (n,), one sign per cluster.

    Returns:
        The p-value, ``(1 + hits) / (1 + n_resamples)``.
    """
    _check_common(n_resamples, seed)
    diff = np.asarray(diff, dtype=np.float64)
    n = diff.size
    if n < 2:
        raise ValueError("a paired test needs at least 2 shared queries")
    clusters = np.arange(n) if clusters is None else np.asarray(clusters, dtype=np.int64)
    _, clusters = np.unique(clusters, return_inverse=True)
    n_clusters = int(clusters.max()) + 1
    sums = np.bincount(clusters, weights=diff * _weights(weights, n), minlength=n_clusters)  # (C,)
    total = float(sums.sum())
    tolerance = _RTOL * float(np.abs(sums).sum())
    rng = np.random.default_rng(seed)
    hits = 0
    block = max(1, _BLOCK_ELEMENTS // n_clusters)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        flips = rng.integers(0, 2, size=(stop - start, n_clusters), dtype=np.uint8)  # (b, C): 1 = flip
        flipped = flips.astype(np.float64) @ sums  # (b,) sum of the flipped clusters
        hits += int(np.count_nonzero(np.abs(total - 2.0 * flipped) >= abs(total) - tolerance))
    return (1 + hits) / (1 + n_resamples)


def _weights_of(qids: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray | None:
    return None if weights is None else np.array([weights[q] for q in qids], dtype=np.float64)


def paired_bootstrap(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    *,
    min_overlap: float = 0.9,
    groups: Mapping[str, str | None] | None = None,
    weights: Mapping[str, float] | None = None,
) -> BootstrapResult:
    """Paired cluster bootstrap of the mean per-query difference a - b (``hierarchical_bootstrap``).

    Args:
        a, b: ``{qid: value}`` of one metric for the two systems.
        groups: ``{qid: group}``, the parallel group of each query; None: each query is its own cluster.
        weights: ``{qid: weight}``; None: equal weights.
        min_overlap: see ``align_runs``.
    """
    qids, values_a, values_b = paired_values(a, b, min_overlap=min_overlap)
    return hierarchical_bootstrap(
        values_a,
        values_b,
        cluster_codes(qids, groups),
        _weights_of(qids, weights),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )


def randomization_test(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_resamples: int = 10000,
    seed: int = 0,
    *,
    min_overlap: float = 0.9,
    groups: Mapping[str, str | None] | None = None,
    weights: Mapping[str, float] | None = None,
) -> float:
    """Two-sided paired randomization test of a - b with one sign per cluster of ``groups``."""
    qids, values_a, values_b = paired_values(a, b, min_overlap=min_overlap)
    return cluster_randomization_test(
        values_a - values_b,
        cluster_codes(qids, groups),
        _weights_of(qids, weights),
        n_resamples=n_resamples,
        seed=seed,
    )


def bootstrap_mean(
    runs: Sequence[Mapping[str, float]],
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    *,
    groups: Mapping[str, str | None] | None = None,
    weights: Mapping[str, float] | None = None,
    min_overlap: float = 0.9,
) -> BootstrapResult:
    """Interval of a system's mean over its runs (seeds) and query clusters (``hierarchical_bootstrap``)."""
    qids, values, _ = align_runs(runs, min_overlap=min_overlap)
    return hierarchical_bootstrap(
        values,
        None,
        cluster_codes(qids, groups),
        _weights_of(qids, weights),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
