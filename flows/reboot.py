"""Reboot actions: the escalating chain and one flow (deployment) per method.

Every flow takes a machine known to the inventory (service tag or FQDN; an
unknown host is refused before anything is touched), tags its run
``machine:<id>`` for the job history as soon as the machine is known (so
refused, busy and waiting runs show too), holds the machine's lease while it
acts, and verifies the reboot by watching the machine go down and come back
(:mod:`flows.reboot_chain`). ``reboot`` tries methods in turn and files (or
comments on) a Bugzilla bug when all fail; ``ssh-reboot``, ``ipmi-reboot``,
``snmp-reboot``, ``ilo-reboot`` and ``xenapi-reboot`` run one method;
``ipmi-power`` runs one IPMI power action; ``ping`` only looks.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Completed, Failed, State

from clients.errors import PreconditionError, RackflowError
from clients.inventory import ServerRecord
from clients.ping import IcmpMode, icmp_mode
from flows.reboot_chain import (
    DEFAULT_METHODS,
    PATH_OF,
    ChainDeadlines,
    RebootMethod,
    RebootResult,
    run_chain,
)
from flows.reboot_watch import ping_target, watch_target
from tasks.bug_report import file_bugzilla_bug
from tasks.cancel import STOPS_BETWEEN_STEPS, stop_requested
from tasks.inventory import load_machine
from tasks.ipmi import ipmi_power
from tasks.lease import LeaseWaitStopped, machine_lease, tag_current_run
from tasks.ping import check_reachable

__all__ = [
    "file_bug_flow",
    "ilo_reboot_flow",
    "ipmi_power_flow",
    "ipmi_reboot_flow",
    "ping_flow",
    "reboot_flow",
    "snmp_reboot_flow",
    "ssh_reboot_flow",
    "xenapi_reboot_flow",
]


def _requested_by(requested_by: str | None) -> str:
    if requested_by:
        return requested_by
    if deployment.id:
        return f"deployment {deployment.name}, run {flow_run.name}"
    return getpass.getuser()


def bug_summary(record: ServerRecord) -> str:
    """The summary every chain failure of this machine files under (so bugs dedupe)."""
    return f"{record.fqdn or record.identity}: unresponsive, every reboot method failed"


async def _file_bug(record: ServerRecord, result: RebootResult, requested_by: str) -> str | None:
    defaults = record.access.bugzilla
    if defaults is None:
        return None
    report = await file_bugzilla_bug(
        credentials=defaults.credentials,
        product=defaults.product,
        component=defaults.component,
        cc=list(defaults.cc),
        summary=bug_summary(record),
        host=record.fqdn or record.identity,
        address=ping_target(record).address,
        requested_by=requested_by,
        attempts_log=result.log(),
    )
    return report.url


def _state(result: RebootResult) -> State:
    if result.rebooted:
        return Completed(
            message=f"rebooted by {result.method} in {result.duration_s:.0f} s", data=result
        )
    if result.stopped:
        return Cancelled(message=f"stopped: {result.stopped}", data=result)
    tried = ", ".join(f"{a.method} {a.outcome.value}" for a in result.attempts) or "nothing"
    if result.bug_url:
        bug = f"; bug {result.bug_url}"
    elif result.bug_error:
        bug = f"; filing the bug failed: {result.bug_error}"
    else:
        bug = "; no bug filed (no Bugzilla defaults)"
    return Failed(message=f"{result.machine}: every method failed ({tried}){bug}", data=result)


def _refuse_unconfigured(record: ServerRecord, methods: list[RebootMethod]) -> None:
    configured = record.access.paths()
    if not any(PATH_OF[m] in configured for m in methods):
        asked = ", ".join(m.value for m in methods)
        has = ", ".join(configured) or "no reboot path"
        raise PreconditionError(
            subject=record.identity,
            reason=f"none of the methods ({asked}) is configured for this machine "
            f"(it has: {has}; see rackflow inventory import)",
        )


async def chain(
    machine: str,
    methods: list[RebootMethod],
    *,
    deadlines: ChainDeadlines,
    file_bug: bool,
    requested_by: str | None,
    lease_wait_s: float,
    inventory_block: str | None,
    icmp: Callable[[], IcmpMode | None] = icmp_mode,
) -> State:
    """Shared body of every reboot flow (see the module docstring).

    ``icmp`` is the worker's ICMP capability check (injectable for tests).
    """
    record = await asyncio.to_thread(load_machine, machine, inventory_block)
    # In the machine's history from here on, and stoppable (rackflow cancel) even
    # while it waits for the lease.
    await tag_current_run([record.identity], also=[STOPS_BETWEEN_STEPS])
    _refuse_unconfigured(record, methods)
    target = await watch_target(record, icmp=icmp)  # refuses what cannot be watched
    try:
        async with machine_lease(
            record.identity, wait_s=lease_wait_s, tag=False, stop=stop_requested,
            stop_every_s=max(deadlines.poll_s, 1.0),
        ):  # fmt: skip
            result = await run_chain(record, methods, deadlines, target=target)
            if not result.rebooted and not result.stopped and file_bug:
                try:
                    result.bug_url = await _file_bug(record, result, _requested_by(requested_by))
                except RackflowError as exc:  # the attempts must still be reported
                    result.bug_error = str(exc)
    except LeaseWaitStopped as exc:
        result = RebootResult(machine=record.identity, stopped=exc.reason)
    get_run_logger().info("%s (%s): %s", record.identity, target.address, _state(result).message)
    return _state(result)


@flow(name="reboot", log_prints=False)
async def reboot_flow(
    machine: str,
    methods: list[RebootMethod] | None = None,
    deadlines: ChainDeadlines | None = None,
    file_bug: bool = True,
    requested_by: str | None = None,
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> State:
    """Reboot a machine, escalating through methods until it really cycled.

    Args:
        machine: Service tag or FQDN of a machine in the inventory.
        methods: Order to try (default ssh, ipmi-reset, ipmi-cycle, snmp); methods the
            machine has no configuration for are skipped and recorded as such.
        deadlines: Down / up / poll seconds, the budget of each method call and of each
            SSH command (defaults sized for real servers).
        file_bug: When every method fails, file a Bugzilla bug (or comment on the open one).
        requested_by: Who asked (goes into the bug); default the run's trigger or local user.
        lease_wait_s: How long to wait for another job on the machine before failing.
        inventory_block: ``InventoryStore`` block name (None: the default store).

    Returns:
        Completed with the method that worked; Cancelled when stopped between
        methods; Failed with the bug's URL when every method failed.
    """
    return await chain(
        machine, list(methods or DEFAULT_METHODS), deadlines=deadlines or ChainDeadlines(),
        file_bug=file_bug, requested_by=requested_by, lease_wait_s=lease_wait_s,
        inventory_block=inventory_block,
    )  # fmt: skip


async def _one(
    machine: str, method: RebootMethod, deadlines: ChainDeadlines | None,
    lease_wait_s: float, inventory_block: str | None,
) -> State:  # fmt: skip
    return await chain(
        machine, [method], deadlines=deadlines or ChainDeadlines(), file_bug=False,
        requested_by=None, lease_wait_s=lease_wait_s, inventory_block=inventory_block,
    )  # fmt: skip


@flow(name="ssh-reboot")
async def ssh_reboot_flow(
    machine: str,
    deadlines: ChainDeadlines | None = None,
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> State:
    """Reboot over SSH (``reboot``, then ``shutdown -r now``) and watch it cycle."""
    return await _one(machine, RebootMethod.SSH, deadlines, lease_wait_s, inventory_block)


@flow(name="ipmi-reboot")
async def ipmi_reboot_flow(
    machine: str,
    mode: Literal["reset", "cycle"] = "reset",
    deadlines: ChainDeadlines | None = None,
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> State:
    """Reboot through the BMC over IPMI (chassis power reset or cycle) and watch it cycle."""
    method = RebootMethod.IPMI_RESET if mode == "reset" else RebootMethod.IPMI_CYCLE
    return await _one(machine, method, deadlines, lease_wait_s, inventory_block)


@flow(name="snmp-reboot")
async def snmp_reboot_flow(
    machine: str,
    deadlines: ChainDeadlines | None = None,
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> State:
    """Power-cycle the machine's PDU outlet over SNMP and watch it cycle."""
    return await _one(machine, RebootMethod.SNMP, deadlines, lease_wait_s, inventory_block)


