"""Bounded retries with exponential backoff for transient server failures, within a total time budget."""

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
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    describe: Callable[[BaseException], str] | None = None,
    reserve: float = 0.0,
) -> T:
    """Call ``fn``; on a transient error wait ``backoff * 2**i`` (capped) and try again, ``attempts`` in all.

    Args:
        budget: seconds the whole call may take, waits included: no retry starts (and no wait is made)
            that would end after it; the caller bounds each attempt to the time left.
        describe: a short, secret-free name for a failure (default: the exception type).
        reserve: time a retry must have left after its wait (an attempt the caller cannot cut short).

    Only ``describe``'s text is logged, never the message: messages may quote request headers.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    ends = None if budget is None else clock() + budget
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt + 1 >= attempts or not is_transient(exc):
                raise
            delay = min(max_delay, backoff * 2**attempt)
            hint = getattr(exc, "retry_after_s", None)  # a 429 with Retry-After
            if isinstance(hint, (int, float)) and 0 < hint <= max_delay:
                delay = max(delay, float(hint))
            kind = describe(exc) if describe else type(exc).__name__
            if ends is not None and clock() + delay + reserve >= ends:
                logger.warning("%s failed (%s); no time left to retry", what, kind)
                raise
            logger.warning(
                "%s failed (%s); retry %d of %d in %.1f s",
                what,
                kind,
                attempt + 1,
                attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
