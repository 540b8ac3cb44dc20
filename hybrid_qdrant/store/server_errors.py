"""What a failed call to a Qdrant server means: retry it or not, and the one line that says so.

``is_transient`` decides whether the retry policy tries a call again (connection failures and resets,
timeouts, 429 / 502 / 503 / 504); ``store_error`` turns any failure into a one-line ``StoreError``
that names the server (never the key): a rejected or missing key (401 / 403), a call that did not
answer within its time, an unreachable server, or the server's own error text.
"""

from __future__ import annotations

import contextlib

import httpx
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from hybrid_qdrant.errors import StoreError
from hybrid_qdrant.store.connection import Secret, one_line, scrub

try:
    import grpc
except ImportError:  # pragma: no cover - grpcio comes with qdrant-client
    grpc = None

_TRANSIENT_STATUS = {429, 502, 503, 504}
_GRPC_STATUS = {
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def store_error(
    exc: BaseException,
    what: str,
    *,
    where: str,
    secret: Secret | None,
    api_key_env: str,
    grpc_port: int | None,
    attempt_limit: float,
    total_limit: float | None,
) -> StoreError:
    """The one-line, scrubbed StoreError for a failed call ``what`` to the server at ``where``."""
    status = status_of(exc)
    if status in (401, 403):
        if secret:
            message = f"Qdrant at {where} rejected the API key ({status})"
        else:
            message = (
                f"Qdrant at {where} requires an API key ({status}); set {api_key_env} or use --api-key-file"
            )
    elif is_timeout(exc):  # before "unreachable": a TLS handshake cut at the deadline is a ConnectError
        limit = f"{attempt_limit:g} s per attempt" + (
            f", {total_limit:g} s with retries" if total_limit else ""
        )
        message = f"Qdrant at {where} did not answer in time ({what}; {limit}; see --timeout)"
    elif is_unreachable(exc):
        port = f" (gRPC port {grpc_port})" if grpc_code(exc) else ""
        message = f"cannot reach Qdrant at {where}{port}: {reason(exc)}"
    else:
        message = f"{what} on Qdrant at {where} failed: {reason(exc)}"
    return StoreError(one_line(scrub(message, secret)))


def grpc_code(exc: BaseException) -> str | None:
    if grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        with contextlib.suppress(Exception):
            return exc.code().name
    return None


def status_of(exc: BaseException) -> int | None:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code
    if type(exc).__name__ == "ResourceExhaustedResponse" or "Retry-After header" in str(exc):
        return 429  # qdrant-client refuses a 429 whose Retry-After is a date
    code = grpc_code(exc)
    return _GRPC_STATUS.get(code) if code else None


def source_of(exc: BaseException) -> BaseException:
    return exc.source if isinstance(exc, ResponseHandlingException) else exc


def is_unreachable(exc: BaseException) -> bool:
    src = source_of(exc)
    return (
        isinstance(src, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError))
        or grpc_code(exc) == "UNAVAILABLE"
    )


def is_timeout(exc: BaseException) -> bool:
    """A timeout anywhere in the chain (httpx reports a TLS handshake that timed out as a ConnectError)."""
    if grpc_code(exc) == "DEADLINE_EXCEEDED":
        return True
    seen: set[int] = set()
    current: BaseException | None = source_of(exc)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (httpx.TimeoutException, TimeoutError)):
            return True
        if isinstance(current, httpx.ConnectError) and "timed out" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection failures and resets, timeouts, 429 / 502 / 503 / 504."""
    if is_transient_status_or_timeout(exc) or is_unreachable(exc):
        return True
    src = source_of(exc)
    return isinstance(src, (httpx.TransportError, ConnectionError)) and not isinstance(src, _NEVER_TRANSIENT)


def is_transient_status_or_timeout(exc: BaseException) -> bool:
    """429 / 502 / 503 / 504, a timeout, or a connection dropped after it was made (not a refusal)."""
    if status_of(exc) in _TRANSIENT_STATUS or is_timeout(exc):
        return True
    src = source_of(exc)
    return (
        isinstance(src, (httpx.TransportError, ConnectionError))
        and not is_unreachable(exc)
        and not isinstance(src, _NEVER_TRANSIENT)
    )


#: Transport errors that a retry cannot fix (a malformed request or URL on this side).
_NEVER_TRANSIENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def failure_kind(exc: BaseException) -> str:
    """A short name for a failure, safe to log: the HTTP status, gRPC code or exception type."""
    status = status_of(exc)
    if status is not None:
        return f"HTTP {status}"
    return grpc_code(exc) or type(source_of(exc)).__name__


def reason(exc: BaseException) -> str:
    """A short, single-line cause (the server's own error text where there is one)."""
    if isinstance(exc, UnexpectedResponse):
        detail = ""
        with contextlib.suppress(Exception):
            detail = exc.structured()["status"]["error"]
        return f"{exc.status_code} {detail or exc.reason_phrase}".strip()
    code = grpc_code(exc)
    if code:
        details = ""
        with contextlib.suppress(Exception):
            details = exc.details() or ""
        return f"{code} {details}".strip()
    src = source_of(exc)
    return str(src).strip() or type(src).__name__
