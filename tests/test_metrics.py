"""Metrics: hand-computed values, parity with ranx / ir-measures / scikit-learn, and the numpy reference."""

from __future__ import annotations

import copy
import math
import random
import warnings

import numpy as np
import pytest

from hybrid_qdrant import ranking as R
from hybrid_qdrant.evaluation import metrics as M
from hybrid_qdrant.evaluation.metrics import RelevantRanks

ALL_METRICS = ["map", "recall@1", "recall@10", "recall@100", "ndcg@10", "mrr@10", "rank_distance"]


def _ranking(scores: dict[str, float]) -> list[str]:
    """The reference order: score descending, then doc id ascending (a full sort)."""
    return sorted(scores, key=lambda d: (-scores[d], d))


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------


def test_average_precision_three_relevant_at_1_3_6():
    qrels = {"q": {"a": 1, "b": 1, "c": 1, "x": 0}}
    run = {"q": {"a": 0.9, "x": 0.8, "b": 0.7, "y": 0.6, "z": 0.5, "c": 0.4}}
    assert M.ranks_from_run(qrels, run) == {"q": {"a": 1, "b": 3, "c": 6}}
    values = M.evaluate_run(qrels, run, ALL_METRICS + ["map@3", "ndcg", "mrr"])["q"]
    # precision at each relevant rank: 1/1, 2/3, 3/6; mean over the 3 relevant items
    assert values["map"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    # map_cut@3: only ranks 1 and 3 count, still divided by all 3 relevant
    assert values["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert values["recall@1"] == pytest.approx(1 / 3)
    assert values["recall@10"] == 1.0
    assert values["mrr@10"] == 1.0
    assert values["mrr"] == 1.0
    # DCG@10 = 1/log2(2) + 1/log2(4) + 1/log2(7); ideal = 1/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 1 + 1 / 2 + 1 / math.log2(7)
    idcg = 1 + 1 / math.log2(3) + 1 / 2
    assert values["ndcg@10"] == pytest.approx(dcg / idcg)
    assert values["ndcg"] == pytest.approx(dcg / idcg)
    # rank distance: 6 - 1
    assert values["rank_distance"] == 5.0


def test_relevant_item_missing_from_run_counts_zero():
    qrels = {"q": {"a": 1, "b": 1, "c": 1}}
    run = {"q": {"x": 0.9, "a": 0.8, "y": 0.7, "b": 0.6}}  # c never retrieved
    values = M.evaluate_run(qrels, run, ALL_METRICS)["q"]
    # AP = (1/2 + 2/4 + 0) / 3: the unretrieved item adds 0 but stays in the denominator
    assert values["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert values["recall@1"] == 0.0
    assert values["recall@10"] == pytest.approx(2 / 3)
    assert values["mrr@10"] == pytest.approx(1 / 2)
    assert math.isnan(values["rank_distance"])  # undefined: c has no rank


def test_ties_broken_by_doc_id_ascending():
    qrels = {"q": {"b": 1}}
    # c (0.9) first, then the tie a/b (0.5): a before b, so b is rank 3 in any insertion order
    for run in ({"q": {"b": 0.5, "a": 0.5, "c": 0.9}}, {"q": {"c": 0.9, "a": 0.5, "b": 0.5}}):
        assert M.ranks_from_run(qrels, run) == {"q": {"b": 3}}
        assert M.evaluate_run(qrels, run, ["mrr@10"])["q"]["mrr@10"] == pytest.approx(1 / 3)


def test_ndcg_graded_hand_computed():
    rr = RelevantRanks(grades={"a": 3, "b": 1}, ranks={"a": 2, "b": 1})
    # DCG = 1/log2(2) + 3/log2(3); ideal puts the grade-3 item first: 3/log2(2) + 1/log2(3)
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert M.ndcg(rr, 10) == pytest.approx(expected)
    # at k=1 only b (grade 1) counts; the ideal at 1 is 3
    assert M.ndcg(rr, 1) == pytest.approx(1 / 3)


def test_cutoffs_and_rank_distance():
    rr = RelevantRanks(grades={"a": 1, "b": 1, "c": 1}, ranks={"a": 11, "b": 12, "c": 40})
    assert M.reciprocal_rank(rr, 10) == 0.0
    assert M.reciprocal_rank(rr) == pytest.approx(1 / 11)
    assert M.recall(rr, 10) == 0.0
    assert M.recall(rr, 12) == pytest.approx(2 / 3)
    assert M.ndcg(rr, 10) == 0.0
    assert M.rank_distance(rr) == 29.0  # 40 - 11
    # one relevant item: rank distance undefined
    assert math.isnan(M.rank_distance(RelevantRanks({"a": 1}, {"a": 3})))


def test_query_coverage_rules():
    qrels = {
        "judged": {"a": 1},
        "no_relevant": {"a": 0, "b": 0},  # excluded and counted
        "not_in_run": {"a": 1, "b": 1},  # retrieved nothing: 0
    }
    run = {"judged": {"a": 1.0}, "only_in_run": {"a": 1.0}}
    out = M.evaluate_run(qrels, run, ALL_METRICS)
    assert list(out) == ["judged", "not_in_run"]
    assert M.queries_without_relevant(qrels) == ["no_relevant"]
    assert out["judged"]["map"] == 1.0
    missing = out["not_in_run"]
    assert {m: missing[m] for m in ALL_METRICS if m != "rank_distance"} == dict.fromkeys(
        [m for m in ALL_METRICS if m != "rank_distance"], 0.0
    )
    assert math.isnan(missing["rank_distance"])


def test_evaluate_ranks_ignores_non_relevant_ranks():
    qrels = {"q": {"a": 1, "b": 0}}
    out = M.evaluate_ranks(qrels, {"q": {"a": 2, "b": 1}}, ["mrr@10"])
    assert out["q"]["mrr@10"] == 0.5


def test_mean_and_macro_average():
    per_query = {"q1": {"map": 1.0, "rank_distance": 2.0}, "q2": {"map": 0.5, "rank_distance": math.nan}}
    assert M.mean(per_query, "map") == 0.75
    assert M.mean(per_query, "rank_distance") == 2.0  # NaN (undefined) skipped
    assert math.isnan(M.mean({"q": {"rank_distance": math.nan}}, "rank_distance"))
    # macro average: mean of slice means, whatever the slice sizes
    assert M.macro_average({"de-de": 0.2, "en-en": 0.4, "ar-ar": 0.9}) == pytest.approx(0.5)
    assert M.macro_average({"de-all": 4.0, "en-all": math.nan}) == 4.0
    with pytest.raises(ValueError):
        M.mean({}, "map")
    with pytest.raises(ValueError):
        M.mean(per_query, "ndcg@10")
    with pytest.raises(ValueError):
        M.macro_average({})


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("map", ("map", None)),
        ("map@5", ("map", 5)),
        ("recall@100", ("recall", 100)),
        ("ndcg", ("ndcg", None)),
        ("ndcg@10", ("ndcg", 10)),
        ("mrr@10", ("mrr", 10)),
        ("rank_distance", ("rank_distance", None)),
    ],
)
def test_parse_metric(name, parsed):
    assert M.parse_metric(name) == parsed


@pytest.mark.parametrize(
    "name", ["recall", "rank_distance@5", "ndcg@0", "ndcg@010", "MAP", "P@10", "ndcg@", ""]
)
def test_parse_metric_rejects(name):
    with pytest.raises(ValueError):
        M.parse_metric(name)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError):
        M.evaluate_run({"q": {"a": 1}}, {"q": {"a": 1.0}}, "map")  # a string, not a list
    with pytest.raises(ValueError):
        M.evaluate_run({"q": {"a": 1}}, {"q": {"a": math.nan}}, ["map"])
    with pytest.raises(ValueError):
        RelevantRanks({"a": 1, "b": 1}, {"a": 1, "b": 1})  # shared rank
    with pytest.raises(ValueError):
        RelevantRanks({"a": 1}, {"a": 0})
    with pytest.raises(ValueError):
        RelevantRanks({"a": 1}, {"z": 1})
    with pytest.raises(ValueError):
        M.recall(RelevantRanks({"a": 1}, {}), 0)


