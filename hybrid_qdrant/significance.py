"""Paired significance tests for two systems evaluated on the same queries.

Both tests take per-query values of one metric (``{qid: value}``, as ``metrics.evaluate_run`` gives
per metric) and compare them on the queries the two systems share:

- ``paired_bootstrap``: resample queries with replacement (Koehn 2004; Sakai 2006); a percentile
  confidence interval for the mean difference and a two-sided p-value from the bootstrap distribution
  shifted to the null hypothesis (mean difference 0).
- ``randomization_test``: the paired sign-flip permutation test (Fisher; Smucker et al. 2007): under
  the null hypothesis each query's difference is as likely positive as negative.

Monte-Carlo p-values are ``(1 + hits) / (1 + n_resamples)`` (Phipson & Smyth 2010), never 0.
Query ids are paired in sorted order, so results depend only on the values and the seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["BootstrapResult", "paired_bootstrap", "paired_values", "randomization_test"]

logger = logging.getLogger(__name__)

# Elements of one (resamples, queries) block; bounds memory for large query sets.
_BLOCK_ELEMENTS = 2_000_000
# Relative tolerance when comparing resampled statistics with the observed one (float summation order).
_RTOL = 1e-10


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of a paired bootstrap test of ``a - b``.

    Attributes:
        mean_difference: mean over paired queries of a - b.
        ci_low / ci_high: percentile confidence interval of the mean difference.
        p_value: two-sided p-value for "mean difference = 0".
        n_queries: number of paired queries used.
        n_resamples: bootstrap resamples drawn.
        confidence: level of the interval (e.g. 0.95).
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_queries: int
    n_resamples: int
    confidence: float


def paired_values(
    a: Mapping[str, float], b: Mapping[str, float], *, min_overlap: float = 0.9
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pair two per-query value maps on their shared query ids.

    NaN values (an undefined metric, e.g. rank distance) are dropped first. Queries only in one map are
    left out (logged); too few shared queries is an error, since the systems were then evaluated on
    different query sets.

    Args:
        a, b: ``{qid: value}`` for the two systems.
        min_overlap: the shared queries must be at least this fraction of the larger map.

    Returns:
        (query ids sorted, values of a, values of b), the arrays float64 of shape (n,).
    """
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must lie in [0, 1], got {min_overlap}")
    a_def = {q: float(v) for q, v in a.items() if not math.isnan(float(v))}
    b_def = {q: float(v) for q, v in b.items() if not math.isnan(float(v))}
    qids = sorted(a_def.keys() & b_def.keys())
    larger = max(len(a_def), len(b_def))
    if not qids:
        raise ValueError(f"no shared queries with defined values ({len(a_def)} vs {len(b_def)} queries)")
    if len(qids) < min_overlap * larger:
        raise ValueError(
            f"the systems share only {len(qids)} of {larger} queries (< {min_overlap:.0%}): "
            "were they evaluated on the same queries?"
        )
    if len(qids) < larger:
        logger.warning("comparing on %d shared queries; %d left out", len(qids), larger - len(qids))
    values_a = np.array([a_def[q] for q in qids], dtype=np.float64)
    values_b = np.array([b_def[q] for q in qids], dtype=np.float64)
    return qids, values_a, values_b


def _check_common(n_resamples: int, seed: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def _differences(a: Mapping[str, float], b: Mapping[str, float], min_overlap: float) -> np.ndarray:
    _, values_a, values_b = paired_values(a, b, min_overlap=min_overlap)
    if values_a.size < 2:
        raise ValueError("a paired test needs at least 2 shared queries")
    return values_a - values_b  # (n,)


def paired_bootstrap(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    *,
    min_overlap: float = 0.9,
) -> BootstrapResult:
    """Paired bootstrap test of the mean per-query difference a - b.

    Each resample draws n queries with replacement and takes the mean difference. The interval is the
    percentile interval of those means; the p-value counts resamples whose deviation from the observed
    mean is at least the observed mean's distance from 0 (the distribution shifted to the null).

    Args:
        a, b: ``{qid: value}`` of one metric for the two systems.
        n_resamples: bootstrap resamples.
        seed: seed of numpy's default generator.
        confidence: interval level in (0, 1).
        min_overlap: see ``paired_values``.

    Returns:
        BootstrapResult.
    """
    _check_common(n_resamples, seed)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    diff = _differences(a, b, min_overlap)
    n = diff.size
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        picks = rng.integers(0, n, size=(stop - start, n))  # (b, n) query indices
        means[start:stop] = diff[picks].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    tolerance = _RTOL * float(np.abs(diff).mean())
    hits = int(np.count_nonzero(np.abs(means - observed) >= abs(observed) - tolerance))
    return BootstrapResult(
        mean_difference=observed,
        ci_low=float(low),
        ci_high=float(high),
        p_value=(1 + hits) / (1 + n_resamples),
        n_queries=n,
        n_resamples=int(n_resamples),
        confidence=float(confidence),
    )


def randomization_test(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_resamples: int = 10000,
    seed: int = 0,
    *,
    min_overlap: float = 0.9,
) -> float:
    """Two-sided paired randomization (sign-flip permutation) test of the mean difference a - b.

    Each resample flips the sign of every query's difference with probability 1/2; the p-value is the
    share of resamples whose |mean| is at least the observed |mean|.

    Args:
        a, b: ``{qid: value}`` of one metric for the two systems.
        n_resamples: random sign assignments.
        seed: seed of numpy's default generator.
        min_overlap: see ``paired_values``.

    Returns:
        The p-value, ``(1 + hits) / (1 + n_resamples)``.
    """
    _check_common(n_resamples, seed)
    diff = _differences(a, b, min_overlap)
    n = diff.size
    total = float(diff.sum())
    tolerance = _RTOL * float(np.abs(diff).sum())
    rng = np.random.default_rng(seed)
    hits = 0
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        flips = rng.integers(0, 2, size=(stop - start, n), dtype=np.uint8)  # (b, n): 1 = flip
        flipped = flips.astype(np.float64) @ diff  # (b,) sum of the flipped differences
        sums = total - 2.0 * flipped  # (b,) sum of sign-flipped differences
        hits += int(np.count_nonzero(np.abs(sums) >= abs(total) - tolerance))
    return (1 + hits) / (1 + n_resamples)
