"""The vCenter maintenance window around a server's update (rolling firmware updates).

Entering is recorded in the inventory before it is attempted; leaving
undoes it when a later step fails, unless the host itself did not come back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prefect import get_client, get_run_logger
from prefect.concurrency.asyncio import concurrency

from clients.inventory import ServerRecord
from flows.rollout import RolloutOptions, run_id
from tasks.firmware_finish import wait_for_server
from tasks.lease import safe_limit_name
from tasks.vcenter import enter_maintenance_mode, exit_maintenance_mode, wait_host_connected


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
    await opts.in_thread(exit_maintenance_mode, host, opts.vcenter_block, d.maintenance_exit_s)
    await opts.in_thread(wait_host_connected, host, opts.vcenter_block, d.maintenance_exit_s)
    await opts.inventory.note(server.identity, "maintenance", None)
