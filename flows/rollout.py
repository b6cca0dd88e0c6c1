"""What the firmware procedures share: parameters, the rolling scheduler, the
maintenance window and the steps that update one component of one server.

No protocol code here: every step is a task from ``tasks/``. Sync tasks
(vCenter via pyVmomi, the inventory) run in a thread so the rollout's other
servers keep moving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from prefect import get_client, get_run_logger
from prefect.concurrency.asyncio import concurrency
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from clients.errors import RackflowError
from clients.firmware.repository import Package
from clients.firmware.sources import ApplyTime
from clients.inventory import ServerRecord
from clients.redfish.jobs import DONE_STATES
from clients.redfish.models import ComponentKind
from tasks.firmware import (
    progress_key,
    read_component_versions,
    reboot_server,
    start_firmware_update,
    summarize_versions,
    verify_firmware_version,
    wait_for_firmware_job,
    wait_for_server,
)
from tasks.inventory import note_pending_change
from tasks.lease import safe_limit_name
from tasks.vcenter import enter_maintenance_mode, exit_maintenance_mode, wait_host_connected

T = TypeVar("T")


class StepDeadlines(BaseModel):
    """Deadline of each step, in seconds (defaults sized for real servers)."""

    maintenance_enter_s: float = Field(1800, gt=0, description="Enter maintenance mode")
    maintenance_exit_s: float = Field(900, gt=0, description="Exit maintenance mode, reconnect")
    job_staged_s: float = Field(1800, gt=0, description="Download until Scheduled (OnReset)")
    job_done_s: float = Field(3600, gt=0, description="Job until Completed")
    graceful_reboot_s: float = Field(300, gt=0, description="GracefulRestart before forcing")
    host_back_s: float = Field(1800, gt=0, description="Host powered on and LC ready again")
    poll_interval_s: float = Field(5.0, gt=0, description="Pause between status reads")


class Outcome(StrEnum):
    """What happened to one component of one server."""

    UPDATED = "updated"
    CURRENT = "current"
    WOULD_UPDATE = "would-update"
    SKIPPED = "skipped"
    FAILED = "failed"


class ComponentResult(BaseModel):
    """One row of the result table."""

    server: str
    component: str
    before: str | None = None
    after: str | None = None
    target: str | None = None
    result: Outcome
    duration_s: float = 0.0
    message: str = ""


@dataclass
class RolloutOptions:
    """Settings every server of one run shares."""

    credentials_block: str
    vcenter_block: str | None
    inventory_block: str | None
    apply_time: ApplyTime
    deadlines: StepDeadlines
    max_unavailable_per_cluster: int
    dry_run: bool
    cluster_gates: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def gate(self, cluster: str | None) -> asyncio.Semaphore:
        """Never more than ``max_unavailable_per_cluster`` hosts of a cluster in maintenance."""
        key = cluster or "-standalone-"
        if key not in self.cluster_gates:
            size = self.max_unavailable_per_cluster if cluster else 1_000_000
            self.cluster_gates[key] = asyncio.Semaphore(size)
        return self.cluster_gates[key]


def run_id() -> str:
    """This flow run's id (for records of pending changes)."""
    return str(flow_run.id) if flow_run.id else "local"


async def rolling(
    servers: Sequence[ServerRecord],
    work: Callable[[ServerRecord], Awaitable[list[ComponentResult]]],
    *,
    max_parallel: int,
    max_failures: int,
) -> list[ComponentResult]:
    """Run ``work`` per server, ``max_parallel`` at a time, in order; halt after failures.

    Servers not started when ``max_failures`` servers have failed are reported
    skipped; servers in flight finish.
    """
    gate = asyncio.Semaphore(max_parallel)
    failed: list[str] = []

    async def one(server: ServerRecord) -> list[ComponentResult]:
        async with gate:
            if len(failed) >= max_failures:
                return [
                    ComponentResult(
                        server=server.identity,
                        component="*",
                        result=Outcome.SKIPPED,
                        message=f"rollout halted after {len(failed)} failed server(s): "
                        + ", ".join(failed),
                    )
                ]
            try:
                rows = await work(server)
            except Exception as exc:  # noqa: BLE001 - one server's crash must not end the others
                get_run_logger().exception("%s: unexpected failure", server.identity)
                rows = [
                    ComponentResult(
                        server=server.identity,
                        component="*",
                        result=Outcome.FAILED,
                        message=f"{type(exc).__name__}: {exc}",
                    )
                ]
            if any(r.result is Outcome.FAILED for r in rows):
                failed.append(server.identity)
            return rows

    per_server = await asyncio.gather(*(one(s) for s in servers))
    return [row for rows in per_server for row in rows]


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a sync task without stalling the other servers' async steps."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _host_is_back(server: ServerRecord, opts: RolloutOptions) -> bool:
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


