"""Paired significance tests: known differences, no differences, determinism, exact enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hybrid_qdrant.evaluation.significance import (
    BootstrapResult,
    align_runs,
    bootstrap_mean,
    cluster_codes,
    hierarchical_bootstrap,
    paired_bootstrap,
    paired_values,
    randomization_test,
)


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


# -- clusters of parallel queries and runs (seeds) --------------------------------------------------------


def _clustered(seed: int, clusters: int, size: int, shift: float, rho: float):
    """Two systems on ``clusters`` questions asked ``size`` times; a share ``rho`` of the variance of a
    query's difference is shared by its cluster."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, math.sqrt(rho), clusters)  # (clusters,)
    own = rng.normal(0, math.sqrt(1 - rho), (clusters, size))  # (clusters, size)
    diff = 0.1 * (shared[:, None] + own) + shift
    a = {f"{c}/{k}": 0.5 + float(diff[c, k]) for c in range(clusters) for k in range(size)}
    b = {q: 0.5 for q in a}
    groups = {q: q.split("/")[0] for q in a}
    return a, b, groups


def test_clusters_of_identical_copies_give_the_interval_of_one_query_per_cluster():
    a, b = _systems(seed=20, shift=0.02, n=120)
    single = paired_bootstrap(a, b, n_resamples=3000, seed=5)
    copies_a = {f"{q}/{k}": v for q, v in a.items() for k in range(11)}
    copies_b = {f"{q}/{k}": v for q, v in b.items() for k in range(11)}
    groups = {q: q.split("/")[0] for q in copies_a}
    clustered = paired_bootstrap(copies_a, copies_b, n_resamples=3000, seed=5, groups=groups)
    assert (clustered.n_queries, clustered.n_clusters, single.n_clusters) == (1320, 120, 120)
    assert clustered.mean_difference == pytest.approx(single.mean_difference, abs=1e-12)
    assert (clustered.ci_low, clustered.ci_high) == pytest.approx((single.ci_low, single.ci_high), abs=1e-12)
    assert clustered.p_value == single.p_value
    assert randomization_test(copies_a, copies_b, seed=5, groups=groups) == randomization_test(a, b, seed=5)
    # the query-level test on the copies is the overconfident one the clusters fix
    naive = paired_bootstrap(copies_a, copies_b, n_resamples=3000, seed=5)
    assert naive.ci_high - naive.ci_low < 0.4 * (single.ci_high - single.ci_low)


def test_independent_queries_give_the_query_level_test():
    a, b = _systems(seed=21, shift=0.01, n=80)
    singletons = {q: q for q in a}
    assert paired_bootstrap(a, b, groups=singletons) == paired_bootstrap(a, b)
    assert paired_bootstrap(a, b, groups={}) == paired_bootstrap(a, b)  # no group: own cluster
    assert randomization_test(a, b, groups=singletons) == randomization_test(a, b)


def test_correlated_clusters_widen_the_interval_by_the_design_effect():
    # 300 clusters of 11 with intra-cluster correlation 0.5: design effect 1 + 10 * 0.5 = 6
    a, b, groups = _clustered(seed=22, clusters=300, size=11, shift=0.0, rho=0.5)
    naive = paired_bootstrap(a, b, n_resamples=4000)
    clustered = paired_bootstrap(a, b, n_resamples=4000, groups=groups)
    ratio = (clustered.ci_high - clustered.ci_low) / (naive.ci_high - naive.ci_low)
    assert ratio == pytest.approx(math.sqrt(6), rel=0.2)


def test_cluster_randomization_matches_exact_enumeration():
    # 6 clusters of 3 queries: the exact p-value enumerates the 2^6 sign assignments of whole clusters
    sums = [0.9, -0.3, 0.6, 0.2, -0.45, 0.3]
    a, b, groups = {}, {}, {}
    for c, total in enumerate(sums):
        for k, share in enumerate((0.5, 0.3, 0.2)):
            q = f"c{c}/{k}"
            a[q], b[q], groups[q] = 0.5 + share * total, 0.5, f"c{c}"
    observed = abs(sum(sums))
    hits = sum(
        abs(sum(s * d for s, d in zip(signs, sums, strict=True))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=6)
    )
    exact = hits / 2**6
    n_resamples = 20000
    p = randomization_test(a, b, n_resamples=n_resamples, groups=groups)
    assert p == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / n_resamples) + 1 / n_resamples)


def test_weights_give_the_weighted_mean_and_unit_weights_change_nothing():
    a, b = _systems(seed=23, shift=0.03, n=60)
    unit = paired_bootstrap(a, b, weights={q: 2.0 for q in a})
    assert unit == paired_bootstrap(a, b)
    weights = {q: (3.0 if int(q[1:]) < 20 else 1.0) for q in a}
    weighted = paired_bootstrap(a, b, weights=weights)
    expected = sum(weights[q] * (a[q] - b[q]) for q in a) / sum(weights.values())
    assert weighted.mean_difference == pytest.approx(expected)


def test_runs_add_the_seed_spread_to_the_interval():
    rng = np.random.default_rng(24)
    n = 400
    truth = rng.uniform(0.3, 0.7, n)  # (n,)
    qids = [f"q{i}" for i in range(n)]
    runs_a = [
        dict(zip(qids, truth + 0.02 + off + rng.normal(0, 0.01, n), strict=True)) for off in (-0.03, 0, 0.03)
    ]
    runs_b = [dict(zip(qids, truth + off + rng.normal(0, 0.01, n), strict=True)) for off in (-0.03, 0, 0.03)]
    _, va, vb = align_runs(runs_a, runs_b)
    both = hierarchical_bootstrap(va, vb, n_resamples=4000)
    assert (both.n_runs_a, both.n_runs_b, both.n_clusters) == (3, 3, n)
    assert both.mean_difference == pytest.approx(float((va.mean(0) - vb.mean(0)).mean()))
    fixed = hierarchical_bootstrap(va.mean(0), vb.mean(0), n_resamples=4000)  # seeds averaged first
    assert both.ci_high - both.ci_low > 5 * (fixed.ci_high - fixed.ci_low)
    assert both.ci_low < 0.02 < both.ci_high
    # identical runs carry no seed noise: the same interval as one run, up to the resampling noise
    same = hierarchical_bootstrap(np.stack([va[1]] * 3), np.stack([vb[1]] * 3), n_resamples=4000)
    one = hierarchical_bootstrap(va[1], vb[1], n_resamples=4000)
    assert same.mean_difference == pytest.approx(one.mean_difference)
    assert same.ci_high - same.ci_low == pytest.approx(one.ci_high - one.ci_low, rel=0.1)


def test_bootstrap_mean_of_runs_and_cluster_codes():
    assert cluster_codes(["a", "b", "c", "d"], {"a": "x", "c": "x", "d": None}).tolist() == [0, 1, 0, 2]
    runs = [{f"q{i}": 0.5 + 0.01 * k for i in range(50)} for k in range(3)]
    result = bootstrap_mean(runs, n_resamples=500)
    assert result.mean_difference == pytest.approx(0.51)
    assert (result.n_runs_a, result.n_runs_b) == (3, 0)
    assert 0.5 <= result.ci_low <= 0.51 <= result.ci_high <= 0.52