@flow(name="ilo-reboot")
async def ilo_reboot_flow(
    machine: str,
    deadlines: ChainDeadlines | None = None,
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> State:
    """Reboot through HPE iLO (graceful, forced after a deadline) and watch it cycle."""
    return await _one(machine, RebootMethod.ILO, deadlines, lease_wait_s, inventory_block)


@flow(name="xenapi-reboot")
async def xenapi_reboot_flow(
    machine: str,
    deadlines: ChainDeadlines | None = None,
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> State:
    """Restart the machine's Xen VM (clean shutdown, hard fallback, start) and watch it."""
    return await _one(machine, RebootMethod.XEN, deadlines, lease_wait_s, inventory_block)


@flow(name="ipmi-power")
async def ipmi_power_flow(
    machine: str,
    action: Literal["status", "on", "off", "cycle", "reset", "soft"] = "status",
    lease_wait_s: float = 600.0,
    inventory_block: str | None = None,
) -> str:
    """One IPMI power action on the machine's BMC (``status`` only reads).

    Returns:
        The power state after the action (or the status).
    """
    record = await asyncio.to_thread(load_machine, machine, inventory_block)
    await tag_current_run([record.identity])
    ipmi = record.access.ipmi
    if ipmi is None:
        raise PreconditionError(subject=record.identity, reason="no ipmi configured")
    if action == "status":
        return await ipmi_power(ipmi.address, port=ipmi.port, credentials=ipmi.credentials,
                                action=action)  # fmt: skip
    async with machine_lease(record.identity, wait_s=lease_wait_s, tag=False):
        return await ipmi_power(ipmi.address, port=ipmi.port, credentials=ipmi.credentials,
                                action=action)  # fmt: skip


@flow(name="ping")
async def ping_flow(machine: str, timeout_s: float = 2.0, inventory_block: str | None = None):
    """Is the machine answering? ICMP where allowed, else TCP to its ping or SSH port.

    Returns:
        Reachability (address, method, reachable, round-trip ms).
    """
    record = await asyncio.to_thread(load_machine, machine, inventory_block)
    await tag_current_run([record.identity])
    target = await watch_target(record)
    return await check_reachable(
        target.address, port=target.ping.port, method=target.ping.method, timeout_s=timeout_s
    )


@flow(name="file-bugzilla-bug")
async def file_bug_flow(
    machine: str,
    problem: str,
    details: str = "",
    requested_by: str | None = None,
    inventory_block: str | None = None,
) -> str:
    """File a Bugzilla bug about a machine (or comment on the open one with the same summary).

    Args:
        machine: Service tag or FQDN of a machine in the inventory (with Bugzilla defaults).
        problem: One line: becomes the summary ``<machine>: <problem>``.
        details: What was seen / tried (the bug's description or the new comment).
        requested_by: Who asks (default the run's trigger or the local user).
        inventory_block: ``InventoryStore`` block name (None: the default store).

    Returns:
        The bug's URL.
    """
    record = await asyncio.to_thread(load_machine, machine, inventory_block)
    defaults = record.access.bugzilla
    if defaults is None:
        raise PreconditionError(subject=record.identity, reason="no bugzilla defaults configured")
    if not problem.strip():
        raise PreconditionError(subject="problem", reason="give a one-line problem summary")
    await tag_current_run([record.identity])
    report = await file_bugzilla_bug(
        credentials=defaults.credentials, product=defaults.product, component=defaults.component,
        cc=list(defaults.cc), summary=f"{record.fqdn or record.identity}: {problem.strip()}",
        host=record.fqdn or record.identity, address=record.access.address,
        requested_by=_requested_by(requested_by), attempts_log=details,
    )  # fmt: skip
    return report.url
