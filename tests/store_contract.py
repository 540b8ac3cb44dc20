"""The behaviour every store engine must show, as a test class each engine's module subclasses.

A subclass provides the ``opener`` fixture: ``opener(collection, **opts)`` opens a store of its engine
on a fresh location (or an emptied server). Not collected by itself (no ``test_`` prefix).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store import CollectionSpec, ManagedStore
from hybrid_qdrant.store.base import CONTENT_KEY, ENCODER_KEY, LANG_KEY
from hybrid_qdrant.store.compat import encoder_tag

LANGS = ("en", "de", "ar")
DIM = 32
FP = json.dumps({"model": "tiny", "query": "query: ", "passage": "passage: "}, sort_keys=True)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_corpus(n: int = 2000, seed: int = 7) -> tuple[list[str], np.ndarray, list[dict]]:
    """Seeded unit vectors in 3 languages; doc ids with slashes and non-ASCII characters."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, DIM)))  # (n, 32)
    langs = [LANGS[i % 3] for i in range(n)]
    doc_ids = [f"{lang}/{i}/ü" for i, lang in enumerate(langs)]
    payloads = [{LANG_KEY: lang, "text": f"passage {i}"} for i, lang in enumerate(langs)]
    return doc_ids, vectors, payloads


CORPUS = make_corpus()


def spec(dim: int = DIM, encoder: str = FP, **kw) -> CollectionSpec:
    return CollectionSpec(dim=dim, encoder=encoder, **kw)


def fill(store: ManagedStore, n: int = 300) -> ManagedStore:
    doc_ids, vectors, payloads = CORPUS
    store.ensure_collection(spec())
    store.upsert(doc_ids[:n], vectors[:n], payloads[:n])
    return store


