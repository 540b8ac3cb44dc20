"""Embedded stores (default tier): qdrant-edge, and qdrant-client's local mode for the server code path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from store_contract import CORPUS, StoreContract, fill, spec

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store import CollectionSpec, open_store
from hybrid_qdrant.store.base import LANG_KEY
from hybrid_qdrant.store.server import ServerStore


@pytest.fixture
def location(tmp_path: Path) -> str:
    return str(tmp_path / "store")


class TestEdgeStore(StoreContract):
    """The default engine: qdrant-edge shards in a directory."""

    @pytest.fixture
    def opener(self, location):
        return lambda collection, **opts: open_store(location, collection=collection, **opts)


class TestClientLocalStore(StoreContract):
    """qdrant-client's local mode: server.py's code path without a server.

    The stores of one test share an in-memory client (closing a store keeps the data, as on a server):
    local mode's on-disk writes cost one SQLite commit per point. ``test_client_local_persists`` covers
    the on-disk mode.
    """

    @pytest.fixture
    def opener(self):
        shared = ServerStore.local(":memory:", "unused")
        yield lambda collection, **opts: ServerStore(
            shared._client, collection, engine="client-local", where=":memory:", owns_client=False, **opts
        )
        shared.close()


@pytest.mark.parametrize("engine", ["edge", "client-local"])
def test_second_process_gets_a_clear_error(engine, location):
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
    with fill(open_store(location, engine=engine, collection="c"), n=10):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4, result.stderr
    assert "is open in another process" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_client_local_persists(location):
    fill(open_store(location, engine="client-local", collection="c"), n=12).close()
    with open_store(location, engine="client-local", collection="c") as store:
        assert store.count() == 12 and store.spec() == spec()


# ------------------------------------------------------------------------- edge only


def test_memory_store_is_removed_on_close():
    store = fill(open_store(":memory:", collection="c"), n=20)
    root = Path(store.catalog.root)
    assert root.is_dir() and store.count() == 20
    store.close()
    assert not root.exists()


def test_corrupt_metadata_is_reported(location):
    fill(open_store(location, collection="c"), n=5).close()
    (Path(location) / "c" / "collection.json").write_text("{not json", encoding="utf-8")
    with open_store(location, collection="c") as store:
        with pytest.raises(StoreError, match=r"collection 'c' at .* is corrupt .*move the folder aside \(mv"):
            store.count()
        assert store.ensure_collection(spec(), recreate=True) is True  # the destructive fix stays possible


def test_corrupt_shard_is_reported(location):
    fill(open_store(location, collection="c"), n=5).close()
    (Path(location) / "c" / "shard" / "edge_config.json").write_text("garbage", encoding="utf-8")
    store = open_store(location, collection="c")
    with store, pytest.raises(StoreError, match="files look corrupt .*move the folder aside"):
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


def test_two_stores_in_one_process_share_the_shard(location):
    with fill(open_store(location, collection="c"), n=30), open_store(location, collection="c") as second:
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


def test_engines_refuse_each_others_directories(location):
    fill(open_store(location, collection="c"), n=3).close()
    with pytest.raises(StoreError, match="engine='edge'"):
        open_store(location, engine="client-local")


def test_index_options_build_a_quantized_graph_and_are_recorded(location):
    options = {"quantization": "scalar", "hnsw_m": 8, "hnsw_full_scan_threshold": 1, "indexing_threshold": 1}
    with open_store(location=location, collection="c", rescore=True, oversampling=2.0, **options) as store:
        fill(store, 300)
        before = store.index_info()
        assert (before.points, before.indexed_vectors) == (300, 0)  # the index is built by optimize
        assert store.optimize()
        info = store.index_info()
        assert info.indexed_vectors == 300
        assert info.options.set_options() == options
        parts = store.storage_bytes()
        assert parts["quantized"] > 0 and parts["graph"] > 0 and parts["vectors"] >= 300 * 32 * 4
        exact = store.search(CORPUS[1][:3], 5, "en", exact=True)
        approximate = store.search(CORPUS[1][:3], 5, "en", exact=False)
        assert [h.doc_id for h in approximate[0]][:1] == [h.doc_id for h in exact[0]][:1]
    with open_store(location=location, collection="c") as store:  # recorded in the metadata
        assert store.index_info().options.set_options() == options
    with pytest.raises(ValueError, match="oversampling"):
        open_store(location=location, collection="c", oversampling=0.5)
