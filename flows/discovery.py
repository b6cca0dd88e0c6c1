"""Discovery: scan IP ranges for Redfish BMCs and record them in the inventory."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks.redfish import RedfishCredentials
from clients.discovery import ProbeOutcome, ProbeResult, raise_fd_limit
from clients.errors import PreconditionError
from clients.targets import parse_targets
from tasks.discovery import scan_addresses
from tasks.inventory import mark_servers_offline, record_servers


class FoundServer(BaseModel):
    """One BMC the scan found (for the summary and the table artifact)."""

    address: str
    port: int
    status: str
    service_tag: str | None = None
    model: str | None = None
    bmc_firmware: str | None = None
    bios: str | None = None
    power: str | None = None
    health: str | None = None


class DiscoverySummary(BaseModel):
    """What a discovery run found, counted by outcome."""

    endpoints: int
    found: int = 0
    auth_failed: int = 0
    not_redfish: int = 0
    no_answer: int = 0
    tls_errors: int = 0
    errors: int = 0
    recorded: dict[str, int] = Field(default_factory=dict)
    marked_offline: int = 0
    duration_s: float = 0.0
    servers: list[FoundServer] = Field(default_factory=list)


_COUNTERS = {
    ProbeOutcome.FOUND: "found",
    ProbeOutcome.AUTH_FAILED: "auth_failed",
    ProbeOutcome.NOT_REDFISH: "not_redfish",
    ProbeOutcome.NO_ANSWER: "no_answer",
    ProbeOutcome.TLS_ERROR: "tls_errors",
    ProbeOutcome.ERROR: "errors",
}
_SEEN = {ProbeOutcome.FOUND, ProbeOutcome.AUTH_FAILED, ProbeOutcome.ERROR, ProbeOutcome.TLS_ERROR}
_PROBLEMS = {ProbeOutcome.AUTH_FAILED, ProbeOutcome.TLS_ERROR, ProbeOutcome.ERROR}


def _summarise(results: list[ProbeResult], summary: DiscoverySummary) -> None:
    for r in results:
        field = _COUNTERS[r.outcome]
        setattr(summary, field, getattr(summary, field) + 1)
        if r.observation and r.outcome in (ProbeOutcome.FOUND, ProbeOutcome.AUTH_FAILED):
            o = r.observation
            summary.servers.append(
                FoundServer(
                    address=r.address,
                    port=r.port,
                    status=str(o.status),
                    service_tag=o.service_tag,
                    model=o.model,
                    bmc_firmware=o.bmc_firmware_version,
                    bios=o.bios_version,
                    power=o.power_state,
                    health=o.health,
                )
            )


async def _validate(credentials_block: str, resume_minutes: float, **positive: float) -> None:
    """Refuse bad numbers and a missing credentials block before any packet is sent."""
    for name, value in positive.items():
        if value <= 0:
            raise PreconditionError(subject=name, reason=f"must be positive, got {value!r}")
    if resume_minutes < 0:
        raise PreconditionError(subject="resume_minutes", reason="must be 0 or more")
    try:
        await RedfishCredentials.aload(credentials_block)
    except ValueError as exc:
        raise PreconditionError(
            subject="credentials_block",
            reason=f"no RedfishCredentials block named {credentials_block!r} ({exc})",
        ) from None


@dataclass
class _ChunkRunner:
    """Scans chunks side by side (``parallel`` at once), records each as it finishes."""

    scan_options: dict[str, Any]
    resume_minutes: float
    parallel: int
    total: int
    summary: DiscoverySummary
    progress: UUID
    results: list[ProbeResult] = field(default_factory=list)
    finished: int = 0
    run_id: str | None = field(default_factory=lambda: str(flow_run.id) if flow_run.id else None)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.parallel)
        self._record_lock = asyncio.Lock()
        resume = self.resume_minutes
        self._scan = scan_addresses.with_options(
            cache_expiration=timedelta(minutes=resume) if resume else None,
            refresh_cache=resume == 0,
        )

    async def chunk(self, endpoints: list[tuple[str, int]]) -> None:
        async with self._gate:
            results = await self._scan(endpoints, **self.scan_options)
        retry = [(r.address, r.port) for r in results if r.retryable]
        if retry:  # one more pass for BMCs that were busy or failed transiently
            again = await scan_addresses.with_options(refresh_cache=True)(
                retry, **self.scan_options
            )
            redo = {(r.address, r.port): r for r in again}
            results = [redo.get((r.address, r.port), r) for r in results]
        observations = [r.observation for r in results if r.observation]
        if observations:
            async with self._record_lock:  # one writer at a time keeps SQLite happy
                counts = await asyncio.to_thread(
                    record_servers, observations, self.scan_options["inventory_block"], self.run_id
                )
            for key, value in counts.items():
                self.summary.recorded[key] = self.summary.recorded.get(key, 0) + value
        self.results.extend(results)
        self.finished += 1
        await aupdate_progress_artifact(self.progress, 100.0 * self.finished / self.total)


async def _write_artifacts(summary: DiscoverySummary, problems: list[ProbeResult]) -> None:
    rows = [s.model_dump() for s in summary.servers]
    if rows:
        await acreate_table_artifact(
            rows, key="discovery-servers", description="Redfish BMCs found by this run"
        )
    lines = [
        "# Discovery summary",
        "",
        "| outcome | count |",
        "|---|---|",
        f"| found | {summary.found} |",
        f"| auth-failed | {summary.auth_failed} |",
        f"| not Redfish | {summary.not_redfish} |",
        f"| no answer | {summary.no_answer} |",
        f"| TLS error | {summary.tls_errors} |",
        f"| other error | {summary.errors} |",
        "",
        f"{summary.endpoints} endpoints scanned in {summary.duration_s:.1f} s; inventory: "
        + (", ".join(f"{k} {v}" for k, v in sorted(summary.recorded.items())) or "no change")
        + f"; {summary.marked_offline} marked offline.",
    ]
    if problems:
        lines += ["", "## Needs attention", "", "| endpoint | outcome | detail |", "|---|---|---|"]
        lines += [f"| {p.address}:{p.port} | {p.outcome} | {p.detail or ''} |" for p in problems]
    await acreate_markdown_artifact("\n".join(lines), key="discovery-summary")


@flow(name="discovery", log_prints=False, persist_result=True)
async def discovery(
    ranges: list[str],
    ports: list[int | str] = [443],  # noqa: B006 - Prefect shows defaults in the UI
    credentials_block: str = "redfish",
    inventory_block: str | None = None,
    concurrency: int = 4096,
    chunk_size: int = 256,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
    refresh: bool = False,
    allow_large: bool = False,
    read_firmware: bool = True,
    resume_minutes: float = 10.0,
) -> DiscoverySummary:
    """Scan IP ranges for Redfish BMCs and record them in the inventory.

    Args:
        ranges: CIDRs, dash ranges (``a.b.c.d-e.f.g.h``, ``a.b.c.d-h``) and addresses.
        ports: HTTPS ports to probe; ``"a-b"`` ranges allowed.
        credentials_block: Name of the ``RedfishCredentials`` block.
        inventory_block: Name of the ``InventoryStore`` block (None: default store).
        concurrency: Sockets in flight across the whole scan.
        chunk_size: Endpoints per Prefect task (the unit of retry and resume).
        connect_timeout: Seconds for TCP connect and TLS set-up per address.
        read_timeout: Seconds per HTTP answer.
        refresh: Re-read servers the inventory already knows at the same address.
        allow_large: Permit more than 65,536 addresses.
        read_firmware: Read each BMC's firmware inventory.
        resume_minutes: Re-use chunk results younger than this after a crash (0: never).

    Returns:
        Counts by outcome and the servers found.

    Raises:
        PreconditionError: Bad ranges, ports or numbers, before any packet is sent.
    """
    started = time.monotonic()
    logger = get_run_logger()
    targets = parse_targets(ranges, ports, allow_large=allow_large)
    await _validate(
        credentials_block,
        resume_minutes,
        concurrency=concurrency,
        chunk_size=chunk_size,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    # Chunks run side by side in this process: raise the open-file limit for all of them.
    raise_fd_limit(concurrency * 2 + 256)
    endpoints = targets.endpoints()
    chunks = [endpoints[i : i + chunk_size] for i in range(0, len(endpoints), chunk_size)]
    logger.info("scanning %d endpoints in %d chunks", len(endpoints), len(chunks))
    per_chunk = min(chunk_size, concurrency)
    run = _ChunkRunner(
        scan_options={
            "credentials_block": credentials_block,
            "concurrency": per_chunk,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "refresh": refresh,
            "inventory_block": inventory_block,
            "read_firmware": read_firmware,
        },
        resume_minutes=resume_minutes,
        parallel=max(1, concurrency // per_chunk),
        total=len(chunks),
        summary=DiscoverySummary(endpoints=len(endpoints)),
        progress=await acreate_progress_artifact(0.0, key="discovery-progress"),
    )
    await asyncio.gather(*(run.chunk(c) for c in chunks))
    summary, results = run.summary, run.results
    seen = [(r.address, r.port) for r in results if r.outcome in _SEEN]
    summary.marked_offline = await asyncio.to_thread(
        mark_servers_offline, endpoints, seen, inventory_block, run.run_id
    )
    results.sort(key=lambda r: (ipaddress.IPv4Address(r.address), r.port))
    _summarise(results, summary)
    summary.duration_s = round(time.monotonic() - started, 2)
    await _write_artifacts(summary, [r for r in results if r.outcome in _PROBLEMS])
    logger.info(
        "discovery done: %d found, %d auth-failed, %d not Redfish, %d no answer, "
        "%d TLS errors, %d errors in %.1f s",
        summary.found,
        summary.auth_failed,
        summary.not_redfish,
        summary.no_answer,
        summary.tls_errors,
        summary.errors,
        summary.duration_s,
    )
    return summary
