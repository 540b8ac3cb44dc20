"""Paired significance tests: known differences, no differences, determinism, exact enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hybrid_qdrant.significance import BootstrapResult, paired_bootstrap, paired_values, randomization_test


def _systems(seed: int, shift: float, n: int = 200) -> tuple[dict[str, float], dict[str, float]]:
    """Per-query AP-like values of two systems; b = a - shift + noise."""
    rng = np.random.default_rng(seed)
    a = np.clip(rng.normal(0.6, 0.15, n), 0, 1)
    b = np.clip(a - shift + rng.normal(0, 0.05, n), 0, 1)
    return {f"q{i}": float(v) for i, v in enumerate(a)}, {f"q{i}": float(v) for i, v in enumerate(b)}


def test_large_difference_is_significant():
    a, b = _systems(seed=1, shift=0.05)
    boot = paired_bootstrap(a, b)
    assert isinstance(boot, BootstrapResult)
    assert boot.n_queries == 200 and boot.n_resamples == 10000 and boot.confidence == 0.95
    assert boot.mean_difference == pytest.approx(np.mean([a[q] - b[q] for q in a]))
    assert boot.p_value < 0.01
    assert 0 < boot.ci_low < boot.mean_difference < boot.ci_high
    assert randomization_test(a, b) < 0.01
    # the smallest p-value a Monte-Carlo test can report
    assert randomization_test(a, b, n_resamples=999) == pytest.approx(1 / 1000)


def test_identical_systems():
    a, _ = _systems(seed=2, shift=0.0)
    boot = paired_bootstrap(a, dict(a))
    assert boot.mean_difference == 0.0 and boot.ci_low == 0.0 and boot.ci_high == 0.0
    assert boot.p_value == 1.0
    assert randomization_test(a, dict(a)) == 1.0


def test_same_distribution_is_not_significant():
    a, _ = _systems(seed=3, shift=0.0)
    qids = sorted(a)
    # b holds a's values permuted over queries: same distribution, mean difference exactly 0
    permuted = np.random.default_rng(4).permutation(qids)
    b = {q: a[p] for q, p in zip(qids, permuted, strict=True)}
    boot = paired_bootstrap(a, b)
    assert boot.ci_low < 0 < boot.ci_high
    assert boot.p_value > 0.9
    assert randomization_test(a, b) > 0.9
    # independent draws from one distribution (fixed seed): no evidence either
    a, b = _systems(seed=5, shift=0.0)
    b = {q: float(v) for q, v in zip(sorted(b), np.random.default_rng(6).uniform(0.3, 0.9, 200), strict=True)}
    a = {q: float(v) for q, v in zip(sorted(a), np.random.default_rng(7).uniform(0.3, 0.9, 200), strict=True)}
    boot = paired_bootstrap(a, b)
    assert boot.ci_low < 0 < boot.ci_high
    assert boot.p_value > 0.05 and randomization_test(a, b) > 0.05


def test_deterministic_by_seed_and_insertion_order():
    a, b = _systems(seed=8, shift=0.01)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert randomization_test(a, b, seed=3) == randomization_test(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3) != paired_bootstrap(a, b, seed=4)
    reversed_a = dict(reversed(list(a.items())))
    assert paired_bootstrap(reversed_a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert randomization_test(reversed_a, b, seed=3) == randomization_test(a, b, seed=3)


def test_swapping_systems_mirrors_the_result():
    a, b = _systems(seed=9, shift=0.01)
    ab, ba = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert ba.mean_difference == pytest.approx(-ab.mean_difference)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))
    assert ba.p_value == ab.p_value
    assert randomization_test(a, b) == randomization_test(b, a)


def test_randomization_matches_exact_enumeration():
    # 8 queries: the exact p-value enumerates all 2^8 sign assignments of the differences
    diffs = [0.30, -0.10, 0.25, 0.05, 0.40, -0.20, 0.15, 0.10]
    a = {f"q{i}": 0.5 + d for i, d in enumerate(diffs)}
    b = {f"q{i}": 0.5 for i in range(8)}
    observed = abs(sum(diffs))
    hits = sum(
        abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=8)
    )
    exact = hits / 2**8  # here 42 / 256
    n_resamples = 20000
    p = randomization_test(a, b, n_resamples=n_resamples, seed=0)
    tolerance = 4 * math.sqrt(exact * (1 - exact) / n_resamples) + 1 / n_resamples
    assert p == pytest.approx(exact, abs=tolerance)


def test_bootstrap_interval_matches_percentiles_of_resampled_means():
    # a reference computed the slow way, with the same generator stream
    a, b = _systems(seed=10, shift=0.02, n=50)
    diff = np.array([a[q] - b[q] for q in sorted(a)])
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, 50, size=(2000, 50))].mean(axis=1)
    boot = paired_bootstrap(a, b, n_resamples=2000, seed=0, confidence=0.9)
    assert (boot.ci_low, boot.ci_high) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))


def test_pairs_on_shared_queries_only():
    a, b = _systems(seed=11, shift=0.05, n=100)
    extra_a = {**a, "only_a": 1.0, "undefined": math.nan}
    extra_b = {**b, "only_b": 0.0, "undefined": 0.5}
    qids, values_a, values_b = paired_values(extra_a, extra_b)
    assert qids == sorted(a) and values_a.shape == values_b.shape == (100,)
    assert paired_bootstrap(extra_a, extra_b) == paired_bootstrap(a, b)
    assert randomization_test(extra_a, extra_b) == randomization_test(a, b)


def test_bad_arguments():
    a, b = _systems(seed=12, shift=0.0, n=20)
    with pytest.raises(ValueError, match="no shared"):
        paired_bootstrap(a, {"other": 1.0})
    half = dict(list(b.items())[:10])
    with pytest.raises(ValueError, match="share only"):
        randomization_test(a, half)
    assert randomization_test(a, half, min_overlap=0.5) > 0  # allowed when asked for
    with pytest.raises(ValueError):
        paired_bootstrap({"q": 1.0}, {"q": 0.0})  # one query
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, n_resamples=0)
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, confidence=1.0)
    with pytest.raises(ValueError):
        randomization_test(a, b, seed=1.5)
    with pytest.raises(ValueError):
        paired_values(a, b, min_overlap=2.0)


def test_inputs_are_not_mutated():
    a, b = _systems(seed=13, shift=0.02, n=30)
    before = (dict(a), dict(b))
    paired_bootstrap(a, b)
    randomization_test(a, b)
    assert (a, b) == before