# ---------------------------------------------------------------------------------------------
# Parity with independent implementations on random runs (no score ties: tools break ties differently)
# ---------------------------------------------------------------------------------------------


def _random_run(seed: int, graded: bool, n_queries: int = 200) -> tuple[dict, dict]:
    """Random qrels and tie-free runs; some relevant items unretrieved, runs up to 150 deep."""
    rng = random.Random(seed)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i in range(n_queries):
        qid = f"q{i}"
        pool = [f"d{j}" for j in rng.sample(range(5000), 300)]
        n_rel = rng.randint(1, 12)
        relevant, judged_zero, rest = pool[:n_rel], pool[n_rel : n_rel + 5], pool[n_rel + 5 :]
        qrels[qid] = {d: (rng.randint(1, 3) if graded else 1) for d in relevant}
        qrels[qid].update(dict.fromkeys(judged_zero, 0))
        depth = rng.randint(5, 150)
        retrieved = [d for d in relevant + judged_zero if rng.random() < 0.7] + rest
        retrieved = rng.sample(retrieved[:depth], min(depth, len(retrieved)))
        scores = rng.sample(range(10**6), len(retrieved))  # distinct
        run[qid] = {d: s / 10**6 for d, s in zip(retrieved, scores, strict=True)}
    return qrels, run


