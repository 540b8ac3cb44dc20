"""Evaluation through the store: hand-computed values on the keyword toy set, parity with brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mock_encoder import KeywordEncoder

from hybrid_qdrant.evaluation.evaluate import EvalOptions, evaluate
from hybrid_qdrant.evaluation.ingest import ingest
from hybrid_qdrant.evaluation.slices import slices_for
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.base import CollectionSpec
from hybrid_qdrant.types import Benchmark


@pytest.fixture
def toy_store(toy, tmp_path):
    enc = KeywordEncoder()
    with open_store(location=str(tmp_path / "q"), collection="toy") as store:
        ingest(toy.passages, enc, store)
        yield store, enc.encode_queries([q.text for q in toy.queries])


def test_slices_cover_the_paper_settings(toy):
    slices = slices_for(toy, EvalOptions().settings, None)
    assert [s.key for s in slices if s.setting == "mono"] == ["en-en", "de-de"]
    assert [s.key for s in slices if s.setting == "cross"] == ["en-de", "de-en"]
    assert [s.key for s in slices if s.setting == "multi"] == ["en-all", "de-all"]


@pytest.mark.parametrize("engine", ["qdrant", "exact"])
@pytest.mark.parametrize("depth", [1, 3, 100])
def test_hand_computed_metrics(toy, toy_store, engine, depth):
    store, qvecs = toy_store
    result = evaluate(toy, qvecs, store, EvalOptions(engine=engine, depth=depth))
    m = result.metrics()
    # q1 "cat sits": gold sentence scores 1 -> rank 1. q2 "cat run": "cat runs" (1.0) first, then the
    # tie "cat sits" / "dog runs" (0.5 each) broken by doc id, so the gold "dog runs" is rank 3.
    assert m["mono/en-en/map"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["mono/map"] == pytest.approx(2 / 3)
    assert m["mono/recall@1"] == pytest.approx(0.5)
    assert m["mono/mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["mono/ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert m["cross/en-de/map"] == pytest.approx(2 / 3)
    assert m["cross/map"] == pytest.approx(2 / 3)
    # multi, q2: de/g4, en/g4 (1.0), then de/g1, de/g2, en/g1, en/g2 (0.5): relevant at ranks 4 and 6.
    ap_q2 = (1 / 4 + 2 / 6) / 2
    assert m["multi/en-all/map"] == pytest.approx((1 + ap_q2) / 2)
    assert m["multi/map"] == pytest.approx((1 + ap_q2) / 2)
    assert m["multi/rank_distance"] == pytest.approx((1 + 2) / 2)
    assert m["multi/recall@10"] == pytest.approx(1.0)
    ndcg_q2 = (1 / math.log2(5) + 1 / math.log2(7)) / (1 + 1 / math.log2(3))
    assert m["multi/ndcg@10"] == pytest.approx((1 + ndcg_q2) / 2)


def _brute_force_metrics(bench: Benchmark, pvecs, qvecs):
    """Independent reference: full lexsort per query, AP and rank distance computed from scratch."""
    ids = np.array([p.doc_id for p in bench.passages])
    langs = np.array([p.lang for p in bench.passages])
    out = {}
    for qi, q in enumerate(bench.queries):
        for setting, target in [
            ("mono", q.lang),
            *[("cross", lang) for lang in bench.languages if lang != q.lang],
            ("multi", None),
        ]:
            mask = np.ones(len(ids), bool) if target is None else langs == target
            cand, scores = ids[mask], pvecs[mask] @ qvecs[qi]
            order = np.lexsort((cand, -scores))
            ranked = list(cand[order])
            rel = [d for d in bench.qrels[q.query_id] if d in set(cand)]
            ranks = sorted(ranked.index(d) + 1 for d in rel)
            ap = sum((k + 1) / r for k, r in enumerate(ranks)) / len(rel)
            key = f"{setting}/{q.lang}-{target or 'all'}"
            out.setdefault(key, {})[q.query_id] = (ap, ranks[-1] - ranks[0], ranks)
    return out


@pytest.mark.parametrize("depth", [2, 10, 1000])
def test_qdrant_path_matches_brute_force(tmp_path, depth):
    from conftest import random_parallel

    bench, pvecs, qvecs = random_parallel()
    with open_store(location=str(tmp_path / "q"), collection="r") as store:
        store.ensure_collection(CollectionSpec(dim=pvecs.shape[1], encoder="random"))
        store.upsert(
            [p.doc_id for p in bench.passages],
            pvecs,
            [{"lang": p.lang, "doc_id": p.doc_id} for p in bench.passages],
        )
        qdrant = evaluate(bench, qvecs, store, EvalOptions(engine="qdrant", depth=depth))
        exact = evaluate(bench, qvecs, store, EvalOptions(engine="exact"))
        auto = evaluate(bench, qvecs, store, EvalOptions())
    assert auto.options.engine == "exact" and qdrant.options.engine == "qdrant"
    assert [r.per_query for r in auto.slices] == [r.per_query for r in exact.slices]
    reference = _brute_force_metrics(bench, pvecs, qvecs)
    assert qdrant.counts["query_slices"] == 3 * 60 * 4  # each query: mono, 2 cross, multi
    for q_res, e_res in zip(qdrant.slices, exact.slices, strict=False):
        key = f"{q_res.slice.setting}/{q_res.slice.key}"
        ref = reference[key]
        assert set(q_res.per_query) == set(ref)
        for qid, values in q_res.per_query.items():
            assert values["map"] == pytest.approx(ref[qid][0], abs=1e-9), (key, qid)
            assert values == pytest.approx(e_res.per_query[qid], abs=1e-9)
            if q_res.slice.setting == "multi":
                assert values["rank_distance"] == ref[qid][1]
    if depth == 2:
        assert qdrant.counts["exact_fallback"] > 0
    if depth == 1000:
        assert qdrant.counts["exact_fallback"] == 0


def test_truncated_ranking_counts_deep_items_as_missing(tmp_path):
    from conftest import random_parallel

    bench, pvecs, qvecs = random_parallel(noise=2.0)
    with open_store(location=str(tmp_path / "q"), collection="r") as store:
        store.ensure_collection(CollectionSpec(dim=pvecs.shape[1], encoder="random"))
        store.upsert(
            [p.doc_id for p in bench.passages],
            pvecs,
            [{"lang": p.lang, "doc_id": p.doc_id} for p in bench.passages],
        )
        full = evaluate(bench, qvecs, store, EvalOptions(settings=("multi",), depth=5)).metrics()
        cut = evaluate(
            bench, qvecs, store, EvalOptions(settings=("multi",), depth=5, full_ranking=False)
        ).metrics()
    assert cut["multi/map"] < full["multi/map"]
    assert cut["multi/ndcg@10"] <= full["multi/ndcg@10"]
    assert cut["multi/recall@1"] == pytest.approx(full["multi/recall@1"])


def test_queries_without_relevant_in_target_language_are_dropped_and_counted(toy, toy_store):
    store, qvecs = toy_store
    bench = Benchmark(
        toy.name,
        toy.languages,
        toy.passages,
        toy.queries,
        {**toy.qrels, "en/q1": {"en/g1": 1}},
        parallel=True,
    )  # no German gold for en/q1
    result = evaluate(bench, qvecs, store, EvalOptions(settings=("cross",)))
    en_de = next(r for r in result.slices if r.slice.key == "en-de")
    assert (en_de.n_queries, en_de.n_dropped) == (1, 1)
    assert result.counts["dropped_no_relevant"] == 1


def test_auto_engine_is_exact_for_full_rankings_and_qdrant_for_streamed_or_truncated():
    assert EvalOptions().resolved(streamed=False).engine == "exact"
    assert EvalOptions().resolved(streamed=True).engine == "qdrant"  # millions of passages: no matrix
    assert EvalOptions(full_ranking=False).resolved().engine == "qdrant"  # truncated: what Qdrant returns
    assert EvalOptions(engine="qdrant").resolved().engine == "qdrant"
    assert EvalOptions(engine="exact").resolved(streamed=True).engine == "exact"  # asked for
