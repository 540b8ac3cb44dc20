"""A total time limit for each HTTP request to a Qdrant server, not just a limit per socket read.

httpx's timeouts apply to each socket operation: a server that trickles a byte a second keeps a request
alive indefinitely. ``deadline_transport`` builds an httpx transport whose network backend clips every
connect, read, write and TLS handshake to the time left before the deadline that ``deadline(seconds)``
sets for the current thread, and fails with the matching httpcore timeout once it has passed.
DNS resolution is the one step it cannot interrupt (the system resolver bounds it).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

logger = logging.getLogger(__name__)


class _Attempt:
    """One request's time limit, and the sockets it used (shut down if it overruns)."""

    __slots__ = ("expires", "sockets", "fired", "timer", "lock")

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self.sockets: list[socket.socket] = []
        self.fired = False
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down at the deadline if the request still runs (a backstop to clipping)."""
        if sock is None:
            return
        with self.lock:
            if sock not in self.sockets:
                self.sockets.append(sock)
            if self.timer is None and not self.fired:
                self.timer = threading.Timer(max(0.0, self.expires - time.monotonic()), self._fire)
                self.timer.daemon = True
                self.timer.start()

    def _fire(self) -> None:
        with self.lock:
            self.fired = True
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()


#: The request now running in this thread, or None.
_CURRENT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("hq_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Requests made in this block (this thread) end within ``seconds`` in total; yields the deadline."""
    attempt = _Attempt(time.monotonic() + seconds)
    token = _CURRENT.set(attempt)
    try:
        yield attempt.expires
    finally:
        _CURRENT.reset(token)
        attempt.cancel()


def _clip(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``expired`` raised when none is left."""
    attempt = _CURRENT.get()
    if attempt is None:
        return timeout
    left = attempt.expires - time.monotonic()
    if left <= 0 or attempt.fired:
        raise expired("the request took longer than its total time limit")
    return left if timeout is None else min(timeout, left)


@contextlib.contextmanager
def _overrun(expired: type[Exception]) -> Iterator[None]:
    """Report an operation broken by the deadline backstop as a timeout, not as a dropped connection."""
    try:
        yield
    except Exception:
        attempt = _CURRENT.get()
        if attempt is not None and attempt.fired:
            raise expired("the request took longer than its total time limit") from None
        raise


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation is clipped to the current deadline.

    Clipping bounds each socket call; a call that makes progress byte by byte inside one operation (a
    trickled TLS handshake, a large write to a slow reader) is stopped by shutting the socket down at the
    deadline.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _watch(self) -> None:
        attempt = _CURRENT.get()
        if attempt is not None:
            attempt.watch(self._inner.get_extra_info("socket"))

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left = _clip(timeout, httpcore.ReadTimeout)
        self._watch()
        with _overrun(httpcore.ReadTimeout):
            data = self._inner.read(max_bytes, left)
        attempt = _CURRENT.get()
        if not data and attempt is not None and attempt.fired:
            raise httpcore.ReadTimeout("the request took longer than its total time limit")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = _clip(timeout, httpcore.WriteTimeout)
        self._watch()
        with _overrun(httpcore.WriteTimeout):
            self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = _clip(timeout, httpcore.ConnectTimeout)
        self._watch()
        with _overrun(httpcore.ReadTimeout):  # connected, but the server does not finish the handshake
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps a network backend: connections are made and used within the current deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to each address of ``host`` in turn, all within the deadline (not each in full)."""
        if _CURRENT.get() is None:
            return DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))
        try:
            addresses = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        error: Exception | None = None
        for address in dict.fromkeys(addresses):
            left = _clip(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(address, port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return DeadlineStream(stream)
        raise error if error is not None else httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _clip(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _environment_proxy(url: str) -> str | None:
    """The proxy httpx would take from the environment for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if parts.hostname and urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all") or None


def deadline_transport(url: str) -> httpx.HTTPTransport | None:
    """An httpx transport for ``url`` that honours ``deadline``; None if this httpx cannot take one.

    Passing a transport turns off httpx's environment proxies, so the proxy for ``url`` is set here.
    """
    transport = httpx.HTTPTransport(proxy=_environment_proxy(url))
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, httpcore.NetworkBackend):
        logger.warning(
            "httpx %s: cannot install the per-request time limit; --timeout applies to each read only",
            httpx.__version__,
        )
        return None
    pool._network_backend = DeadlineBackend(backend)
    return transport
