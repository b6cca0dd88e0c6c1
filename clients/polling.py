"""Waiting on devices: one polling helper with a monotonic deadline.

Every wait in rackflow goes through :func:`poll`, so every wait has a
deadline, tolerates the failures it is told to (an iDRAC resetting itself
mid-update drops connections for minutes), and ends in
:class:`~clients.errors.DeadlineExceeded` naming what it waited for.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from clients.errors import DeadlineExceeded, PreconditionError

__all__ = ["parse_retry_after", "poll"]

T = TypeVar("T")

_DELTA_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read an HTTP ``Retry-After`` header.

    Headers are strings: ``"120"`` is 120 seconds, and an HTTP-date counts
    from ``now``. (sushy once compared the raw header with an int.)

    Args:
        value: The header value, or None when absent.
        now: Reference time for HTTP-dates; defaults to the current UTC time.
            A naive datetime is taken as UTC.

    Returns:
        Seconds to wait (never negative; a date in the past gives 0), or None
        for an absent or unparseable header.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # Python < 3.10 returned None for garbage; keep the guard.
        return None
    reference = now or datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - reference).total_seconds())


async def poll(
    fetch: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool],
    operation: str,
    timeout_s: float,
    interval_s: float = 2.0,
    tolerate: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call ``fetch`` until ``until(result)`` holds or the deadline passes.

    ``fetch`` is always called at least once. The deadline is measured on
    ``clock`` (monotonic by default); the last sleep is shortened so the
    wait does not overshoot it. ``fetch`` must bound its own duration (HTTP
    clients have timeouts): a hanging ``fetch`` is not interrupted.

    Args:
        fetch: Reads the current state (e.g. a job's status).
        until: True when the state is the one waited for.
        operation: What is being waited for, for the error message.
        timeout_s: Deadline in seconds from the first call.
        interval_s: Pause between calls.
        tolerate: Exception types that mean "not yet" (e.g. TransportError
            while an iDRAC resets); any other exception propagates at once.
        clock: Monotonic clock, injectable for tests.
        sleep: Async sleep, injectable for tests.

    Returns:
        The first result for which ``until`` was true.

    Raises:
        DeadlineExceeded: Not done by the deadline. When the last call failed
            with a tolerated error, that error is chained as ``__cause__``.
        PreconditionError: ``timeout_s`` negative or ``interval_s`` not positive.
    """
    if not timeout_s >= 0:
        raise PreconditionError(subject="timeout_s", reason=f"must be >= 0, got {timeout_s}")
    if not interval_s > 0:
        raise PreconditionError(subject="interval_s", reason=f"must be > 0, got {interval_s}")
    start = clock()
    deadline = start + timeout_s
    while True:
        last_error: BaseException | None = None
        try:
            value = await fetch()
        except tolerate as exc:
            last_error = exc
        else:
            if until(value):
                return value
        now = clock()
        remaining = deadline - now
        if remaining <= 0:
            raise DeadlineExceeded(operation=operation, waited_s=now - start) from last_error
        await sleep(min(interval_s, remaining))
