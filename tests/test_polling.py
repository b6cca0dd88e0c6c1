"""Tests for clients.polling: Retry-After parsing and the deadline-bound poll loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from clients.errors import DeadlineExceeded, PreconditionError, TransportError
from clients.polling import parse_retry_after, poll


class FakeTime:
    """A clock and a sleep that advance together, without waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- parse_retry_after ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("1.5", 1.5)],
)
def test_retry_after_delta_seconds_from_string(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1e3", "9" * 400, "12abc"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_http_date_counts_from_now() -> None:
    now = datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert header.endswith("GMT")
    assert parse_retry_after(header, now=now) == 90.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    now = datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0


def test_retry_after_naive_now_is_utc() -> None:
    naive = datetime(2026, 11, 21, 6, 0, 0)
    assert parse_retry_after("Sat, 21 Nov 2026 06:00:30 GMT", now=naive) == 30.0


# -- poll ------------------------------------------------------------------------------


async def test_poll_returns_first_value_meeting_the_condition() -> None:
    t = FakeTime()
    values = iter(["Running", "Running", "Completed", "never read"])

    async def fetch() -> str:
        return next(values)

    result = await poll(
        fetch,
        until=lambda s: s == "Completed",
        operation="job JID_1",
        timeout_s=60,
        interval_s=5,
        clock=t.clock,
        sleep=t.sleep,
    )
    assert result == "Completed"
    assert t.sleeps == [5, 5]


async def test_poll_deadline_names_operation_and_does_not_overshoot() -> None:
    t = FakeTime()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return calls

    with pytest.raises(DeadlineExceeded) as info:
        await poll(
            fetch,
            until=lambda n: False,
            operation="power on",
            timeout_s=12,
            interval_s=5,
            clock=t.clock,
            sleep=t.sleep,
        )
    assert info.value.operation == "power on"
    assert info.value.waited_s == pytest.approx(12)
    assert t.sleeps == [5, 5, 2]  # last sleep shortened to the deadline
    assert calls == 4
    assert info.value.__cause__ is None
    assert "power on" in str(info.value)


async def test_poll_tolerates_listed_errors_and_chains_the_last() -> None:
    t = FakeTime()
    attempts = 0

    async def fetch() -> str:
        nonlocal attempts
        attempts += 1
        raise TransportError(target="https://127.10.0.1", reason=f"reset #{attempts}")

    with pytest.raises(DeadlineExceeded) as info:
        await poll(
            fetch,
            until=lambda s: True,
            operation="iDRAC back",
            timeout_s=10,
            interval_s=4,
            tolerate=(TransportError,),
            clock=t.clock,
            sleep=t.sleep,
        )
    cause = info.value.__cause__
    assert isinstance(cause, TransportError)
    assert cause.reason == f"reset #{attempts}"
    assert attempts == 4


async def test_poll_recovers_after_tolerated_errors() -> None:
    t = FakeTime()
    script: list[str | Exception] = [
        TransportError(target="x", reason="refused"),
        TransportError(target="x", reason="refused"),
        "Ready",
    ]

    async def fetch() -> str:
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    result = await poll(
        fetch,
        until=lambda s: s == "Ready",
        operation="lc ready",
        timeout_s=30,
        interval_s=3,
        tolerate=(TransportError,),
        clock=t.clock,
        sleep=t.sleep,
    )
    assert result == "Ready"
    assert t.sleeps == [3, 3]


async def test_poll_propagates_untolerated_errors_at_once() -> None:
    t = FakeTime()

    async def fetch() -> str:
        raise KeyError("PercentComplete")

    with pytest.raises(KeyError):
        await poll(
            fetch,
            until=lambda s: True,
            operation="job",
            timeout_s=30,
            tolerate=(TransportError,),
            clock=t.clock,
            sleep=t.sleep,
        )
    assert t.sleeps == []


async def test_poll_with_zero_timeout_tries_once() -> None:
    t = FakeTime()
    calls = 0

    async def fetch() -> bool:
        nonlocal calls
        calls += 1
        return False

    with pytest.raises(DeadlineExceeded):
        await poll(fetch, until=bool, operation="x", timeout_s=0, clock=t.clock, sleep=t.sleep)
    assert calls == 1
    assert t.sleeps == []


@pytest.mark.parametrize(("timeout_s", "interval_s"), [(-1, 1), (10, 0), (10, -2)])
async def test_poll_rejects_bad_arguments(timeout_s: float, interval_s: float) -> None:
    async def fetch() -> bool:
        return True

    with pytest.raises(PreconditionError):
        await poll(fetch, until=bool, operation="x", timeout_s=timeout_s, interval_s=interval_s)


async def test_poll_with_real_clock_and_sleep() -> None:
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return calls

    with pytest.raises(DeadlineExceeded) as info:
        await poll(fetch, until=lambda n: False, operation="real", timeout_s=0.05, interval_s=0.01)
    assert 0.05 <= info.value.waited_s < 1.0
    assert calls >= 2
