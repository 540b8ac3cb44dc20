"""Retriever: a collection searched with the encoder recorded in it, on both engines, from many threads."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest
from fake_qdrant import serve
from search_helpers import (
    COLLECTION,
    brute_force,
    build_collection,
    fixture_benchmark,
    ids_and_scores,
    tiny_model,
)

from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
from hybrid_qdrant.encoding.source import EncoderSource
from hybrid_qdrant.errors import ModelError, StoreError
from hybrid_qdrant.evaluation.ingest import ingest
from hybrid_qdrant.retriever import Retriever
from hybrid_qdrant.store import CollectionSpec, open_store

QUESTIONS = ["Wohin mündet der Rhein?", "Which cities does the Danube pass?", "¿Cuál es la capital?"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retriever")
    model = tiny_model(tmp / "models" / "tiny")
    location = tmp / "qdrant"
    build_collection(model, tmp, "--location", location)
    return model, location


@pytest.mark.parametrize("filters", [{}, {"lang": "de"}, {"langs": ["de", "es"]}])
def test_hits_are_the_brute_force_ranking_of_the_recorded_encoder(built, filters):
    model, location = built
    langs = {filters["lang"]} if "lang" in filters else set(filters.get("langs", [])) or None
    expected = brute_force(model, QUESTIONS, 5, langs)
    with Retriever.open(COLLECTION, location=location) as retriever:  # no model: the recorded one
        results = retriever.search(QUESTIONS, k=5, **filters)
    assert len(results) == len(QUESTIONS)
    for hits, want in zip(results, expected, strict=True):
        ids, scores = ids_and_scores(hits)
        assert ids == [d for d, _ in want]
        np.testing.assert_allclose(scores, [s for _, s in want], atol=1e-5)
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert langs is None or {h.lang for h in hits} <= langs


def test_hits_carry_text_language_group_and_payload(built):
    model, location = built
    passages = {p.doc_id: p for p in fixture_benchmark().passages}
    with Retriever.open(COLLECTION, location=location) as retriever:
        hits = retriever.search_one("Wohin mündet der Rhein?", lang="de", k=3)
        assert retriever.count() == len(passages)
        assert retriever.count(lang="de") == sum(p.lang == "de" for p in passages.values())
        assert retriever.count(langs=["de", "en"]) == sum(p.lang in ("de", "en") for p in passages.values())
    for hit in hits:
        passage = passages[hit.doc_id]
        assert (hit.text, hit.lang, hit.group_id) == (passage.text, passage.lang, passage.group_id)
        assert hit.payload["doc_id"] == hit.doc_id and "content_hash" in hit.payload
        assert hit.as_dict()["text"] == passage.text


def test_one_retriever_serves_many_threads(built):
    _, location = built
    with Retriever.open(COLLECTION, location=location) as retriever:
        _check_threads(retriever)


def test_one_server_retriever_serves_many_threads(built, tmp_path, monkeypatch):
    model, _ = built
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    with serve() as (url, _):
        build_collection(model, tmp_path, "--url", url)
        with Retriever.open(COLLECTION, url=url) as retriever:
            _check_threads(retriever)


def _check_threads(retriever: Retriever) -> None:
    """8 threads searching at once get what one thread gets."""
    texts = [[q] for q in QUESTIONS] + [QUESTIONS]
    expected = [retriever.search(t, lang="de", k=4) for t in texts]
    failures: list[BaseException] = []
    mismatches = []

    def work(worker: int) -> None:
        try:
            for step in range(12):
                i = (worker + step) % len(texts)
                if retriever.search(texts[i], lang="de", k=4) != expected[i]:
                    mismatches.append(i)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and not mismatches


class _Axis:
    """An encoder whose every query is the first axis (scores are the vectors' first components)."""

    dim, fingerprint = 4, "axis"

    def encode_queries(self, texts):
        return np.tile(np.eye(4, dtype=np.float32)[0], (len(texts), 1))


@pytest.mark.parametrize("engine", ["edge", "client-local"])
def test_a_tie_across_the_last_place_is_broken_by_doc_id(tmp_path, engine):
    """20 identical passages tie for places 2-21: k=3 returns the two smallest doc ids, whichever tied
    points the engine would pick at its limit."""
    tied = [f"t/{i:02d}" for i in range(20)][::-1]
    vectors = np.array([[0.9, 0.1, 0, 0]] + [[0.5, 0.5, 0, 0]] * 20 + [[0.1, 0.9, 0, 0]], np.float32)
    ids = ["best", *tied, "worst"]
    with open_store(location=tmp_path / "q", engine=engine, collection="ties") as store:
        store.ensure_collection(CollectionSpec(dim=4, encoder="axis"))
        store.upsert(ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), [{"lang": "xx"}] * 22)
        retriever = Retriever(store, _Axis())
        assert [h.doc_id for h in retriever.search_one("q", k=3)] == ["best", "t/00", "t/01"]
        assert [h.doc_id for h in retriever.search_one("q", k=21)][-2:] == ["t/18", "t/19"]
        assert len(retriever.search_one("q", k=50)) == 22