@pytest.fixture(scope="module", params=[False, True], ids=["binary", "graded"])
def random_case(request):
    qrels, run = _random_run(seed=7 + int(request.param), graded=request.param)
    ours = M.evaluate_run(qrels, run, ["map", "recall@1", "recall@10", "recall@100", "ndcg@10", "mrr@10"])
    return qrels, run, ours


def _max_diff(ours: dict, theirs: dict[str, dict[str, float]], pairs: dict[str, str]) -> dict[str, float]:
    return {
        mine: max(abs(ours[qid][mine] - float(theirs[other][qid])) for qid in ours)
        for mine, other in pairs.items()
    }


@pytest.mark.slow
def test_parity_with_ranx(random_case):
    """ranx (numba) is a second independent implementation; slow tier: its JIT compilation takes ~5 s with
    a warm numba cache and ~40 s with a cold one (building ranx.Qrels / ranx.Run dominates)."""
    ranx = pytest.importorskip("ranx")
    qrels, run, ours = random_case
    pairs = {
        "map": "map",
        "recall@1": "recall@1",
        "recall@10": "recall@10",
        "recall@100": "recall@100",
        "ndcg@10": "ndcg@10",
        "mrr@10": "mrr@10",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), list(pairs.values()), return_mean=False)
    per_query = {
        metric: dict(zip(ranx.Qrels(qrels).keys(), values, strict=True)) for metric, values in theirs.items()
    }
    diffs = _max_diff(ours, per_query, pairs)
    assert max(diffs.values()) < 1e-12, diffs


def test_parity_with_ir_measures(random_case):
    ir_measures = pytest.importorskip("ir_measures")
    qrels, run, ours = random_case
    measures = {
        "map": ir_measures.AP,
        "recall@1": ir_measures.R @ 1,
        "recall@10": ir_measures.R @ 10,
        "recall@100": ir_measures.R @ 100,
        "ndcg@10": ir_measures.nDCG @ 10,
        "mrr@10": ir_measures.RR @ 10,
    }
    theirs: dict[str, dict[str, float]] = {str(m): {} for m in measures.values()}
    for row in ir_measures.iter_calc(list(measures.values()), qrels, run):
        theirs[str(row.measure)][row.query_id] = row.value
    diffs = _max_diff(ours, theirs, {mine: str(m) for mine, m in measures.items()})
    assert max(diffs.values()) < 1e-12, diffs


def test_average_precision_matches_sklearn_on_full_rankings():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for i in range(200):
        n = int(rng.integers(5, 80))
        labels = (rng.random(n) < 0.2).astype(int)
        labels[rng.integers(n)] = 1  # at least one relevant
        scores = rng.permutation(n) / n  # distinct: a full ranking with every relevant item retrieved
        docs = [f"d{j}" for j in range(n)]
        qrels = {"q": {d: int(label) for d, label in zip(docs, labels, strict=True)}}
        run = {"q": {d: float(s) for d, s in zip(docs, scores, strict=True)}}
        ours = M.evaluate_run(qrels, run, ["map"])["q"]["map"]
        assert ours == pytest.approx(sklearn_metrics.average_precision_score(labels, scores), abs=1e-12), i


# ---------------------------------------------------------------------------------------------
# Ties and determinism
# ---------------------------------------------------------------------------------------------


