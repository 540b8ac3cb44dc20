"""Each server call, retries included, ends within (retries + 1) x timeout: servers that trickle bytes,
withhold the answer or stall a TLS handshake get a one-line StoreError in time (127.0.0.1 only)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fake_qdrant import serve
from store_contract import CORPUS, fill

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store import open_store
from hybrid_qdrant.store.retry import call_with_retries
from hybrid_qdrant.store.server import ServerStore  # noqa: F401  (imported now, not inside a timed call)

TIMEOUT = 0.3
RETRIES = 2
BOUND = (RETRIES + 1) * TIMEOUT  # the documented bound for one call
SLACK = 1.0  # scheduling on a loaded 2-core machine, not part of the promise


def _fails_in_time(call, what: str) -> StoreError:
    start = time.monotonic()
    with pytest.raises(StoreError) as err:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < BOUND + SLACK, f"{what}: {elapsed:.2f} s, bound {BOUND} s"
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 4
    assert "did not answer in time" in message, message
    return err.value


@pytest.mark.parametrize("action", ["trickle", "trickle-body", "hang"])
def test_first_contact_ends_within_the_bound(action):
    with serve() as (url, fake):
        fake.fault = lambda method, path, body, seen: action
        error = _fails_in_time(
            lambda: open_store(url=url, collection="c", timeout=TIMEOUT, retries=RETRIES, backoff=0.05),
            action,
        )
        limits = "0.3 s per attempt, 0.9 s with retries"
        assert str(error) == f"Qdrant at {url} did not answer in time (connecting; {limits}; see --timeout)"
        assert fake.requests.count(("GET", "/")) == RETRIES + 1  # timeouts are retried, within the bound


@pytest.mark.parametrize(
    ("call", "action"),
    [("count", "trickle"), ("search", "hang"), ("upsert", "trickle-body"), ("scroll", "trickle")],
)
def test_every_call_ends_within_the_bound(call, action):
    doc_ids, vectors, payloads = CORPUS
    with serve() as (url, fake):
        store = fill(open_store(url=url, collection="c", timeout=5, retries=RETRIES, backoff=0.05), n=30)
        store.timeout = TIMEOUT  # set up at ease, then time the one call
        slow = {
            "count": "/points/count",
            "search": "/points/query/batch",
            "upsert": "/points",
            "scroll": "/points/scroll",
        }[call]
        fake.fault = lambda method, path, body, seen: action if path.endswith(slow) else None
        run = {
            "count": store.count,
            "search": lambda: store.search(vectors[:2], limit=3),
            "upsert": lambda: store.upsert(doc_ids[30:40], vectors[30:40], payloads[30:40]),
            "scroll": store.doc_ids,
        }[call]
        _fails_in_time(run, f"{call} / {action}")
        store.close()


@contextmanager
def _stalled_tls_server() -> Iterator[int]:
    """Accepts TLS connections and answers the ClientHello with a record header, then one byte a tenth of
    a second: the handshake never completes, yet each socket read returns data."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(4096)
                conn.sendall(b"\x16\x03\x03\x40\x00")  # handshake record of 16 KiB
                while not stop.wait(0.1):
                    conn.sendall(b"\x00")
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()


def test_a_stalled_tls_handshake_ends_within_the_bound():
    with _stalled_tls_server() as port:
        _fails_in_time(
            lambda: open_store(
                url=f"https://127.0.0.1:{port}",
                collection="c",
                timeout=TIMEOUT,
                retries=RETRIES,
                backoff=0.05,
            ),
            "tls",
        )


def test_a_slow_but_steady_server_is_not_cut_short():
    """The limit is per attempt: answers that take most of it still succeed."""
    with serve() as (url, fake):
        fake.trickle_delay = 0.002  # the root answer (about 140 bytes) takes about 0.3 s
        fake.fault = lambda method, path, body, seen: "trickle" if path == "/" else None
        with open_store(url=url, collection="c", timeout=2, retries=0) as store:
            assert store.collections() == []


def test_retries_stay_within_the_budget():
    """No wait or retry starts that would end after the budget; Retry-After is honoured up to the cap."""
    now = [0.0]
    waits: list[float] = []
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    def always_fails() -> None:
        starts.append(now[0])
        now[0] += 1.0  # each attempt uses 1 s (the store clips the last one to the time left)
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        call_with_retries(
            always_fails,
            lambda e: True,
            attempts=10,
            backoff=0.5,
            sleep=sleep,
            budget=4.0,
            clock=lambda: now[0],
        )
    assert waits == [0.5, 1.0] and starts == [0.0, 1.5, 3.5]  # a 2 s wait would end past the budget
    now[0], starts[:], waits[:] = 0.0, [], []
    with pytest.raises(TimeoutError):  # attempts that cannot be cut short start only if they fit
        call_with_retries(
            always_fails, lambda e: True, 10, 0.5, sleep=sleep, budget=4.0, clock=lambda: now[0], reserve=1.0
        )
    assert starts == [0.0, 1.5] and now[0] <= 4.0

    class Busy(Exception):
        retry_after_s = 3

    calls = []

    def busy_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Busy()
        return "ok"

    waits.clear()
    assert call_with_retries(busy_once, lambda e: True, backoff=0.1, sleep=sleep) == "ok"
    assert waits == [3.0]