class StoreContract:
    """Engine-independent store behaviour (subclasses supply ``opener``)."""

    @pytest.fixture
    def parity_opener(self, opener):
        """The opener for the 2000-point parity test (an engine may swap in a faster location)."""
        return opener

    def test_create_then_upsert_twice_keeps_the_count(self, opener):
        doc_ids, vectors, payloads = CORPUS
        with opener("c") as store:
            assert isinstance(store, ManagedStore)
            assert not store.exists()
            assert store.ensure_collection(spec()) is True
            assert store.ensure_collection(spec()) is False
            store.upsert(doc_ids[:300], vectors[:300], payloads[:300])
            store.upsert(doc_ids[:300], vectors[:300], payloads[:300])
            assert store.count() == 300
            assert store.count("de") == 100
            assert store.count("xx") == 0
            assert store.spec() == spec()

    def test_lang_filter_returns_only_that_language_sorted(self, opener):
        doc_ids, vectors, _ = CORPUS
        with fill(opener("c")) as store:
            results = store.search(vectors[:20], limit=15, lang="de")
            assert len(results) == 20
            for hits in results:
                assert len(hits) == 15
                assert {h.doc_id.split("/")[0] for h in hits} == {"de"}
                scores = [h.score for h in hits]
                assert scores == sorted(scores, reverse=True)
            several = store.search(vectors[:3], limit=300, lang=["de", "ar"])
            assert {h.doc_id.split("/")[0] for hits in several for h in hits} == {"de", "ar"}
            assert len(several[0]) == store.count(["de", "ar"]) == store.count("de") + store.count("ar")
            ids, _ = store.vectors(("ar", "de"))
            assert sorted(ids) == sorted(d for d in store.doc_ids() if d.split("/")[0] in ("ar", "de"))
            unfiltered = store.search(vectors[:3], limit=5)
            assert unfiltered[0][0].doc_id == doc_ids[0]  # a point is its own nearest neighbour

    def test_doc_ids_round_trip(self, opener):
        doc_ids, vectors, _ = CORPUS
        with fill(opener("c"), n=90) as store:
            assert store.doc_ids() == set(doc_ids[:90])
            assert store.doc_ids("ar") == {d for d in doc_ids[:90] if d.startswith("ar/")}
            probe = [doc_ids[0], "nope", doc_ids[89], doc_ids[500]]
            assert store.existing(probe) == {doc_ids[0]: None, doc_ids[89]: None}  # no content hash given
            store.upsert([doc_ids[0]], vectors[:1], [{**CORPUS[2][0], CONTENT_KEY: "abc"}])
            assert store.existing(probe) == {doc_ids[0]: "abc", doc_ids[89]: None}
            records = {r.doc_id: r for r in store.iter_records(batch=7)}
            assert set(records) == set(doc_ids[:90])
            first = records[doc_ids[0]]
            assert first.payload[LANG_KEY] == "en" and first.payload["text"] == "passage 0"
            assert first.payload[ENCODER_KEY] == encoder_tag(FP)  # added when the caller left it out
            np.testing.assert_allclose(first.vector, vectors[0], atol=1e-6)
            ids, matrix = store.vectors("de")
            assert matrix.shape == (30, DIM) and matrix.dtype == np.float32
            np.testing.assert_allclose(matrix, vectors[[doc_ids.index(d) for d in ids]], atol=1e-6)

    def test_dimension_mismatch_names_both_sizes(self, opener):
        with fill(opener("c"), n=10) as store, pytest.raises(StoreError) as err:
            store.ensure_collection(spec(dim=768))
        expected = "collection 'c' has dim 32, model gives 768; use another --collection or --recreate"
        assert str(err.value) == expected

    def test_distance_and_vector_name_mismatch(self, opener):
        with fill(opener("c"), n=10) as store:
            with pytest.raises(StoreError, match="uses distance cosine, expected dot"):
                store.ensure_collection(spec(distance="dot"))
            with pytest.raises(StoreError, match="stores vector unnamed, expected 'dense'"):
                store.ensure_collection(spec(vector_name="dense"))

    def test_fingerprint_mismatch_names_the_difference(self, opener):
        other = json.dumps({"model": "other", "query": "query: ", "passage": "passage: "}, sort_keys=True)
        with fill(opener("c"), n=10) as store, pytest.raises(StoreError) as err:
            store.ensure_collection(spec(encoder=other))
        assert "collection 'c' was built with another encoder (model: 'tiny' vs 'other')" in str(err.value)
        assert str(err.value).endswith("use another --collection or --recreate")

    def test_recreate_only_when_asked(self, opener):
        with fill(opener("c"), n=50) as store:
            with pytest.raises(StoreError):
                store.ensure_collection(spec(dim=16))
            assert store.count() == 50  # a mismatch never drops data
            assert store.ensure_collection(spec(dim=16), recreate=True) is True
            assert store.count() == 0 and store.spec().dim == 16
        with opener("c") as store:
            assert store.spec().dim == 16  # reopening does not recreate
        with opener("c", recreate=True) as store:
            assert not store.exists()  # dropped at open; ensure_collection builds it again
            assert store.ensure_collection(spec()) is True

    def test_recreate_through_an_alias_keeps_the_alias(self, opener):
        with fill(opener("docs_v1"), n=20) as store:
            store.set_alias("docs", "docs_v1")
        with opener("docs", recreate=True) as store:
            assert store.ensure_collection(spec()) is True
            assert store.aliases() == {"docs": "docs_v1"} and store.count() == 0

    def test_alias_switch_keeps_the_old_collection(self, opener):
        doc_ids, vectors, payloads = CORPUS
        with opener("wiki_v1") as v1:
            v1.ensure_collection(spec())
            v1.upsert(doc_ids[:10], vectors[:10], payloads[:10])
            v1.set_alias("wiki", "wiki_v1")
            assert v1.next_version("wiki") == "wiki_v2"
            v2 = v1.for_collection(v1.next_version("wiki"))
            v2.ensure_collection(spec())
            v2.upsert(doc_ids[10:30], vectors[10:30], payloads[10:30])
            live = v1.for_collection("wiki")
            assert live.count() == 10
            v1.set_alias("wiki", "wiki_v2")
            assert live.count() == 20 and live.resolve("wiki") == "wiki_v2"
            assert v1.aliases() == {"wiki": "wiki_v2"}
            assert set(v1.collections()) == {"wiki_v1", "wiki_v2"}  # the old version stays
            with pytest.raises(StoreError, match="target of alias 'wiki'"):
                v1.delete_collection("wiki_v2")
            with pytest.raises(StoreError, match="is an alias"):
                v1.delete_collection("wiki")
            with pytest.raises(StoreError, match="a collection has that name"):
                v1.set_alias("wiki_v1", "wiki_v2")
            with pytest.raises(StoreError, match="no such collection"):
                v1.set_alias("other", "missing")
            live.close()
            v2.close()
        with opener("wiki") as live:
            assert live.count() == 20  # the alias persists
            assert live.delete_collection("wiki_v1") is True
            assert live.delete_collection("wiki_v1") is False
            assert live.collections() == ["wiki_v2"]
            assert live.delete_alias("wiki") is True and live.aliases() == {}

    def test_reopen_after_close_persists(self, opener):
        _, vectors, _ = CORPUS
        store = fill(opener("c"), n=200)
        before = store.search(vectors[:5], limit=10, lang="en")
        store.close()
        store.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            store.count()
        with opener("c") as again:
            assert again.count() == 200
            after = again.search(vectors[:5], limit=10, lang="en")
        assert [[h.doc_id for h in hits] for hits in after] == [[h.doc_id for h in hits] for hits in before]
        np.testing.assert_allclose(
            [h.score for hits in after for h in hits], [h.score for hits in before for h in hits], atol=1e-6
        )

    def test_missing_collection_and_bad_input(self, opener):
        doc_ids, vectors, payloads = CORPUS
        with opener("c") as store:
            with pytest.raises(StoreError, match="does not exist"):
                store.search(vectors[:1], limit=3)
            store.ensure_collection(spec())
            with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
                store.upsert(doc_ids[:2], vectors[:2, :8], payloads[:2])
            with pytest.raises(ValueError, match="2 doc ids, 3 vectors"):
                store.upsert(doc_ids[:2], vectors[:3], payloads[:2])
            with pytest.raises(ValueError, match="positive"):
                store.search(vectors[:1], limit=0)
            with pytest.raises(ValueError, match="differs"):
                store.upsert(["a"], vectors[:1], [{"doc_id": "b"}])
            assert store.search(vectors[:0], limit=3) == []
            assert store.search(vectors[:2], limit=3) == [[], []]  # empty collection

    def test_upsert_from_another_thread(self, opener):
        doc_ids, vectors, payloads = CORPUS
        with opener("c") as store:
            store.ensure_collection(spec())
            worker = threading.Thread(target=store.upsert, args=(doc_ids[:40], vectors[:40], payloads[:40]))
            worker.start()
            worker.join()
            assert store.count() == 40

    def test_payloads_on_request_and_details(self, opener):
        doc_ids, vectors, payloads = CORPUS
        source = json.dumps({"model": "tiny", "query_prefix": "query: "}, sort_keys=True)
        with opener("c") as store:
            store.ensure_collection(spec(source=source))
            store.upsert(doc_ids[:30], vectors[:30], payloads[:30])
            store.set_alias("live", "c")
            plain = store.search(vectors[:2], limit=3, lang="de")
            full = store.search(vectors[:2], limit=3, lang="de", with_payload=True)
            assert full == plain and all(h.payload is None for hits in plain for h in hits)
            for hit in (h for hits in full for h in hits):
                assert hit.payload["text"] == payloads[doc_ids.index(hit.doc_id)]["text"]
                assert hit.payload[LANG_KEY] == "de" and hit.payload["doc_id"] == hit.doc_id
            details = store.details()
            assert (details.name, details.aliases, details.points) == ("c", ("live",), 30)
            assert details.per_language == {"ar": 10, "de": 10, "en": 10}
            assert details.spec == spec() and details.spec.source == source
            assert details.sample_payload[LANG_KEY] in LANGS and "text" in details.sample_payload
            assert details.index["engine"] and details.note == ""
        with opener("live") as alias:
            assert alias.details().name == "c"
        with opener("missing") as missing, pytest.raises(StoreError, match="does not exist"):
            missing.details()

    def test_exact_search_matches_numpy_brute_force(self, parity_opener):
        """Parity on 2000 x 32 seeded unit vectors: top-k ids identical, scores within 1e-5."""
        doc_ids, vectors, _ = CORPUS
        queries = unit(np.random.default_rng(11).standard_normal((40, DIM)))  # (40, 32)
        k = 10
        with fill(parity_opener("p"), n=len(doc_ids)) as store:
            for lang in (None, *LANGS):
                mask = np.array([lang is None or d.startswith(f"{lang}/") for d in doc_ids])
                pool = np.array(doc_ids, dtype=object)[mask]
                scores = queries @ vectors[mask].T  # (40, n_pool)
                hits = store.search(queries, limit=k, lang=lang)
                for q, query_hits in enumerate(hits):
                    order = np.lexsort((pool, -scores[q]))[:k]
                    assert [h.doc_id for h in query_hits] == list(pool[order]), (lang, q)
                    np.testing.assert_allclose([h.score for h in query_hits], scores[q, order], atol=1e-5)
