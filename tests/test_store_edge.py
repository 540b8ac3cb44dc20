"""Embedded stores (default tier): qdrant-edge, and qdrant-client's local mode for the server code path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store import CollectionSpec, ManagedStore, open_store
from hybrid_qdrant.store.base import ENCODER_KEY, LANG_KEY
from hybrid_qdrant.store.compat import encoder_tag

ENGINES = ["edge", "client-local"]
LANGS = ("en", "de", "ar")
DIM = 32
FP = json.dumps({"model": "tiny", "query": "query: ", "passage": "passage: "}, sort_keys=True)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray, list[dict]]:
    """2000 seeded unit vectors in 3 languages; doc ids with slashes and non-ASCII text."""
    rng = np.random.default_rng(7)
    vectors = unit(rng.standard_normal((2000, DIM)))  # (2000, 32)
    langs = [LANGS[i % 3] for i in range(2000)]
    doc_ids = [f"{lang}/{i}/ü" for i, lang in enumerate(langs)]
    payloads = [{LANG_KEY: lang, "text": f"passage {i}"} for i, lang in enumerate(langs)]
    return doc_ids, vectors, payloads


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def location(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def spec(dim: int = DIM, encoder: str = FP, **kw) -> CollectionSpec:
    return CollectionSpec(dim=dim, encoder=encoder, **kw)


def filled(engine: str, location: str, corpus, collection: str = "c", n: int = 600) -> ManagedStore:
    doc_ids, vectors, payloads = corpus
    store = open_store(location, engine=engine, collection=collection)
    store.ensure_collection(spec())
    store.upsert(doc_ids[:n], vectors[:n], payloads[:n])
    return store


def test_create_then_upsert_twice_keeps_the_count(engine, location, corpus):
    doc_ids, vectors, payloads = corpus
    with open_store(location, engine=engine, collection="c") as store:
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


def test_lang_filter_returns_only_that_language_sorted(engine, location, corpus):
    doc_ids, vectors, _ = corpus
    lang_of = {d: d.split("/")[0] for d in doc_ids}
    with filled(engine, location, corpus) as store:
        results = store.search(vectors[:20], limit=15, lang="de")
        assert len(results) == 20
        for hits in results:
            assert len(hits) == 15
            assert {lang_of[h.doc_id] for h in hits} == {"de"}
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
        unfiltered = store.search(vectors[:3], limit=5)
        assert [h.doc_id for h in unfiltered[0]][0] == doc_ids[0]  # a point is its own nearest neighbour


def test_doc_ids_round_trip(engine, location, corpus):
    doc_ids, vectors, _ = corpus
    with filled(engine, location, corpus, n=90) as store:
        assert store.doc_ids() == set(doc_ids[:90])
        assert store.doc_ids("ar") == {d for d in doc_ids[:90] if d.startswith("ar/")}
        assert store.existing([doc_ids[0], "nope", doc_ids[89], doc_ids[500]]) == {doc_ids[0], doc_ids[89]}
        records = {r.doc_id: r for r in store.iter_records(batch=7)}
        assert set(records) == set(doc_ids[:90])
        first = records[doc_ids[0]]
        assert first.payload[LANG_KEY] == "en" and first.payload["text"] == "passage 0"
        assert first.payload[ENCODER_KEY] == encoder_tag(FP)  # added when the caller left it out
        np.testing.assert_allclose(first.vector, vectors[0], atol=1e-6)
        ids, matrix = store.vectors("de")
        assert matrix.shape == (30, DIM) and matrix.dtype == np.float32
        np.testing.assert_allclose(matrix, vectors[[doc_ids.index(d) for d in ids]], atol=1e-6)


def test_dimension_mismatch_names_both_sizes(engine, location, corpus):
    with filled(engine, location, corpus, n=10) as store, pytest.raises(StoreError) as err:
        store.ensure_collection(spec(dim=768))
    expected = "collection 'c' has dim 32, model gives 768; use another --collection or --recreate"
    assert str(err.value) == expected


def test_distance_and_vector_name_mismatch(engine, location, corpus):
    with filled(engine, location, corpus, n=10) as store:
        with pytest.raises(StoreError, match="uses distance cosine, expected dot"):
            store.ensure_collection(spec(distance="dot"))
        with pytest.raises(StoreError, match="stores vector unnamed, expected 'dense'"):
            store.ensure_collection(spec(vector_name="dense"))


def test_fingerprint_mismatch_names_the_difference(engine, location, corpus):
    other = json.dumps({"model": "other", "query": "query: ", "passage": "passage: "}, sort_keys=True)
    with filled(engine, location, corpus, n=10) as store, pytest.raises(StoreError) as err:
        store.ensure_collection(spec(encoder=other))
    assert "collection 'c' was built with another encoder (model: 'tiny' vs 'other')" in str(err.value)
    assert str(err.value).endswith("use another --collection or --recreate")


def test_recreate_only_when_asked(engine, location, corpus):
    with filled(engine, location, corpus, n=50) as store:
        with pytest.raises(StoreError):
            store.ensure_collection(spec(dim=16))
        assert store.count() == 50  # a mismatch never drops data
        assert store.ensure_collection(spec(dim=16), recreate=True) is True
        assert store.count() == 0 and store.spec().dim == 16
    with open_store(location, engine=engine, collection="c") as store:
        assert store.spec().dim == 16  # reopening does not recreate
    with open_store(location, engine=engine, collection="c", recreate=True) as store:
        assert not store.exists()  # dropped at open; ensure_collection builds it again
        assert store.ensure_collection(spec()) is True


def test_alias_switch_keeps_the_old_collection(engine, location, corpus):
    doc_ids, vectors, payloads = corpus
    with open_store(location, engine=engine, collection="wiki_v1") as v1:
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
    with open_store(location, engine=engine, collection="wiki") as live:
        assert live.count() == 20  # the alias persists
        assert live.delete_collection("wiki_v1") is True
        assert live.delete_collection("wiki_v1") is False
        assert live.collections() == ["wiki_v2"]


def test_reopen_after_close_persists(engine, location, corpus):
    _, vectors, _ = corpus
    store = filled(engine, location, corpus, n=200)
    before = store.search(vectors[:5], limit=10, lang="en")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.count()
    with open_store(location, engine=engine, collection="c") as again:
        assert again.count() == 200
        after = again.search(vectors[:5], limit=10, lang="en")
        assert [[h.doc_id for h in hits] for hits in after] == [[h.doc_id for h in hits] for hits in before]
        np.testing.assert_allclose([h.score for hits in after for h in hits],
                                   [h.score for hits in before for h in hits], atol=1e-6)


def test_second_process_gets_a_clear_error(engine, location, corpus):
    script = textwrap.dedent(
        f"""
        import sys
        from hybrid_qdrant.errors import StoreError
        from hybrid_qdrant.store import open_store
        try:
            open_store({location!r}, engine={engine!r}, collection="c").count()
        except StoreError as exc:
            print(exc)
            sys.exit(exc.exit_code)
        """
    )
    with filled(engine, location, corpus, n=10):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4, result.stderr
    assert "is open in another process" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_missing_collection_and_bad_input(engine, location, corpus):
    doc_ids, vectors, payloads = corpus
    with open_store(location, engine=engine, collection="c") as store:
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


def test_upsert_from_another_thread(engine, location, corpus):
    doc_ids, vectors, payloads = corpus
    with open_store(location, engine=engine, collection="c") as store:
        store.ensure_collection(spec())
        worker = threading.Thread(target=store.upsert, args=(doc_ids[:40], vectors[:40], payloads[:40]))
        worker.start()
        worker.join()
        assert store.count() == 40


@pytest.mark.parametrize("lang", [None, *LANGS])
def test_exact_search_matches_numpy_brute_force(engine, tmp_path_factory, corpus, lang):
    """Parity: exact top-k ids equal a numpy reference and scores agree within 1e-5."""
    doc_ids, vectors, _ = corpus
    store = _parity_store(engine, tmp_path_factory, corpus)
    rng = np.random.default_rng(11)
    queries = unit(rng.standard_normal((40, DIM)))  # (40, 32)
    k = 10
    mask = np.array([lang is None or d.startswith(f"{lang}/") for d in doc_ids])
    pool_ids = np.array(doc_ids, dtype=object)[mask]
    scores = queries @ vectors[mask].T  # (40, n_pool)
    hits = store.search(queries, limit=k, lang=lang)
    for q, query_hits in enumerate(hits):
        order = np.lexsort((pool_ids, -scores[q]))[:k]
        assert [h.doc_id for h in query_hits] == list(pool_ids[order])
        np.testing.assert_allclose([h.score for h in query_hits], scores[q, order], atol=1e-5)


_PARITY: dict[str, ManagedStore] = {}


def _parity_store(engine, tmp_path_factory, corpus) -> ManagedStore:
    """One filled store per engine for the parity tests (closed at interpreter exit)."""
    if engine not in _PARITY:
        doc_ids, vectors, payloads = corpus
        store = open_store(str(tmp_path_factory.mktemp(f"parity-{engine}")), engine=engine, collection="p")
        store.ensure_collection(spec())
        store.upsert(doc_ids, vectors, payloads)
        _PARITY[engine] = store
    return _PARITY[engine]


@pytest.fixture(scope="module", autouse=True)
def _close_parity_stores():
    yield
    while _PARITY:
        _PARITY.popitem()[1].close()


# ------------------------------------------------------------------------- edge only


def test_memory_store_is_removed_on_close(corpus):
    store = filled("edge", ":memory:", corpus, n=20)
    root = Path(store.catalog.root)
    assert root.is_dir() and store.count() == 20
    store.close()
    assert not root.exists()


def test_corrupt_metadata_is_reported(location, corpus):
    filled("edge", location, corpus, n=5).close()
    (Path(location) / "c" / "collection.json").write_text("{not json", encoding="utf-8")
    with open_store(location, collection="c") as store:
        with pytest.raises(StoreError, match=r"collection 'c' at .* is corrupt .*use --recreate"):
            store.count()
        assert store.ensure_collection(spec(), recreate=True) is True


def test_corrupt_shard_is_reported(location, corpus):
    filled("edge", location, corpus, n=5).close()
    (Path(location) / "c" / "shard" / "edge_config.json").write_text("garbage", encoding="utf-8")
    store = open_store(location, collection="c")
    with store, pytest.raises(StoreError, match="is corrupt or unreadable"):
        store.ensure_collection(spec())


def test_named_vector_and_euclid_scores_higher_is_better(location):
    points = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    with open_store(location, collection="e") as store:
        store.ensure_collection(CollectionSpec(dim=2, distance="euclid", vector_name="dense"))
        store.upsert(["a", "b", "c"], points, [{LANG_KEY: "en"}] * 3)
        hits = store.search(np.zeros((1, 2), dtype=np.float32), limit=3)[0]
        assert [h.doc_id for h in hits] == ["a", "c", "b"]
        np.testing.assert_allclose([h.score for h in hits], [-1.0, -2.0, -3.0], atol=1e-6)
        ids, matrix = store.vectors()
        np.testing.assert_allclose(matrix[ids.index("b")], [3.0, 0.0])


def test_two_stores_in_one_process_share_the_shard(location, corpus):
    with filled("edge", location, corpus, n=30), open_store(location, collection="c") as second:
        assert second.count() == 30
        with pytest.raises(StoreError, match="open in another store of this process"):
            second.delete_collection("c")


def test_open_store_rejects_unknown_options(location):
    with pytest.raises(ValueError, match="unknown store option"):
        open_store(location, colour="red")
    with pytest.raises(ValueError, match="needs a url"):
        open_store(location, engine="server")
    with pytest.raises(ValueError, match="unknown store engine"):
        open_store(location, engine="faiss")
    with pytest.raises(ValueError, match="invalid collection name"):
        open_store(location, collection="../x")
    with open_store(location, timeout=5, prefer_grpc=False, api_key="ignored") as store:  # CLI defaults pass
        assert store.collection == "passages"
