"""The escalating reboot chain: try reboot methods in turn until the machine really cycled.

A method "worked" only when the machine was seen to go down and come back:
it must stop answering within ``down_s`` and answer again within ``up_s``
(a machine that was not answering to begin with only has to come up). Every
attempt is recorded (time, method, outcome, error) in the result and in a
table artifact ``reboot-attempts-<machine>`` (one key per machine) updated
after each attempt, so a run that is stopped or dies still shows what it did.
A stop request (tasks/cancel.py) is honoured between methods and while
waiting for the machine, never inside a method (a PDU left off between "off"
and "on" is worse than a late stop).

How the machine is watched is decided before its lease is taken
(:mod:`flows.reboot_watch`). Every method call is bounded by
``ChainDeadlines.method_s``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

from prefect import get_run_logger
from prefect.artifacts import acreate_table_artifact
from pydantic import BaseModel, Field

from clients.errors import DeadlineExceeded, RackflowError
from clients.inventory import ServerRecord
from clients.inventory.access import MachineAccess
from flows.reboot_watch import Target, observe, ping_target, watch_target
from tasks.cancel import stop_requested
from tasks.ilo import ilo_reboot
from tasks.ipmi import ipmi_reboot
from tasks.pdu import snmp_reboot
from tasks.ping import wait_for_reachability
from tasks.ssh import ssh_reboot
from tasks.xen import xenapi_reboot

__all__ = [
    "DEFAULT_METHODS",
    "PATH_OF",
    "Attempt",
    "ChainDeadlines",
    "RebootMethod",
    "RebootResult",
    "Target",
    "attempts_key",
    "ping_target",
    "run_chain",
    "watch_target",
]

_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")


class RebootMethod(StrEnum):
    """One way to reboot a machine (the inventory path it needs in brackets)."""

    SSH = "ssh"  # ssh: `reboot`, then `shutdown -r now`
    IPMI_RESET = "ipmi-reset"  # ipmi: chassis power reset
    IPMI_CYCLE = "ipmi-cycle"  # ipmi: chassis power cycle
    SNMP = "snmp"  # pdu: outlet reboot
    ILO = "ilo"  # ilo: GracefulRestart, ForceRestart after a deadline
    XEN = "xen"  # xen: clean shutdown (hard fallback), start


DEFAULT_METHODS: tuple[RebootMethod, ...] = (
    RebootMethod.SSH,
    RebootMethod.IPMI_RESET,
    RebootMethod.IPMI_CYCLE,
    RebootMethod.SNMP,
)

PATH_OF = {
    RebootMethod.SSH: "ssh",
    RebootMethod.IPMI_RESET: "ipmi",
    RebootMethod.IPMI_CYCLE: "ipmi",
    RebootMethod.SNMP: "pdu",
    RebootMethod.ILO: "ilo",
    RebootMethod.XEN: "xen",
}


class Outcome(StrEnum):
    """What one attempt came to."""

    REBOOTED = "rebooted"
    FAILED = "failed"  # the method itself raised (auth, unreachable, refused)
    NOT_DOWN = "did-not-go-down"
    NOT_UP = "did-not-come-back"
    SKIPPED = "skipped"  # the machine has no configuration for it
    STOPPED = "stopped"  # a stop request arrived


class ChainDeadlines(BaseModel):
    """How long a machine may take; defaults sized for real servers (long POSTs)."""

    down_s: float = Field(default=300.0, gt=0, description="Time to stop answering.")
    up_s: float = Field(default=1200.0, gt=0, description="Time to answer again.")
    poll_s: float = Field(default=5.0, gt=0, description="Reachability check interval.")
    method_s: float = Field(
        default=600.0,
        gt=0,
        description="Budget of every method call, its retries included: a call still running "
        "then counts as failed and the next method runs (work it started in a thread, e.g. an "
        "SSH command, may still finish later). iLO and Xen give their graceful step half of "
        "it; a PDU switched off/on gets its off delay on top.",
    )
    command_s: float = Field(
        default=20.0, gt=0, description="Limit of each SSH reboot command (reboot, shutdown)."
    )


class Attempt(BaseModel):
    """One method tried on the machine."""

    method: str
    started_at: datetime
    duration_s: float
    outcome: Outcome
    detail: str = ""
    error: str | None = None


class RebootResult(BaseModel):
    """What the chain did: which method worked (if any), and every attempt."""

    machine: str
    rebooted: bool = False
    method: str | None = None
    duration_s: float = 0.0
    attempts: list[Attempt] = Field(default_factory=list)
    stopped: str | None = None
    bug_url: str | None = None
    bug_error: str | None = None

    def log(self) -> str:
        """The attempts as plain text (for a bug report)."""
        lines = [
            f"{a.started_at:%Y-%m-%d %H:%M:%S}Z {a.method:<11} {a.outcome.value:<18} "
            f"{a.duration_s:7.1f} s  {a.error or a.detail}"
            for a in self.attempts
        ]
        return "\n".join(lines) or "(no attempt)"


def method_call(
    method: RebootMethod, access: MachineAccess, deadlines: ChainDeadlines
) -> Callable[[], Awaitable[str]] | None:
    """The task call for a method, or None when the machine lacks its configuration."""
    if method is RebootMethod.SSH and access.ssh:
        ssh = access.ssh
        return lambda: ssh_reboot(
            ssh.host, port=ssh.port, user=ssh.user, credentials=ssh.credentials,
            windows=ssh.windows, command_timeout_s=deadlines.command_s,
        )  # fmt: skip
    if method in (RebootMethod.IPMI_RESET, RebootMethod.IPMI_CYCLE) and access.ipmi:
        ipmi, mode = access.ipmi, method.value.removeprefix("ipmi-")
        return lambda: ipmi_reboot(
            ipmi.address, port=ipmi.port, credentials=ipmi.credentials, mode=mode
        )
    if method is RebootMethod.SNMP and access.pdu:
        pdu = access.pdu
        return lambda: snmp_reboot(
            pdu.host, port=pdu.port or 161, credentials=pdu.credentials, model=pdu.model,
            outlet=pdu.outlet, mode=pdu.mode, off_delay_s=pdu.off_delay_s,
        )  # fmt: skip
    if method is RebootMethod.ILO and access.ilo:
        ilo = access.ilo
        return lambda: ilo_reboot(
            ilo.address, port=ilo.port, credentials=ilo.credentials,
            force_after_s=min(deadlines.method_s / 2, deadlines.down_s),
        )  # fmt: skip
    if method is RebootMethod.XEN and access.xen:
        xen = access.xen
        return lambda: xenapi_reboot(
            xen.vm_uuid, credentials=xen.credentials, shutdown_timeout_s=deadlines.method_s / 2
        )
    return None


def method_budget(method: RebootMethod, access: MachineAccess, deadlines: ChainDeadlines) -> float:
    """Seconds one method call may take: ``method_s``, plus a PDU's off delay in off/on mode.

    The delay is added so the budget is not spent while the outlet is off
    (cutting the call between "off" and "on" would leave the machine unpowered).
    """
    if method is RebootMethod.SNMP and access.pdu and access.pdu.mode == "off_on":
        return deadlines.method_s + access.pdu.off_delay_s
    return deadlines.method_s


async def _bounded(method: RebootMethod, call: Callable[[], Awaitable[str]], budget: float) -> str:
    """Run a method call for at most ``budget`` seconds (retries included).

    Cancelling stops the task's coroutine (its task run ends Crashed); a
    blocking call it runs in a thread (paramiko, pyghmi, XenAPI) cannot be
    killed and may still finish later, bounded only by its own socket timeouts.

    Raises:
        DeadlineExceeded: The call did not return within the budget.
    """
    scope = asyncio.timeout(budget)
    try:
        async with scope:
            return await call()
    except TimeoutError:
        if not scope.expired():
            raise  # the call's own timeout, not the budget
        raise DeadlineExceeded(
            operation=f"{method.value} call (deadlines.method_s budget; work it started in a "
            "thread may still finish later)",
            waited_s=budget,
        ) from None


async def _attempt(
    method: RebootMethod,
    call: Callable[[], Awaitable[str]],
    target: Target,
    deadlines: ChainDeadlines,
    budget: float,
) -> Attempt:
    started_at, started = datetime.now(UTC), time.monotonic()

    def done(outcome: Outcome, detail: str = "", error: str | None = None) -> Attempt:
        return Attempt(
            method=method.value, started_at=started_at, duration_s=time.monotonic() - started,
            outcome=outcome, detail=detail, error=error,
        )  # fmt: skip

    was_up = True
    try:
        await wait_for_reachability(
            target.address, port=target.ping.port, method=target.ping.method, reachable=True,
            deadline_s=deadlines.poll_s, interval_s=deadlines.poll_s,
        )  # fmt: skip
    except DeadlineExceeded:
        was_up = False  # already down: the method only has to bring it back
    try:
        detail = await _bounded(method, call, budget)
    except RackflowError as exc:
        return done(Outcome.FAILED, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a missing block: this method failed, go on
        return done(Outcome.FAILED, error=f"{type(exc).__name__}: {exc}")
    if was_up:
        try:
            stop = await observe(
                target, reachable=False, deadline_s=deadlines.down_s, poll_s=deadlines.poll_s
            )
        except DeadlineExceeded:
            why = f"still answering {deadlines.down_s:.0f} s after the method returned"
            return done(Outcome.NOT_DOWN, detail, why)
        if stop:
            return done(Outcome.STOPPED, detail, f"{stop} before the machine went down")
    try:
        stop = await observe(
            target, reachable=True, deadline_s=deadlines.up_s, poll_s=deadlines.poll_s
        )
    except DeadlineExceeded:
        return done(Outcome.NOT_UP, detail, f"not answering again within {deadlines.up_s:.0f} s")
    if stop:
        return done(Outcome.STOPPED, detail, f"{stop} while waiting for the machine")
    return done(Outcome.REBOOTED, detail if was_up else f"{detail} (was down before)")


def attempts_key(machine: str) -> str:
    """The key of a machine's attempts artifact (lowercase letters, digits, dashes)."""
    slug = _KEY_UNSAFE.sub("-", machine.lower()).strip("-")
    return f"reboot-attempts-{slug or 'machine'}"


