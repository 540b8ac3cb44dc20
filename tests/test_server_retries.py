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
