"""Server store: the store contract against a real Qdrant (testcontainers, ``-m server``), and the
connection failures, retries and API-key hygiene that need no server (default tier)."""

from __future__ import annotations

import http.server
import logging
import os
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from store_contract import CORPUS, StoreContract, fill, spec

from hybrid_qdrant.errors import ConfigError, StoreError
from hybrid_qdrant.store import open_store, resolve_api_key
from hybrid_qdrant.store.base import CollectionSpec
from hybrid_qdrant.store.connection import Secret, redact_url, scrub
from hybrid_qdrant.store.retry import call_with_retries

#: Must match docker/docker-compose.yml; override with HQ_QDRANT_IMAGE.
QDRANT_IMAGE = os.environ.get("HQ_QDRANT_IMAGE", "qdrant/qdrant:v1.20.0")
API_KEY = "hq-test-key-3f9a1c"


# ------------------------------------------------------------------------- server tier


@pytest.fixture(scope="module")
def qdrant() -> Iterator[dict]:
    """A Qdrant container with an API key; skips the module's server tests when Docker is unavailable."""
    try:
        from docker.errors import DockerException
        from testcontainers.community.qdrant import QdrantContainer
    except ImportError as exc:  # pragma: no cover - testcontainers is a test dependency
        pytest.skip(f"testcontainers is not installed ({exc})")
    try:
        container = QdrantContainer(QDRANT_IMAGE, api_key=API_KEY)  # connects to the engine already
        container.start()
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:160]
        pytest.skip(f"no Docker engine reachable, server tests skipped ({type(exc).__name__}: {reason})")
    try:
        host = container.get_container_host_ip()
        yield {
            "url": f"http://{host}:{container.exposed_rest_port}",
            "grpc_port": int(container.exposed_grpc_port),
        }
    finally:
        container.stop()


def _empty(url: str) -> None:
    """Drop every alias and collection so each test starts from an empty server."""
    with open_store(url=url, api_key=API_KEY, collection="cleanup") as store:
        for alias in store.aliases():
            store.delete_alias(alias)
        for name in store.collections():
            store.delete_collection(name)


@pytest.mark.server
class TestServerStore(StoreContract):
    """The store contract on a real server (REST)."""

    @pytest.fixture
    def opener(self, qdrant):
        _empty(qdrant["url"])
        return lambda collection, **opts: open_store(
            url=qdrant["url"], api_key=API_KEY, collection=collection, timeout=10, **opts
        )


@pytest.mark.server
def test_server_grpc_and_creation_options(qdrant):
    _empty(qdrant["url"])
    store = open_store(
        url=qdrant["url"],
        api_key=API_KEY,
        collection="q",
        prefer_grpc=True,
        grpc_port=qdrant["grpc_port"],
        quantization="scalar",
        hnsw_m=8,
        hnsw_ef_construct=64,
        on_disk=True,
    )
    with fill(store, n=300):
        assert store.count() == 300 and store.count("ar") == 100
        hits = store.search(CORPUS[1][:4], limit=5, lang="en", exact=False)
        assert all(h.doc_id.startswith("en/") for query_hits in hits for h in query_hits)
        assert CORPUS[0][0] in {h.doc_id for h in hits[0]}  # approximate, quantized: near the top


