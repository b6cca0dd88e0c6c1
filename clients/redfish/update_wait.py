"""Waiting on an iDRAC that may reset itself under us (part of :mod:`clients.redfish.update`).

An iDRAC firmware update restarts the iDRAC: for minutes it refuses
connections, answers 503/500, 404 for jobs under TaskService, and then 401
for every old session (IDRAC.md). :func:`wait_through_resets` is
:func:`clients.polling.poll` plus the rules for which of those failures
mean "not yet".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from clients.errors import (
    AuthError,
    BusyError,
    DeadlineExceeded,
    NotFoundError,
    ProtocolError,
    RackflowError,
    ServerError,
    TlsError,
    TransportError,
)
from clients.polling import poll

__all__ = ["ExpectedPace", "ResetTolerance", "wait_through_resets"]

logger = logging.getLogger("rackflow.clients.redfish.update")

T = TypeVar("T")


class ResetTolerance:
    """Decide which errors mean "the iDRAC is resetting, ask again" during a wait.

    Connection errors, 5xx, 409/503 and 404 (TaskService drops the job while
    the iDRAC restarts) always do. After such an outage the iDRAC has dropped
    every session and may refuse a few logins (401) or answer garbage while
    it boots: those count as well, but only a few 401s in a row, so a wrong
    password is never hammered into an account lockout.
    """

    TRANSIENT = (TransportError, ServerError, BusyError, NotFoundError)
    MAX_AUTH_FAILURES = 3

    def __init__(self) -> None:
        self.outage = False
        self.auth_failures = 0
        self.last_error: RackflowError | None = None

    def absorb(self, exc: RackflowError) -> None:
        """Swallow a reset symptom (remembered for the deadline error); re-raise the rest.

        Args:
            exc: What the last read raised.

        Raises:
            RackflowError: ``exc`` itself when it is not a reset symptom.
        """
        if isinstance(exc, TlsError):
            raise exc  # a certificate does not become trusted by waiting
        if isinstance(exc, self.TRANSIENT):
            self.outage = True
            self.auth_failures = 0
        elif isinstance(exc, AuthError | ProtocolError) and self.outage:
            self.auth_failures += isinstance(exc, AuthError)
            if self.auth_failures > self.MAX_AUTH_FAILURES:
                raise exc
        else:
            raise exc
        logger.debug("waiting through a BMC outage: %s", exc)
        self.last_error = exc

    def recovered(self) -> None:
        """A read succeeded: 401s from here on are counted afresh."""
        self.auth_failures = 0


class ExpectedPace:
    """The sleep of a wait expected to end ``expect_s`` after it started: read more often then.

    Reading every ``interval_s`` only, a wait ends on average half an interval
    after the device got there. When the end can be expected (a rollout has
    seen the same stage on servers of the same model), the reads before it
    keep the regular pause, the ones from a quarter interval before it to
    half an interval after it come every quarter interval, and after that the
    regular pause applies again (this device is slower than its peers). Pass
    it as the ``sleep`` of :class:`~clients.redfish.update.DellUpdates`.

    Args:
        expect_s: Expected duration from now; None: the regular pause throughout.
        interval_s: The regular pause.
        clock: Monotonic clock.
        sleep: Async sleep.
    """

    def __init__(
        self,
        expect_s: float | None,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._fine = interval_s / 4
        self._window = (
            None if expect_s is None else (expect_s - self._fine, expect_s + interval_s / 2)
        )

    async def __call__(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the expected end is near.

        Args:
            seconds: The pause the poll asks for.
        """
        if self._window is not None:
            now = self._clock() - self._start
            opens, closes = self._window
            if now < opens:
                seconds = min(seconds, opens - now)
            elif now < closes:
                seconds = min(seconds, self._fine)
        await self._sleep(seconds)


async def wait_through_resets(
    fetch: Callable[[], Awaitable[T]],
    *,
    done: Callable[[T], bool],
    operation: Callable[[], str],
    timeout_s: float,
    interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    seen: Callable[[T], Awaitable[None]] | None = None,
) -> T:
    """Call ``fetch`` until ``done(value)``, tolerating the failures of a resetting iDRAC.

    Args:
        fetch: Reads the current state.
        done: True when the state is the one waited for.
        operation: Describes the wait (called again at the deadline, so it
            can name the last state seen).
        timeout_s: Deadline from the first call (monotonic ``clock``).
        interval_s: Pause between calls.
        clock: Monotonic clock.
        sleep: Async sleep.
        seen: Called with every successfully read value.

    Returns:
        The first value for which ``done`` holds.

    Raises:
        DeadlineExceeded: Not done in time; the last tolerated error is its ``__cause__``.
        RackflowError: An error that is not a reset symptom (see ResetTolerance).
    """
    tolerance = ResetTolerance()

    async def attempt() -> tuple[T] | None:
        try:
            value = await fetch()
        except RackflowError as exc:
            tolerance.absorb(exc)
            return None
        tolerance.recovered()
        if seen is not None:
            await seen(value)
        return (value,)

    try:
        result = await poll(
            attempt,
            until=lambda box: box is not None and done(box[0]),
            operation=operation(),
            timeout_s=timeout_s,
            interval_s=interval_s,
            clock=clock,
            sleep=sleep,
        )
    except DeadlineExceeded as exc:
        raise DeadlineExceeded(operation=operation(), waited_s=exc.waited_s) from (
            tolerance.last_error
        )
    if result is None:  # until() never accepts None; keeps the type checker honest
        raise DeadlineExceeded(operation=operation(), waited_s=0.0)
    return result[0]
