"""Every server call survives a transient failure: the store contract against a fake Qdrant REST server
whose first answer to each distinct request is a failure (default tier, 127.0.0.1 only)."""

from __future__ import annotations

import pytest
from fake_qdrant import fail_first, serve
from store_contract import StoreContract

from hybrid_qdrant.store import open_store


def _opener(url: str):
    return lambda collection, **opts: open_store(
        url=url, collection=collection, timeout=5, backoff=0.001, **opts
    )


class TestFakeServer(StoreContract):
    """The fake itself answers like a server (the contract holds without faults)."""

    @pytest.fixture
    def opener(self):
        with serve() as (url, _):
            yield _opener(url)


class _Faulty(StoreContract):
    """The contract under faults; the 2000-point parity test runs once, in ``TestFakeServer``."""

    test_exact_search_matches_numpy_brute_force = None


class TestEveryCallRetriedAfter503(_Faulty):
    """Each distinct request first meets a 503 (nothing applied): every call must retry it."""

    @pytest.fixture
    def opener(self):
        with serve() as (url, fake):
            fake.fault = fail_first("503")
            yield _opener(url)
            assert fake.faults_applied  # the faults were met


class TestWritesAppliedThenFailed(_Faulty):
    """Each distinct write is applied, then answered with a 503: retries must not fail on their own
    earlier effect (a collection or alias that now exists, a collection already gone)."""

    @pytest.fixture
    def opener(self):
        with serve() as (url, fake):
            fake.fault = fail_first("503-after", methods=("POST", "PUT", "DELETE"))
            yield _opener(url)
            assert any(action == "503-after" for *_, action in fake.faults_applied)


class TestConnectionDroppedAfterWrites(_Faulty):
    """Each distinct write is applied, then the connection drops without an answer."""

    @pytest.fixture
    def opener(self):
        with serve() as (url, fake):
            fake.fault = fail_first("drop-after", methods=("POST", "PUT", "DELETE"))
            yield _opener(url)


@pytest.mark.parametrize(("hnsw_ef", "limit", "sent"), [(None, 100, 200), (None, 10, 128), (64, 100, 64)])
def test_approximate_search_sends_a_beam_that_keeps_recall(hnsw_ef, limit, sent):
    """Qdrant's own default beam gave top-100 recall 0.986 on XQuAD-R; unless set, hq asks for
    max(128, 2 * limit) (0.99+ there); exact search sends no beam."""
    import numpy as np

    from hybrid_qdrant.store.base import CollectionSpec

    with serve() as (url, fake), _opener(url)("c", hnsw_ef=hnsw_ef) as store:
        store.ensure_collection(CollectionSpec(dim=4, encoder="e"))
        vectors = np.eye(4, dtype=np.float32)
        store.upsert(["a", "b", "c", "d"], vectors, [{"lang": "en", "doc_id": d} for d in "abcd"])
        store.search(vectors[:1], limit=limit, exact=False)
        store.search(vectors[:1], limit=limit, exact=True)
    searches = [b for path, b in fake.bodies if path.endswith("/points/query/batch")]
    params = [s["params"] for body in searches for s in body["searches"]]
    assert params == [{"hnsw_ef": sent, "exact": False}, {"exact": True}]


def test_index_options_reach_the_server_and_come_back():
    """Quantization (product), HNSW thresholds and rescoring are sent as Qdrant's REST shapes; the
    collection's index options, status and indexed count are read back."""
    import numpy as np

    from hybrid_qdrant.store.base import CollectionSpec

    options = {
        "quantization": "product",
        "product_compression": 8,
        "hnsw_m": 32,
        "hnsw_full_scan_threshold": 50,
        "indexing_threshold": 0,
    }
    with serve() as (url, fake), _opener(url)("c", rescore=False, oversampling=3.0, **options) as store:
        store.ensure_collection(CollectionSpec(dim=4, encoder="e"))
        vectors = np.eye(4, dtype=np.float32)
        store.upsert(["a", "b", "c", "d"], vectors, [{"lang": "en", "doc_id": d} for d in "abcd"])
        assert store.optimize(timeout=5) is False  # the fake is always green: nothing to wait for
        store.search(vectors[:1], limit=2, exact=False)
        info = store.index_info()
    created = next(body for path, body in fake.bodies if path == "/collections/c" and "vectors" in body)
    assert created["hnsw_config"] == {"m": 32, "full_scan_threshold": 50}
    assert created["quantization_config"] == {"product": {"compression": "x8", "always_ram": True}}
    assert created["optimizers_config"] == {"indexing_threshold": 0}
    search = next(b for path, b in fake.bodies if path.endswith("/points/query/batch"))["searches"][0]
    assert search["params"]["quantization"] == {"rescore": False, "oversampling": 3.0}
    assert (info.points, info.indexed_vectors, info.status) == (4, 0, "green")
    assert info.options.quantization == "product" and info.options.product_compression == 8
    assert (info.options.hnsw_m, info.options.hnsw_full_scan_threshold) == (32, 50)
