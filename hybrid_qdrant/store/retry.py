"""Bounded retries with exponential backoff for transient server failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def call_with_retries(
    fn: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    attempts: int = 4,
    backoff: float = 0.5,
    max_delay: float = 8.0,
    what: str = "request",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on a transient error wait ``backoff * 2**i`` (capped) and try again, ``attempts`` in all.

    Only the exception type is logged: messages may quote request headers.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt + 1 >= attempts or not is_transient(exc):
                raise
            delay = min(max_delay, backoff * 2**attempt)
            logger.warning(
                "%s failed (%s); retry %d of %d in %.1f s",
                what,
                type(exc).__name__,
                attempt + 1,
                attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