@asynccontextmanager
async def maintenance_window(
    server: ServerRecord, opts: RolloutOptions, *, needed: bool
) -> AsyncIterator[bool]:
    """Hold the server's ESXi host in vCenter maintenance mode around the body.

    Entering is recorded in the inventory before it is attempted, so a crash
    leaves a note that the next run acts on. When the body fails the host
    leaves maintenance mode again, unless the host itself did not come back:
    then it stays in maintenance mode and is reported loudly.

    Yields:
        Whether a maintenance window is open (False: no linked host, or not needed).
    """
    if not needed or not server.vcenter_host or not opts.vcenter_block or opts.dry_run:
        yield False
        return
    logger = get_run_logger()
    tag, host, d = server.identity, server.vcenter_host, opts.deadlines
    cluster = ((server.attributes or {}).get("vcenter") or {}).get("cluster")
    async with opts.gate(cluster):
        await in_thread(
            note_pending_change,
            tag,
            "maintenance",
            {"run": run_id(), "host": host},
            opts.inventory_block,
        )
        try:
            # vCenter's capacity check and the enter must not interleave with another
            # run's on the same cluster (two workers could both see room otherwise).
            async with cluster_lease(cluster, wait_s=d.maintenance_enter_s):
                await in_thread(
                    enter_maintenance_mode,
                    host,
                    opts.vcenter_block,
                    opts.max_unavailable_per_cluster,
                    d.maintenance_enter_s,
                )
        except BaseException:
            # Refused, failed or timed out: whatever vCenter did half-way is undone
            # (exit is check-then-act) and the note goes; this server stops here.
            await _leave_maintenance(server, opts)
            raise
        try:
            yield True
        except BaseException:
            if await _host_is_back(server, opts):
                await _leave_maintenance(server, opts)
            else:
                logger.critical(
                    "%s: host %s did NOT come back: left in maintenance mode on purpose; "
                    "fix the server, then re-run to finish",
                    tag,
                    host,
                )
            raise
        await _leave_maintenance(server, opts)


async def _leave_maintenance(server: ServerRecord, opts: RolloutOptions) -> None:
    host, d = server.vcenter_host, opts.deadlines
    await in_thread(exit_maintenance_mode, host, opts.vcenter_block, d.maintenance_exit_s)
    await in_thread(wait_host_connected, host, opts.vcenter_block, d.maintenance_exit_s)
    await in_thread(note_pending_change, server.identity, "maintenance", None, opts.inventory_block)


async def update_component(
    server: ServerRecord, package: Package, opts: RolloutOptions, *, before: str | None
) -> ComponentResult:
    """Apply one package to one server and verify the installed version.

    OnReset: follow the job to Scheduled/Downloaded, reboot (graceful, then
    forced), follow it to Completed. Immediate: the iDRAC reboots the host
    itself when the component needs it. Either way: wait for the host and the
    BMC, then re-read the inventory.
    """
    started = time.monotonic()
    addr, port, creds, d = (
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        opts.deadlines,
    )
    assert addr is not None and port is not None  # load_target_servers checked it
    row = ComponentResult(
        server=server.identity,
        component=str(package.component),
        before=before,
        target=package.version,
        result=Outcome.FAILED,
    )
    key = progress_key("firmware", server.identity, str(package.component))
    try:
        # The intention first: a crash between the request and the note would
        # otherwise leave a job the next run takes for someone else's.
        await in_thread(
            note_pending_change,
            server.identity,
            "firmware-job",
            {"run": run_id(), "job": None, "component": str(package.component)},
            opts.inventory_block,
        )
        job_id = await start_firmware_update(addr, port, creds, package, opts.apply_time)
        await in_thread(
            note_pending_change,
            server.identity,
            "firmware-job",
            {"run": run_id(), "job": job_id, "component": str(package.component)},
            opts.inventory_block,
        )
        staged = opts.apply_time is ApplyTime.ON_RESET
        job = await wait_for_firmware_job(
            addr,
            port,
            creds,
            job_id,
            staged=staged,
            timeout_s=d.job_staged_s if staged else d.job_done_s,
            interval_s=d.poll_interval_s,
            progress=key,
        )
        if staged and job.state not in DONE_STATES:
            how = await reboot_server(
                addr,
                port,
                creds,
                graceful_timeout_s=d.graceful_reboot_s,
                interval_s=d.poll_interval_s,
                job_id=job_id,
            )
            row.message = f"reboot: {how}; "
            # The host first (a host that never returns costs host_back_s, not the job's deadline).
            await wait_for_server(
                addr, port, creds, timeout_s=d.host_back_s, interval_s=d.poll_interval_s
            )
            job = await wait_for_firmware_job(
                addr,
                port,
                creds,
                job_id,
                staged=False,
                timeout_s=d.job_done_s,
                interval_s=d.poll_interval_s,
                progress=key,
            )
        await wait_for_server(
            addr, port, creds, timeout_s=d.host_back_s, interval_s=d.poll_interval_s
        )
        row.after = await verify_firmware_version(addr, port, creds, package, before, job_id)
        row.result = Outcome.UPDATED
        row.message += f"{job_id} {job.state}"
        await in_thread(
            note_pending_change, server.identity, "firmware-job", None, opts.inventory_block
        )
    except RackflowError as exc:
        row.message += str(exc)
        raise ComponentFailed(row) from exc
    finally:
        row.duration_s = round(time.monotonic() - started, 1)
    return row


class ComponentFailed(Exception):
    """A component update failed; carries its result row.

    Args:
        row: The failed component's row.
        rows: Every row of the step when it covered several components (a
            catalog applied by the iDRAC); default ``[row]``.
    """

    def __init__(self, row: ComponentResult, *, rows: list[ComponentResult] | None = None) -> None:
        self.row = row
        self.rows = rows if rows is not None else [row]
        super().__init__(f"{row.server} {row.component}: {row.message}")


async def current_version(
    server: ServerRecord,
    kind: ComponentKind,
    opts: RolloutOptions,
    component_id: str | None = None,
) -> tuple[str | None, list[str]]:
    """The installed version of a component kind (and the instance component ids)."""
    assert server.bmc_address is not None and server.bmc_port is not None
    found = await read_component_versions(
        server.bmc_address, server.bmc_port, opts.credentials_block, kind, component_id
    )
    return summarize_versions(found), sorted({c.component_id for c in found if c.component_id})
