"""A report depends only on what was asked: the languages' own pools, complete and current collections."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.evaluation.evaluate import EvalOptions
from hybrid_qdrant.evaluation.ingest import ingest
from hybrid_qdrant.evaluation.jobs import run_evaluation
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.base import TEXT_KEY

XQUAD = Path(__file__).parent / "fixtures" / "lareqa" / "xquad-r"
LANGS = ["de", "en", "es"]  # the fixture's languages


class HashEncoder:
    """Deterministic pseudo-random unit vectors from each text's hash (no ties, no model)."""

    dim = 16
    fingerprint = '{"model": "hash-mock"}'

    def __init__(self) -> None:
        self.encoded = 0

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).normal(size=self.dim))
        out = np.asarray(rows, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([f"q:{t}" for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([f"p:{t}" for t in texts])


def evaluate_in(location: Path, collection: str, languages=None, options=None):
    bench = load_benchmark("xquad-r", XQUAD, languages or LANGS)
    with open_store(location=str(location), collection=collection) as store:
        return run_evaluation(bench, HashEncoder(), store, collection, options or EvalOptions())


def test_a_language_subset_is_scored_on_its_own_pool(tmp_path):
    evaluate_in(tmp_path / "shared", "c", ["de", "en", "es"])  # the collection now holds 3 languages
    subset = evaluate_in(tmp_path / "shared", "c", ["de", "en"])
    fresh = evaluate_in(tmp_path / "fresh", "c", ["de", "en"])
    assert subset.result.metrics() == pytest.approx(fresh.result.metrics(), abs=1e-12)
    assert subset.result.counts == fresh.result.counts
    n = len(load_benchmark("xquad-r", XQUAD, ["de", "en"]).passages)
    assert subset.result.counts["passages"] == n  # what was searched, not the collection's size
    # the library path too: a subset of a loaded benchmark
    bench = load_benchmark("xquad-r", XQUAD, ["de", "en", "es"])
    with open_store(location=str(tmp_path / "shared"), collection="c") as store:
        options = EvalOptions(languages=("de", "en"))
        run = run_evaluation(bench, HashEncoder(), store, "c", options)
    assert run.result.metrics() == pytest.approx(fresh.result.metrics(), abs=1e-12)


def test_a_partial_collection_is_completed_before_scoring(tmp_path):
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    partial = [p for p in bench.passages if p.lang == "es"] + [p for p in bench.passages if p.lang == "de"][
        :3
    ]
    with open_store(location=str(tmp_path / "a"), collection="c") as store:
        ingest(partial, HashEncoder(), store)
    encoder = HashEncoder()
    with open_store(location=str(tmp_path / "a"), collection="c") as store:
        run = run_evaluation(bench, encoder, store, "c", EvalOptions())
    fresh = evaluate_in(tmp_path / "b", "c")
    assert run.ingest is not None and run.ingest.encoded == len(bench.passages) - len(partial)
    assert run.result.metrics() == pytest.approx(fresh.result.metrics(), abs=1e-12)


def test_changed_source_text_is_encoded_again_not_kept(tmp_path):
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    with open_store(location=str(tmp_path / "a"), collection="c") as store:
        ingest(bench.passages, HashEncoder(), store)
        changed = list(bench.passages)
        changed[4] = replace(changed[4], text="A corrected sentence.")
        encoder = HashEncoder()
        stats = ingest(changed, encoder, store)
        assert (stats.encoded, stats.replaced, stats.already_stored) == (1, 1, len(changed) - 1)
        assert encoder.encoded == 1
        record = next(r for r in store.iter_records() if r.doc_id == changed[4].doc_id)
        assert record.payload[TEXT_KEY] == "A corrected sentence."
        np.testing.assert_allclose(
            record.vector, HashEncoder().encode_passages(["A corrected sentence."])[0], atol=1e-6
        )
    fresh = load_benchmark("xquad-r", XQUAD, LANGS)
    fresh.passages[4] = changed[4]
    with open_store(location=str(tmp_path / "a"), collection="c") as store:
        again = run_evaluation(fresh, HashEncoder(), store, "c", EvalOptions())
    assert again.ingest is None  # all current: nothing encoded


def test_points_the_benchmark_does_not_have_are_refused(tmp_path):
    evaluate_in(tmp_path, "c")
    bench = load_benchmark("xquad-r", XQUAD, LANGS)
    stray = replace(bench.passages[0], doc_id="de/9/9/9", text="Not in this benchmark.")
    with open_store(location=str(tmp_path), collection="c") as store:
        ingest([stray], HashEncoder(), store)
        count = store.count()
    with pytest.raises(StoreError, match=r"collection 'c' holds \d+ de passages but the benchmark has \d+"):
        evaluate_in(tmp_path, "c")
    with open_store(location=str(tmp_path), collection="c") as store:
        assert store.count() == count  # refused, nothing dropped


def _check_module():
    """eval/check_lareqa.py: the independent re-statement of LAReQA's protocol."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "eval" / "check_lareqa.py"
    spec = importlib.util.spec_from_file_location("check_lareqa", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "langs"), [("xquad-r", ("de", "en", "es")), ("mlqa-r", ("de", "en"))])
def test_the_report_agrees_with_an_independent_lareqa_implementation(tmp_path, name, langs):
    check = _check_module()
    folder = Path(__file__).parent / "fixtures" / "lareqa" / name
    questions, candidates, gold = check.load_lareqa_reference(folder, langs)
    encoder = HashEncoder()
    qvecs = encoder.encode_queries([text for _, _, text in questions])
    pvecs = encoder.encode_passages([text for _, text in candidates])
    reference = check.reference_metrics(questions, candidates, gold, qvecs, pvecs, langs)
    bench = load_benchmark(name, folder, list(langs))
    assert (len(bench.queries), len(bench.passages)) == (len(questions), len(candidates))
    with open_store(location=str(tmp_path), collection="c") as store:
        run = run_evaluation(bench, HashEncoder(), store, "c", EvalOptions())
    metrics = run.result.metrics()
    for key in check.CHECKED:
        assert metrics[key] == pytest.approx(reference[key], abs=1e-9), key


def test_the_reference_ap_is_scikit_learns():
    from sklearn.metrics import average_precision_score

    check = _check_module()
    rng = np.random.default_rng(3)
    for trial in range(50):
        scores = rng.normal(size=40).astype(np.float32)
        if trial % 2:  # ties, some at relevant items
            scores = np.round(scores, 1)
        relevant = rng.choice(40, size=int(rng.integers(1, 6)), replace=False)
        labels = np.zeros(40, dtype=np.int8)
        labels[relevant] = 1
        ap, *_ = check._query_metrics(scores, relevant)
        assert ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