def test_argument_checks(built):
    _, location = built
    with Retriever.open(COLLECTION, location=location) as retriever:
        with pytest.raises(TypeError, match="search_one"):
            retriever.search("a string")
        with pytest.raises(ValueError, match="not both"):
            retriever.search(["x"], lang="de", langs=["en"])
        with pytest.raises(ValueError, match="k must"):
            retriever.search(["x"], k=0)
        with pytest.raises(ValueError, match="non-empty"):
            retriever.search([" "])
        assert retriever.search([]) == []
    with pytest.raises(StoreError, match="closed"):
        retriever.search(["x"])
    with pytest.raises(StoreError, match="no collection 'missing'"):
        Retriever.open("missing", location=location)


def test_another_model_is_refused_with_one_line(built, tmp_path):
    _, location = built
    other = tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(ModelError) as info:
        Retriever.open(COLLECTION, location=location, model=other)
    message = str(info.value)
    assert "\n" not in message and "does not match" in message and "--model" in message


def test_a_moved_model_is_refused_until_given_and_a_changed_one_always(tmp_path):
    model = tiny_model(tmp_path / "a" / "tiny")
    build_collection(model, tmp_path, "--location", tmp_path / "q")
    source = EncoderSource.from_json(open_store(location=tmp_path / "q", collection=COLLECTION).spec().source)
    assert source.model == model and source.query_prefix == "query: " and source.max_seq_length == 64

    moved = tmp_path / "b" / "tiny"
    moved.parent.mkdir()
    shutil.move(model, moved)  # same folder name and files: the same fingerprint
    with pytest.raises(ModelError, match="no longer exists; pass --model"):
        Retriever.open(COLLECTION, location=tmp_path / "q")
    with Retriever.open(COLLECTION, location=tmp_path / "q", model=str(moved)) as retriever:
        assert retriever.search_one("Rhein", k=1)

    weights = next(moved.rglob("*.safetensors"))
    os.utime(weights, (1, 1))  # a changed file
    with pytest.raises(ModelError, match="does not match"):
        Retriever.open(COLLECTION, location=tmp_path / "q", model=str(moved))


class _Unrecorded:
    """An encoder hq cannot record a source for (as collections built before sources were recorded)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.dim, self.fingerprint = encoder.dim, encoder.fingerprint

    def encode_passages(self, texts):
        return self._encoder.encode_passages(texts)

    def encode_queries(self, texts):
        return self._encoder.encode_queries(texts)


def test_a_collection_without_a_recorded_source_needs_a_model_until_ingested_again(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    encoder = SentenceTransformerEncoder(EncoderSettings(model=model, device="cpu"))
    passages = fixture_benchmark().passages
    with open_store(location=tmp_path / "q", collection="old") as store:
        ingest(passages, _Unrecorded(encoder), store)
        assert store.spec().source == ""
    with pytest.raises(ModelError, match="records no encoder"):
        Retriever.open("old", location=tmp_path / "q")
    with Retriever.open("old", location=tmp_path / "q", model=model) as retriever:
        assert retriever.search_one("Rhein", k=2)
    with pytest.raises(ModelError, match="'query: ' vs 'q: '"):  # prefixes other than the collection's
        Retriever.open(
            "old", location=tmp_path / "q", model=model, settings=EncoderSettings(query_prefix="q: ")
        )
    with open_store(location=tmp_path / "q", collection="old") as store:
        stats = ingest(passages, encoder, store)  # nothing to write, but the source is recorded
        assert stats.encoded == 0
    with Retriever.open("old", location=tmp_path / "q") as retriever:
        assert retriever.search_one("Rhein", k=2)


def test_a_server_collection_answers_like_the_embedded_one(built, tmp_path, monkeypatch):
    model, location = built
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    with serve() as (url, fake):
        build_collection(model, tmp_path, "--url", url)
        assert "hq_encoder_source" in fake.collections[COLLECTION]["metadata"]
        with (
            Retriever.open(COLLECTION, url=url) as server,
            Retriever.open(COLLECTION, location=location) as edge,
        ):
            for filters in ({}, {"lang": "de"}, {"langs": ["en", "es"]}):
                a, b = server.search(QUESTIONS, k=4, **filters), edge.search(QUESTIONS, k=4, **filters)
                for x, y in zip(a, b, strict=True):
                    assert [h.doc_id for h in x] == [h.doc_id for h in y]
                    np.testing.assert_allclose([h.score for h in x], [h.score for h in y], atol=1e-5)
                    assert [h.text for h in x] == [h.text for h in y]
