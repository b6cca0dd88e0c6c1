"""The vCenter maintenance window around a server's update (rolling firmware updates).

rackflow takes out of maintenance mode only a host it put there: this run
(entering is recorded in the inventory before it is attempted) or an earlier
run that crashed (its note is still there). A host someone else put in
maintenance mode stays there. When the update fails the host leaves
maintenance mode again, unless the host itself did not come back: then it
stays, and :class:`HostNotBackError` says so in the rollout's table and state.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prefect import get_client, get_run_logger
from prefect.client.schemas.objects import State
from prefect.concurrency.asyncio import concurrency

from clients.errors import DeadlineExceeded, RackflowError
from clients.inventory import ServerRecord
from flows.rollout import ComponentResult, RolloutOptions, run_id
from tasks.firmware_finish import wait_for_server
from tasks.lease import safe_limit_name
from tasks.vcenter import (
    enter_maintenance_mode,
    exit_maintenance_mode,
    read_host,
    wait_host_connected,
)

__all__ = [
    "NOT_BACK",
    "HostNotBackError",
    "MaintenanceWindow",
    "cluster_lease",
    "host_is_back",
    "maintenance_window",
    "name_hosts_left",
]

# What every report of a host left in maintenance mode says (rows, states, logs).
NOT_BACK = "did NOT come back: left in maintenance mode on purpose; fix the server, then re-run"


class HostNotBackError(DeadlineExceeded):
    """A step failed and the server did not come back: its ESXi host stays in maintenance mode.

    A :class:`~clients.errors.DeadlineExceeded` (rackflow waited for the
    server), raised from the step's failure; its message says what happened
    and what to do, then the step's own reason, so the row and state built
    from it tell the operator.

    Args:
        server: Service tag.
        host: ESXi host name.
        waited_s: How long rackflow waited for the server before giving up.
        reason: The step's failure.
    """

    def __init__(self, *, server: str, host: str, waited_s: float, reason: BaseException) -> None:
        self.server, self.host = server, host
        self.operation, self.waited_s = f"{server}: host {host} back", waited_s
        self.reason = reason
        # DeadlineExceeded's message is not this one: its attributes, then the text.
        RackflowError.__init__(self, f"{server}: host {host} {NOT_BACK}: {reason}")


@dataclass
class MaintenanceWindow:
    """What :func:`maintenance_window` did (true when the host is in maintenance mode).

    Attributes:
        host: ESXi host name (None: no window).
        opened: The host is in maintenance mode for the body.
        entered: rackflow put it there (this run or a crashed earlier one), so it
            takes it out again; False for a host someone else put there.
        note: For the server's rows when the host was kept in maintenance mode.
    """

    host: str | None = None
    opened: bool = False
    entered: bool = False
    note: str = ""

    def __bool__(self) -> bool:
        return self.opened


async def host_is_back(server: ServerRecord, opts: RolloutOptions) -> bool:
    """Whether the server is powered on with its Lifecycle Controller ready (waits a little).

    Args:
        server: The server.
        opts: The run's settings (at most ``host_back_s``, 60 s at most, is waited).

    Returns:
        True when it is back.
    """
    assert server.bmc_address is not None and server.bmc_port is not None
    try:
        await wait_for_server(
            server.bmc_address,
            server.bmc_port,
            opts.credentials_block,
            timeout_s=min(60.0, opts.deadlines.host_back_s),
            interval_s=opts.deadlines.poll_interval_s,
        )
        return True
    except Exception:  # noqa: BLE001 - any failure here means "not back"
        return False


@asynccontextmanager
async def cluster_lease(cluster: str | None, *, wait_s: float) -> AsyncIterator[None]:
    """Serialize maintenance-mode decisions on one cluster across runs and workers.

    Raises:
        AcquireConcurrencySlotTimeoutError: Another run held the cluster for ``wait_s``.
    """
    if not cluster:
        yield
        return
    name = safe_limit_name(f"vcenter-cluster-{cluster}")
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, limit=1)
    async with concurrency(name, occupy=1, strict=True, lease_duration=60, timeout_seconds=wait_s):
        yield


def _earlier_note(server: ServerRecord, host: str) -> dict[str, Any] | None:
    """The note of an earlier run that put this host in maintenance mode and did not finish."""
    note = (server.attributes or {}).get("pending:maintenance")
    if isinstance(note, dict) and note.get("host") in (None, host):
        return note
    return None


@asynccontextmanager
async def maintenance_window(
    server: ServerRecord, opts: RolloutOptions, *, needed: bool
) -> AsyncIterator[MaintenanceWindow]:
    """Hold the server's ESXi host in vCenter maintenance mode around the body.

    Entering is recorded in the inventory before it is attempted, so a crash
    leaves a note that the next run acts on (when this server needs no work,
    only that: a host the note names leaves maintenance mode, and the body runs
    without a window). A host already in maintenance
    mode with no such note was put there by someone else: it is not entered,
    and stays in maintenance mode afterwards. When the body fails, a host
    rackflow entered leaves maintenance mode again, unless the server did not
    come back: then it stays, and :class:`HostNotBackError` is raised.

    Args:
        server: The server (its ``vcenter_host`` link and pending notes).
        opts: The run's settings.
        needed: Whether the body changes the server (False: no window).

    Yields:
        The window (false: no linked host, no vCenter, a dry run, or not needed).

    Raises:
        HostNotBackError: The body failed and the server did not come back.
    """
    if not server.vcenter_host or not opts.vcenter_block or opts.dry_run:
        yield MaintenanceWindow()
        return
    host = server.vcenter_host
    if not needed:
        # Nothing to update: only finish what a crashed run left (never enter to leave).
        await _finish_earlier(server, opts, host)
        yield MaintenanceWindow()
        return
    cluster = ((server.attributes or {}).get("vcenter") or {}).get("cluster")
    async with opts.gate(cluster):
        window = await _open(server, opts, host, cluster)
        try:
            yield window
        except BaseException as exc:
            await _after_failure(server, opts, window, exc)
            raise
        if window.entered:
            await _leave_maintenance(server, opts)
        else:
            get_run_logger().warning("%s: %s", server.identity, window.note)


async def _finish_earlier(server: ServerRecord, opts: RolloutOptions, host: str) -> None:
    """Take the host out of the maintenance mode a crashed run left it in; drop its note."""
    if _earlier_note(server, host) is None:
        return
    if (await opts.in_thread(read_host, host, opts.vcenter_block)).in_maintenance:
        get_run_logger().info("%s: leaving the maintenance mode an earlier run entered", host)
        await _leave_maintenance(server, opts)
    else:
        await opts.inventory.note(server.identity, "maintenance", None)


async def _open(
    server: ServerRecord, opts: RolloutOptions, host: str, cluster: str | None
) -> MaintenanceWindow:
    """Enter maintenance mode (or find the host already there); the window for the body."""
    tag, d = server.identity, opts.deadlines
    before = await opts.in_thread(read_host, host, opts.vcenter_block)
    if before.in_maintenance and _earlier_note(server, host) is None:
        # Not rackflow's doing: an operator's (or another tool's) maintenance.
        note = (
            f"host {host} was already in maintenance mode (not entered by rackflow): "
            "left in maintenance mode"
        )
        get_run_logger().warning(
            "%s: host %s is already in maintenance mode and rackflow did not put it there: "
            "updating it as it is; it stays in maintenance mode afterwards",
            tag,
            host,
        )
        return MaintenanceWindow(host=host, opened=True, entered=False, note=note)
    await opts.inventory.note(tag, "maintenance", {"run": run_id(), "host": host})
    try:
        # vCenter's capacity check and the enter must not interleave with another
        # run's on the same cluster (two workers could both see room otherwise).
        async with cluster_lease(cluster, wait_s=d.maintenance_enter_s):
            await opts.in_thread(
                enter_maintenance_mode,
                host,
                opts.vcenter_block,
                opts.max_unavailable_per_cluster,
                d.maintenance_enter_s,
                opts.maintenance,
            )
    except BaseException:
        # Refused, failed or timed out: whatever vCenter did half-way is undone
        # (exit is check-then-act) and the note goes; this server stops here.
        await _leave_maintenance(server, opts)
        raise
    # Entered now, or (a retried enter, a crashed earlier run) found there: rackflow's.
    return MaintenanceWindow(host=host, opened=True, entered=True)


async def _after_failure(
    server: ServerRecord, opts: RolloutOptions, window: MaintenanceWindow, exc: BaseException
) -> None:
    """Leave maintenance mode after a failed body, or keep it when the server is not back.

    Raises:
        HostNotBackError: The server is not back (for a cancelled or interrupted body
            the original goes on instead, after a critical log line).
    """
    started = time.monotonic()
    # A body that already found the server dead says so (no second wait).
    back = getattr(exc, "host_back", None)
    if back is None:
        back = await host_is_back(server, opts)
    if back:
        if window.entered:
            await _leave_maintenance(server, opts)
        else:
            get_run_logger().warning("%s: %s", server.identity, window.note)
        return
    assert window.host is not None
    head = f"{server.identity}: host {window.host} {NOT_BACK}"
    if not isinstance(exc, Exception):
        get_run_logger().critical("%s (interrupted: %r)", head, exc)
        return
    failed = HostNotBackError(
        server=server.identity,
        host=window.host,
        waited_s=time.monotonic() - started,
        reason=exc,
    )
    get_run_logger().critical("%s", failed)
    raise failed from exc


async def _leave_maintenance(server: ServerRecord, opts: RolloutOptions) -> None:
    host, d = server.vcenter_host, opts.deadlines
    await opts.in_thread(exit_maintenance_mode, host, opts.vcenter_block, d.maintenance_exit_s)
    await opts.in_thread(wait_host_connected, host, opts.vcenter_block, d.maintenance_exit_s)
    await opts.inventory.note(server.identity, "maintenance", None)


def name_hosts_left(state: State, rows: Sequence[ComponentResult]) -> State:
    """A rollout's final state, naming every host left in maintenance mode in its message.

    Args:
        state: The rollout's final state.
        rows: The rollout's table.

    Returns:
        The state, its message extended when a host was left in maintenance mode.
    """
    heads: list[str] = []
    for r in rows:
        end = r.message.find(NOT_BACK)
        if end < 0:
            continue
        start = max(0, r.message.find(f"{r.server}: host "))
        if (head := r.message[start : end + len(NOT_BACK)]) not in heads:
            heads.append(head)
    if not heads:
        return state
    message = "; ".join([state.message or state.name or "", *heads])
    return state.model_copy(update={"message": message})
