"""Prefect tasks of the discovery procedure: scan a chunk of addresses."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import exponential_backoff

from blocks.inventory import InventoryStore
from blocks.redfish import RedfishCredentials
from clients.discovery import ProbeOutcome, ProbeResult, Scanner
from clients.inventory import ServerStatus
from tasks.inventory import record_servers
from tasks.retry import retry_on_transient


async def _known_endpoints(inventory_block: str | None) -> dict[tuple[str, int], str]:
    store = await InventoryStore.aload(inventory_block) if inventory_block else InventoryStore()

    def read() -> dict[tuple[str, int], str]:
        with store.get_client() as inventory:
            # Only servers we could read last time: an auth-failed one is re-read.
            return inventory.known_addresses(status=ServerStatus.ONLINE)

    return await asyncio.to_thread(read)


def _chunk_name() -> str:
    from prefect.runtime import task_run

    endpoints = task_run.parameters.get("endpoints") or []
    if not endpoints:
        return "scan-addresses-empty"
    (first, _), (last, _) = endpoints[0], endpoints[-1]
    return f"scan-addresses-{first}-{last}"


@task(
    task_run_name=_chunk_name,
    # A re-run after a crash skips chunks scanned within the expiry (set per run
    # by the flow). The credentials block is passed by NAME, so no secret is part
    # of the key; a changed password therefore needs resume_minutes=0.
    cache_policy=TASK_SOURCE + INPUTS,
    cache_expiration=timedelta(minutes=10),
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
)
async def scan_addresses(
    endpoints: list[tuple[str, int]],
    credentials_block: str,
    *,
    concurrency: int = 256,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
    refresh: bool = False,
    inventory_block: str | None = None,
    read_firmware: bool = True,
) -> list[ProbeResult]:
    """Probe a chunk of (address, port) endpoints for Redfish BMCs.

    Args:
        endpoints: The chunk to scan.
        credentials_block: Name of the ``RedfishCredentials`` block.
        concurrency: Sockets in flight within this chunk.
        connect_timeout: Seconds for TCP connect and TLS set-up.
        read_timeout: Seconds for each HTTP answer.
        refresh: Re-read servers the inventory already knows at the same address.
        inventory_block: ``InventoryStore`` block name (None: the default store).
        read_firmware: Read each BMC's firmware inventory too.

    Returns:
        One result per endpoint.
    """
    creds = await RedfishCredentials.aload(credentials_block)
    known = {} if refresh else await _known_endpoints(inventory_block)
    scanner = Scanner(
        username=creds.username,
        password=creds.password.get_secret_value(),
        verify=creds.ssl_context(),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        concurrency=concurrency,
        known=known,
        read_firmware=read_firmware,
    )
    results = await scanner.scan(endpoints)
    found = sum(r.outcome is ProbeOutcome.FOUND for r in results)
    get_run_logger().info(
        "scanned %d endpoints: %d Redfish BMCs, %d HTTP requests",
        len(results),
        found,
        scanner.requests_made,
    )
    return results


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_transient
)
async def refresh_server_record(
    address: str, port: int, credentials_block: str, inventory_block: str | None = None
) -> ProbeResult:
    """Re-read one server (identity, versions, firmware) and record it in the inventory.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        inventory_block: ``InventoryStore`` block name (None: the default store).

    Returns:
        What was read.
    """
    creds = await RedfishCredentials.aload(credentials_block)
    scanner = Scanner(
        username=creds.username,
        password=creds.password.get_secret_value(),
        verify=creds.ssl_context(),
        connect_timeout=creds.connect_timeout,
        read_timeout=creds.read_timeout,
        concurrency=1,
    )
    [result] = await scanner.scan([(address, port)])
    if result.observation is not None:
        await asyncio.to_thread(record_servers, [result.observation], inventory_block)
    return result
