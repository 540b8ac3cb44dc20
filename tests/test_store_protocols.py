"""The store seam: every engine offers the data plane the jobs use; the Qdrant engines the admin plane."""

from __future__ import annotations

from hybrid_qdrant.store import AdminStore, DataStore, ManagedStore, open_store
from hybrid_qdrant.store.array import ArrayStore


def test_every_engine_offers_the_data_plane(tmp_path):
    assert isinstance(ArrayStore(), DataStore)
    assert not isinstance(ArrayStore(), AdminStore)  # numpy: no collections to manage
    with open_store(location=str(tmp_path / "edge"), collection="c") as edge:
        assert isinstance(edge, ManagedStore) and isinstance(edge, DataStore) and isinstance(edge, AdminStore)
    with open_store(location=str(tmp_path / "local"), collection="c", engine="client-local") as local:
        assert isinstance(local, ManagedStore)