def test_tie_break_is_deterministic_and_order_independent():
    rng = random.Random(11)
    docs = [f"doc-{rng.randrange(10**6):06d}" for _ in range(60)]
    scores = {d: rng.choice([0.1, 0.2, 0.3]) for d in docs}  # heavy ties
    qrels = {"q": {d: 1 for d in rng.sample(docs, 8)}}
    expected_order = _ranking(scores)
    expected = {d: expected_order.index(d) + 1 for d in qrels["q"]}
    for _ in range(5):
        shuffled = list(scores.items())
        rng.shuffle(shuffled)
        run = {"q": dict(shuffled)}
        assert M.ranks_from_run(qrels, run)["q"] == expected
        assert M.evaluate_run(qrels, run, ALL_METRICS) == M.evaluate_run(qrels, {"q": scores}, ALL_METRICS)


# ---------------------------------------------------------------------------------------------
# Dense score matrices: the numpy reference
# ---------------------------------------------------------------------------------------------


def _matrix_case(seed: int, n_q: int, n_d: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_q, n_d)).astype(dtype)
    scores[: n_q // 2] = np.round(scores[: n_q // 2], 1)  # many exact ties in half of the rows
    scores[-1] = 0.25  # a row that is all one tie
    mask = rng.random((n_q, n_d)) < 0.15
    mask[0] = False  # a query without relevant items
    doc_ids = [f"p{int(j):05d}" for j in rng.permutation(n_d)]  # column order != id order
    return scores, mask, doc_ids


def _dict_ranks(scores: np.ndarray, mask: np.ndarray, doc_ids: list[str]):
    qrels = {f"q{i}": {doc_ids[j]: 1 for j in np.flatnonzero(mask[i])} for i in range(len(scores))}
    run = {f"q{i}": {d: float(s) for d, s in zip(doc_ids, row, strict=True)} for i, row in enumerate(scores)}
    return qrels, run


@pytest.mark.parametrize("n_docs", [37, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranks_from_scores_equals_ranks_from_run(n_docs, dtype):
    scores, mask, doc_ids = _matrix_case(5, 60, n_docs, dtype)
    qids = [f"q{i}" for i in range(len(scores))]
    qrels, run = _dict_ranks(scores, mask, doc_ids)
    expected = M.ranks_from_run(qrels, run)
    indices = R.relevant_indices(mask)
    ragged = [list(np.flatnonzero(row)[::-1]) for row in mask]  # another order, ragged
    for relevant in (mask, indices, ragged):
        for chunk_size in (None, 1, 7):
            ranks = R.ranks_from_scores(scores, relevant, doc_ids, chunk_size=chunk_size)
            got = R.ranks_to_dict(ranks, relevant, qids, doc_ids)
            assert {q: r for q, r in got.items() if q in expected} == expected
    # and against a full sort of every row
    ranks = R.ranks_from_scores(scores, indices, doc_ids)
    for i, row in enumerate(scores):
        order = _ranking(dict(zip(doc_ids, row.tolist(), strict=True)))
        want = [order.index(doc_ids[j]) + 1 if j >= 0 else 0 for j in indices[i]]
        assert ranks[i].tolist() == want


def test_ranks_from_scores_default_tie_break_is_column_index():
    scores = np.array([[0.5, 0.5, 0.5, 0.9]])
    assert R.ranks_from_scores(scores, np.array([[2, 0]])).tolist() == [[4, 2]]
    assert R.ranks_from_scores(scores, np.array([[2, 0]]), ["d", "c", "a", "b"]).tolist() == [[2, 4]]


def test_ranks_from_vectors_matches_scores():
    rng = np.random.default_rng(2)
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    docs = rng.standard_normal((50, 8)).astype(np.float32)
    docs[10] = docs[11]  # identical docs tie exactly
    relevant = [[10, 11, 3], [], *[list(rng.choice(50, 3, replace=False)) for _ in range(28)]]
    doc_ids = np.asarray([f"d{j:02d}" for j in range(50)][::-1], dtype=object)
    qids = [f"q{i}" for i in range(30)]
    got = R.ranks_from_vectors(queries, docs, doc_ids, relevant, qids, chunk_size=4)
    want = R.ranks_to_dict(R.ranks_from_scores(queries @ docs.T, relevant, doc_ids), relevant, qids, doc_ids)
    assert got == want
    assert abs(got["q0"]["d39"] - got["q0"]["d38"]) == 1  # the tie: d38 (column 11) first


def test_top_k_from_vectors_matches_scores_in_blocks(monkeypatch):
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    docs = rng.standard_normal((50, 8)).astype(np.float32)
    docs[10] = docs[11]  # identical docs tie exactly
    doc_ids = [f"d{j:02d}" for j in range(50)][::-1]
    monkeypatch.setattr(R, "_SCORE_ELEMENTS", 7 * 50)  # 7 queries per matrix product
    for k in (1, 12, 50, 80):
        got = R.top_k_from_vectors(queries, docs, k, doc_ids)
        want = R.top_k_from_scores(queries @ docs.T, k, doc_ids)
        assert np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1], atol=1e-6)
    assert R.top_k_from_vectors(queries[:0], docs, 5)[0].shape == (0, 5)
    with pytest.raises(ValueError):
        R.top_k_from_vectors(queries, docs[:, :4], 5)


@pytest.mark.parametrize("k", [1, 5, 10, 40, 100])
def test_top_k_from_scores_is_head_of_full_ranking(k):
    scores, _, doc_ids = _matrix_case(9, 40, 40)
    indices, values = R.top_k_from_scores(scores, k, doc_ids, chunk_size=7)
    assert indices.shape == values.shape == (40, min(k, 40))
    for i, row in enumerate(scores):
        order = _ranking(dict(zip(doc_ids, row.tolist(), strict=True)))[:k]
        assert [doc_ids[j] for j in indices[i]] == order
        assert np.array_equal(values[i], row[indices[i]])


def test_top_k_run_and_rank_reference_agree():
    scores, mask, doc_ids = _matrix_case(4, 50, 200)
    qids = [f"q{i}" for i in range(len(scores))]
    qrels, full_run = _dict_ranks(scores, mask, doc_ids)
    run = R.top_k_to_run(*R.top_k_from_scores(scores, 200, doc_ids), qids, doc_ids)
    assert run == full_run
    from_run = M.evaluate_run(qrels, run, ALL_METRICS)
    ranks = R.ranks_to_dict(R.ranks_from_scores(scores, mask, doc_ids), mask, qids, doc_ids)
    assert M.evaluate_ranks(qrels, ranks, ALL_METRICS).keys() == from_run.keys()
    for qid, values in M.evaluate_ranks(qrels, ranks, ALL_METRICS).items():
        assert values == pytest.approx(from_run[qid], nan_ok=True)


def test_dense_bad_arguments():
    scores = np.zeros((2, 3))
    with pytest.raises(ValueError):
        R.ranks_from_scores(np.array([[np.nan, 1.0, 0.0]]), np.array([[0]]))
    with pytest.raises(ValueError):
        R.ranks_from_scores(scores, np.array([[0, 0], [1, 2]]))  # repeated index
    with pytest.raises(ValueError):
        R.ranks_from_scores(scores, np.array([[3], [1]]))  # out of range
    with pytest.raises(ValueError):
        R.ranks_from_scores(scores, np.zeros((2, 4), dtype=bool))  # mask shape
    with pytest.raises(ValueError):
        R.ranks_from_scores(scores, np.array([[0], [1]]), ["a", "a", "b"])  # duplicate ids
    with pytest.raises(ValueError):
        R.ranks_from_scores(np.zeros(3), np.array([[0]]))
    with pytest.raises(ValueError):
        R.top_k_from_scores(scores, 0)


# ---------------------------------------------------------------------------------------------
# Purity
# ---------------------------------------------------------------------------------------------


def test_inputs_are_not_mutated():
    qrels, run = _random_run(seed=1, graded=True, n_queries=20)
    qrels["empty"] = {"x": 0}
    before = copy.deepcopy((qrels, run))
    ranks = M.ranks_from_run(qrels, run)
    ranks_before = copy.deepcopy(ranks)
    M.evaluate_run(qrels, run, ALL_METRICS)
    M.evaluate_ranks(qrels, ranks, ALL_METRICS)
    assert (qrels, run) == before
    assert ranks == ranks_before

    scores, mask, doc_ids = _matrix_case(3, 10, 20)
    indices = R.relevant_indices(mask)
    copies = [a.copy() for a in (scores, mask, indices)]
    ids_before = list(doc_ids)
    R.ranks_from_scores(scores, mask, doc_ids)
    R.ranks_from_scores(scores, indices, doc_ids)
    R.top_k_from_scores(scores, 5, doc_ids)
    for original, copied in zip((scores, mask, indices), copies, strict=True):
        assert np.array_equal(original, copied)
    assert doc_ids == ids_before
