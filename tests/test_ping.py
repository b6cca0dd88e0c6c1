"""Reachability checks against reboot-lab machines over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow

from clients.errors import DeadlineExceeded, PreconditionError
from clients.ping import (
    CheckPlan,
    Reachability,
    icmp_mode,
    icmp_usable,
    ping,
    plan_check,
    wait_for_reachability,
)
from lab.machines import MachineLab
from tasks import ping as ping_tasks

NAME = "m1.lab.test"
needs_icmp = pytest.mark.skipif(icmp_mode() is None, reason="ICMP sockets not permitted here")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MachineLab]:
    specs = MachineLab.generate(1, subnet="127.78.21.0/24", shutdown_s=0.3, boot_s=0.5)
    with MachineLab(machines=specs, state_dir=tmp_path) as machines:
        yield machines


def where(lab: MachineLab) -> tuple[str, int]:
    return lab.machine(NAME).spec.address, lab.ping_port(NAME)


async def test_tcp_ping_of_an_up_machine_answers_with_a_round_trip_time(lab: MachineLab) -> None:
    address, port = where(lab)
    answer = await ping(address, port=port)  # auto with a port: TCP
    assert answer == Reachability(address, port, "tcp", True, rtt_ms=answer.rtt_ms)
    assert answer.rtt_ms is not None and 0 < answer.rtt_ms < 1000


async def test_tcp_ping_of_a_machine_that_is_off_is_refused(lab: MachineLab) -> None:
    address, port = where(lab)
    lab.act(NAME, "off")
    answer = await ping(address, port=port, method="tcp", timeout_s=1.0)
    assert (answer.reachable, answer.error, answer.rtt_ms) == (False, "connection refused", None)
    lab.act(NAME, "on")
    lab.wait_answering(NAME, True, timeout_s=5)
    assert (await ping(address, port=port, method="tcp")).reachable


@needs_icmp
async def test_icmp_ping_of_loopback_answers() -> None:
    answer = await ping("127.0.0.1")  # auto without a port: ICMP where permitted
    assert (answer.method, answer.reachable, answer.port, answer.error) == (
        "icmp",
        True,
        None,
        None,
    )
    assert answer.rtt_ms is not None and answer.rtt_ms < 1000
    several = await asyncio.gather(*(ping(f"127.0.0.{i}", method="icmp") for i in range(1, 5)))
    assert all(a.reachable for a in several)


async def test_bad_requests_are_refused_before_any_packet() -> None:
    with pytest.raises(PreconditionError, match="needs a port"):
        await ping("127.0.0.1", method="tcp")
    with pytest.raises(PreconditionError, match="port"):
        await ping("127.0.0.1", port=0)
    with pytest.raises(PreconditionError, match="timeout_s"):
        await ping("127.0.0.1", port=22, timeout_s=0)
    with pytest.raises(PreconditionError, match="method"):
        await ping("127.0.0.1", port=22, method="udp")  # type: ignore[arg-type]
    if icmp_mode() is not None:
        with pytest.raises(PreconditionError, match="IPv4 address"):
            await ping("localhost", method="icmp")


async def test_wait_for_reachability_follows_a_reboot(lab: MachineLab) -> None:
    address, port = where(lab)
    already = await wait_for_reachability(
        address, port=port, method="tcp", reachable=True, deadline_s=5, interval_s=0.02
    )
    assert already < 0.2
    lab.act(NAME, "reboot")
    down = await wait_for_reachability(
        address, port=port, method="tcp", reachable=False, deadline_s=5, interval_s=0.02
    )
    up = await wait_for_reachability(
        address, port=port, method="tcp", reachable=True, deadline_s=5, interval_s=0.02
    )
    # Lower bounds: it answered until shutdown_s 0.3 / came back after boot_s 0.5; upper
    # bounds only catch a wait that never ended (generous: a loaded CI machine).
    assert 0.2 <= down < 5.0
    assert 0.4 <= up < 5.0
    assert lab.snapshot(NAME)["cycles"] == 1


async def test_wait_for_reachability_raises_at_the_deadline(lab: MachineLab) -> None:
    address, port = where(lab)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        await wait_for_reachability(
            address, port=port, method="tcp", reachable=False, deadline_s=0.3, interval_s=0.05
        )
    assert 0.3 <= time.monotonic() - start < 1.5
    assert caught.value.waited_s >= 0.3
    assert f"{address}:{port} unreachable" in str(caught.value)


async def test_wait_for_reachability_uses_the_injected_clock_and_sleep(lab: MachineLab) -> None:
    address, port = where(lab)
    now = [100.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        await wait_for_reachability(
            address,
            port=port,
            method="tcp",
            reachable=False,
            deadline_s=10,
            interval_s=3,
            clock=lambda: now[0],
            sleep=fake_sleep,
        )
    assert sleeps == [3, 3, 3, 1]  # the last sleep is cut to the deadline
    assert caught.value.waited_s == 10
    assert time.monotonic() - start < 5  # five real probes, no real sleeping (30 s if it slept)


def no_icmp() -> None:
    """The capability probe of a worker that may not send ICMP (not root, no ping group)."""
    return None


def raw_icmp() -> str:
    """The capability probe of a worker running as root."""
    return "raw"


async def test_without_icmp_the_check_falls_back_to_tcp_and_follows_the_machine(
    lab: MachineLab,
) -> None:
    address, port = where(lab)
    assert not icmp_usable(address, probe=no_icmp)
    plan = plan_check(address, fallback_port=port, probe=no_icmp)  # auto, no port configured
    assert (plan.method, plan.port) == ("tcp", port)
    assert "ICMP sockets are not permitted here" in plan.note and f"port {port}" in plan.note
    answer = await ping(address, port=plan.port, method=plan.method)
    assert (answer.method, answer.reachable) == ("tcp", True)
    lab.act(NAME, "off")
    assert not (await ping(address, port=plan.port, method=plan.method, timeout_s=1)).reachable


def test_check_plans_before_anything_is_sent() -> None:
    assert plan_check("10.1.2.3", probe=raw_icmp) == CheckPlan("icmp", None)
    assert plan_check("10.1.2.3", port=22, probe=raw_icmp) == CheckPlan("tcp", 22)  # a port: TCP
    assert plan_check("10.1.2.3", method="tcp", port=7, probe=no_icmp) == CheckPlan("tcp", 7)
    by_name = plan_check("web01.example.com", fallback_port=22, probe=raw_icmp)
    assert (by_name.method, by_name.port) == ("tcp", 22)
    assert "ICMP needs an IPv4 address" in by_name.note
    with pytest.raises(PreconditionError, match="no TCP port is known"):
        plan_check("10.1.2.3", probe=no_icmp)
    with pytest.raises(PreconditionError, match="cannot ping over ICMP: ICMP sockets are not"):
        plan_check("10.1.2.3", method="icmp", fallback_port=22, probe=no_icmp)
    with pytest.raises(PreconditionError, match="needs a port"):
        plan_check("10.1.2.3", method="tcp", probe=raw_icmp)


@flow
async def check(address: str, port: int) -> Reachability:
    return await ping_tasks.check_reachable(address, port=port, method="tcp")


@flow
async def wait_until(address: str, port: int, reachable: bool) -> float:
    return await ping_tasks.wait_for_reachability(
        address, port=port, method="tcp", reachable=reachable, deadline_s=5, interval_s=0.02
    )


async def test_ping_tasks_in_flows(prefect_harness: None, lab: MachineLab) -> None:
    address, port = where(lab)
    first = await check(address, port)
    assert (first.reachable, first.method, first.port) == (True, "tcp", port)
    assert first.rtt_ms is not None
    lab.act(NAME, "off")
    assert await wait_until(address, port, False) < 1
    assert lab.snapshot(NAME)["answering"] is False
    lab.act(NAME, "on")  # answers again after boot_s (0.5 s)
    assert await wait_until(address, port, True) < 3
    assert lab.snapshot(NAME)["answering"] is True
    with pytest.raises(DeadlineExceeded):
        await ping_tasks.wait_for_reachability.fn(
            address, port=port, method="tcp", reachable=False, deadline_s=0.1, interval_s=0.05
        )