async def _publish(result: RebootResult) -> None:
    await acreate_table_artifact(
        key=attempts_key(result.machine),
        table=[
            {
                "time": f"{a.started_at:%H:%M:%S}",
                "method": a.method,
                "outcome": a.outcome.value,
                "duration s": round(a.duration_s, 1),
                "detail": a.detail,
                "error": a.error or "",
            }
            for a in result.attempts
        ],
        description=f"Reboot attempts on {result.machine}",
    )


async def run_chain(
    record: ServerRecord,
    methods: list[RebootMethod],
    deadlines: ChainDeadlines,
    *,
    target: Target | None = None,
) -> RebootResult:
    """Try ``methods`` in order on the machine (its lease must be held) until one works.

    Args:
        record: The machine.
        methods: Methods in order.
        deadlines: Deadlines and budgets.
        target: How to watch it (:func:`watch_target`, before the lease); None: decide now.

    Returns:
        The result; ``rebooted`` False when every method failed or a stop came.
    """
    logger = get_run_logger()
    target = target or await watch_target(record)
    result = RebootResult(machine=record.identity)
    started = time.monotonic()
    for method in methods:
        stop = await stop_requested()
        if stop:
            result.stopped = f"{stop} before {method.value}"
            break
        call = method_call(method, record.access, deadlines)
        if call is None:
            skipped = Attempt(
                method=method.value, started_at=datetime.now(UTC), duration_s=0.0,
                outcome=Outcome.SKIPPED, detail=f"no {PATH_OF[method]} configured",
            )  # fmt: skip
            result.attempts.append(skipped)
            continue
        logger.info("%s: trying %s", record.identity, method.value)
        budget = method_budget(method, record.access, deadlines)
        attempt = await _attempt(method, call, target, deadlines, budget)
        result.attempts.append(attempt)
        await _publish(result)
        logger.info("%s: %s -> %s %s", record.identity, method.value, attempt.outcome.value,
                    attempt.error or attempt.detail)  # fmt: skip
        if attempt.outcome is Outcome.REBOOTED:
            result.rebooted, result.method = True, method.value
            break
        if attempt.outcome is Outcome.STOPPED:
            result.stopped = attempt.error
            break
    result.duration_s = time.monotonic() - started
    await _publish(result)
    return result