@pytest.mark.server
def test_server_rejects_a_wrong_key_without_showing_it(qdrant, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "definitely-wrong-key-77"
    with pytest.raises(StoreError) as err:
        open_store(url=qdrant["url"], api_key=wrong, collection="c", timeout=5)
    assert str(err.value).startswith(f"Qdrant at {qdrant['url']} rejected the API key (40")
    assert wrong not in str(err.value) and wrong not in caplog.text


@pytest.mark.server
def test_server_fingerprint_falls_back_to_payload_tags(qdrant):
    """A collection without hq metadata (made by another tool) is checked through payload tags."""
    _empty(qdrant["url"])
    with open_store(url=qdrant["url"], api_key=API_KEY, collection="c") as store:
        store._metadata = False  # as on a server older than 1.16
        fill(store, n=10)
    with open_store(url=qdrant["url"], api_key=API_KEY, collection="c") as store:
        assert store.ensure_collection(spec()) is False
        with pytest.raises(StoreError, match="built with another encoder"):
            store.ensure_collection(spec(encoder="another model"))


# ------------------------------------------------------------------------- no server needed


class _Answer401(http.server.BaseHTTPRequestHandler):
    """Answers 401 to everything, echoing the request's api-key header into the body (a worst case)."""

    def _reply(self) -> None:
        echoed = self.headers.get("api-key", "")
        body = f'{{"status": {{"error": "Invalid API key {echoed}"}}}}'.encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply

    def log_message(self, *args) -> None:
        pass


class _Answer400Echo(_Answer401):
    def _reply(self) -> None:
        if self.path == "/":
            body = b'{"title": "qdrant - vector search engine", "version": "1.20.0"}'
            self.send_response(200)
        else:
            body = f'{{"status": {{"error": "bad request from {self.headers.get("api-key")}"}}}}'.encode()
            self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply


class _OldServer(_Answer401):
    """A Qdrant 1.9 root endpoint (no Query API)."""

    def _reply(self) -> None:
        body = b'{"title": "qdrant - vector search engine", "version": "1.9.7"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _reply


def _serve(handler) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def answers_401() -> Iterator[str]:
    yield from _serve(_Answer401)


@pytest.fixture
def answers_400() -> Iterator[str]:
    yield from _serve(_Answer400Echo)


def test_too_old_server_is_refused():
    for url in _serve(_OldServer):
        with pytest.raises(StoreError) as err:
            open_store(url=url, api_key=API_KEY, collection="c", timeout=2)
        assert str(err.value) == f"Qdrant at {url} is version 1.9.7; hybrid-qdrant needs 1.11 or a newer 1.x"


def test_unreachable_server_fails_fast_with_one_line():
    start = time.perf_counter()
    with pytest.raises(StoreError) as err:
        open_store(url="http://127.0.0.1:1", collection="c", timeout=2)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert message.startswith("cannot reach Qdrant at http://127.0.0.1:1: ")
    assert "\n" not in message
    assert err.value.exit_code == 4


def test_rejected_key_is_reported_and_never_shown(answers_401, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as err:
        open_store(url=answers_401, api_key=API_KEY, collection="c", timeout=2)
    assert str(err.value) == f"Qdrant at {answers_401} rejected the API key (401)"
    for text in (str(err.value), repr(err.value), caplog.text):
        assert API_KEY not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained client error


def test_missing_key_says_how_to_set_it(answers_401):
    with pytest.raises(StoreError, match=r"requires an API key \(401\); set QDRANT_API_KEY"):
        open_store(url=answers_401, collection="c", timeout=2)


def test_key_echoed_by_the_server_is_scrubbed(answers_400, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as err:
        open_store(url=answers_400, api_key=API_KEY, collection="c", timeout=2)
    assert "failed: 400 bad request from ***" in str(err.value)
    assert API_KEY not in str(err.value) and API_KEY not in caplog.text


def test_repr_and_secret_hide_the_key():
    secret = Secret(API_KEY)
    assert API_KEY not in f"{secret} {secret!r} {secret:>40}" and secret.reveal() == API_KEY
    assert scrub(f"x {API_KEY} y", secret) == "x *** y"
    assert (
        redact_url("https://user:pw@host.example:6333/prefix/?token=1") == "https://host.example:6333/prefix"
    )


def test_bad_urls_are_refused():
    with pytest.raises(ValueError, match="http"):
        open_store(url="localhost:6333")
    with pytest.raises(ValueError, match="embedded"):
        open_store(url="http://localhost:6333", engine="edge")


def test_resolve_api_key_order(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n", encoding="utf-8")
    env = {"QDRANT_API_KEY": "from-env"}
    assert resolve_api_key("explicit", key_file, env) == "explicit"
    assert resolve_api_key(None, key_file, env) == "from-file"
    assert resolve_api_key(None, None, env) == "from-env"
    assert resolve_api_key(None, None, {}) is None
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_api_key(None, tmp_path / "missing", env)


# ------------------------------------------------------------------------- retries


def _response(status: int) -> Exception:
    from qdrant_client.http.exceptions import UnexpectedResponse

    return UnexpectedResponse(status, "x", b'{"status": {"error": "x"}}', httpx.Headers())


def test_retry_backs_off_exponentially_on_transient_errors():
    from hybrid_qdrant.store.server_errors import is_transient as _is_transient

    failures = [_response(503), _response(502)]
    delays: list[float] = []

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert call_with_retries(flaky, _is_transient, attempts=4, backoff=0.5, sleep=delays.append) == "ok"
    assert delays == [0.5, 1.0]


def test_retry_gives_up_and_does_not_retry_permanent_errors():
    from qdrant_client.http.exceptions import ResponseHandlingException

    from hybrid_qdrant.store.server_errors import is_transient as _is_transient

    assert _is_transient(_response(504)) and _is_transient(_response(429))
    assert _is_transient(ResponseHandlingException(httpx.ConnectError("refused")))
    assert _is_transient(ResponseHandlingException(httpx.ReadError("connection reset by peer")))
    assert _is_transient(ResponseHandlingException(httpx.ReadTimeout("slow")))
    assert not _is_transient(_response(400)) and not _is_transient(_response(401))
    calls: list[int] = []

    def always(status: int):
        def fn():
            calls.append(status)
            raise _response(status)

        return fn

    with pytest.raises(Exception, match="Unexpected Response: 503"):
        call_with_retries(always(503), _is_transient, attempts=3, sleep=lambda s: None)
    with pytest.raises(Exception, match="Unexpected Response: 401"):
        call_with_retries(always(401), _is_transient, attempts=3, sleep=lambda s: None)
    assert calls == [503, 503, 503, 401]


@pytest.mark.filterwarnings("ignore:Local mode performs exact")
def test_store_retries_a_search_through_the_client(monkeypatch):
    """A search that meets a 503 is retried and succeeds; the StoreError of a 400 carries no key."""
    from hybrid_qdrant.store.server import ServerStore

    store = ServerStore.local(":memory:", "c")
    fill(store, n=30)
    store.engine, store._secret, store.backoff = "server", Secret(API_KEY), 0.0  # as if remote
    real = store._client.query_batch_points
    failures = [_response(503)]

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(store._client, "query_batch_points", flaky)
    hits = store.search(CORPUS[1][:2], limit=3, lang="de")
    assert len(hits) == 2 and not failures

    def rejects(*args, **kwargs):
        raise _response(400)

    monkeypatch.setattr(store._client, "query_batch_points", rejects)
    with pytest.raises(StoreError, match="search on Qdrant at :memory: failed: 400 x"):
        store.search(CORPUS[1][:1], limit=3)
    store.close()


def test_spec_validation():
    with pytest.raises(ValueError, match="distance"):
        open_store(":memory:").ensure_collection(CollectionSpec(dim=4, distance="hamming"))
    with pytest.raises(ValueError, match="quantization"):
        open_store(":memory:", engine="client-local", quantization="pq")
    assert np.isfinite(CORPUS[1]).all()
