"""What the firmware procedures share: the rolling scheduler and the steps that
update one component of one server (the run's options and result rows are in
:mod:`flows.rollout_run`, imported from here).

No protocol code here: every step is a task from ``tasks/``. Sync tasks
(vCenter via pyVmomi) run in the run's own bounded thread pool so the
rollout's other servers keep moving; bookkeeping in the inventory (the
pending-change notes a crashed run is recovered from) goes through the run's
:class:`~tasks.inventory.RunInventory`, written before the step it protects;
the firmware jobs a run started are noted by id (:class:`~tasks.firmware_jobs.JobNotes`).
The vCenter maintenance window is in :mod:`flows.maintenance_window`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

import anyio
from prefect import get_run_logger

from clients.errors import RackflowError, ServerError, TransportError
from clients.firmware.repository import Package
from clients.firmware.sources import ApplyTime
from clients.inventory import ServerRecord
from clients.redfish.models import ComponentKind
from flows.rollout_run import (
    ComponentFailed,
    ComponentResult,
    Outcome,
    RolloutOptions,
    StepDeadlines,
    rollout_options,
    run_id,
    run_options,
)
from tasks.firmware import progress_key, read_component_versions, summarize_versions
from tasks.firmware_finish import (
    AppliedUpdate,
    StagedUpdate,
    complete_firmware_update,
    reboot_when_staged,
)
from tasks.firmware_jobs import StartedUpdate, start_firmware_update
from tasks.firmware_notes import JobNotes

__all__ = [
    "ComponentFailed",
    "ComponentResult",
    "Outcome",
    "RolloutOptions",
    "StepDeadlines",
    "current_version",
    "rolling",
    "rollout_options",
    "run_id",
    "update_component",
]

# How long a cut-off update may take to delete its job (see update_component).
_CLEANUP_S = 120.0


async def rolling(
    servers: Sequence[ServerRecord],
    work: Callable[[ServerRecord], Awaitable[list[ComponentResult]]],
    *,
    max_parallel: int,
    max_failures: int,
    after: Callable[[ServerRecord, list[ComponentResult]], Awaitable[None]] | None = None,
) -> list[ComponentResult]:
    """Run ``work`` per server, ``max_parallel`` at a time, in order; halt after failures.

    Servers not started when ``max_failures`` servers have failed are reported
    skipped; servers in flight finish. ``after`` (bookkeeping that only reads
    the server, such as refreshing its inventory record) runs once the
    server's slot is given to the next server; before it, an earlier run's
    firmware-job note is cleared when this run found its components current
    (inside :func:`rollout_options` only).
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
            rows = await _guarded(server, work)
            if any(r.result is Outcome.FAILED for r in rows):
                failed.append(server.identity)
        await _settle_earlier_note(server, rows)
        if after is not None:
            try:
                await after(server, rows)
            except Exception:  # noqa: BLE001 - bookkeeping never undoes the server's result
                get_run_logger().exception("%s: after the update", server.identity)
        return rows

    per_server = await asyncio.gather(*(one(s) for s in servers))
    return [row for rows in per_server for row in rows]


async def _settle_earlier_note(server: ServerRecord, rows: list[ComponentResult]) -> None:
    """Clear an earlier run's job note when this run found its components current."""
    opts = run_options()
    if opts is None or opts.dry_run or not JobNotes.earlier(server):
        return
    current = {r.component for r in rows if r.result is Outcome.CURRENT}
    try:
        await opts.jobs.settle_current(server, current)
    except RackflowError as exc:
        get_run_logger().warning("%s: firmware-job note not cleared: %s", server.identity, exc)


async def _guarded(
    server: ServerRecord, work: Callable[[ServerRecord], Awaitable[list[ComponentResult]]]
) -> list[ComponentResult]:
    try:
        return await work(server)
    except Exception as exc:  # noqa: BLE001 - one server's crash must not end the others
        get_run_logger().exception("%s: unexpected failure", server.identity)
        return [
            ComponentResult(
                server=server.identity,
                component="*",
                result=Outcome.FAILED,
                message=f"{type(exc).__name__}: {exc}",
            )
        ]


async def update_component(
    server: ServerRecord, package: Package, opts: RolloutOptions, *, before: str | None
) -> ComponentResult:
    """Apply one package to one server and verify the installed version.

    OnReset: follow the job to Scheduled/Downloaded, reboot (graceful, then
    forced), follow it to Completed. Immediate: the iDRAC reboots the host
    itself when the component needs it. Either way: wait for the host and the
    BMC, then re-read the inventory. The job is noted in the inventory
    (intention before the request, job id before it is followed, cleared at
    the end). On a failure, or when cut off (a sub-flow deadline), the job
    is deleted if it never ran, still inside the maintenance window.

    Raises:
        ComponentFailed: The update failed (the row says why, and what became of the job).
    """
    started = time.monotonic()
    kind = str(package.component)
    row = ComponentResult(
        server=server.identity,
        component=kind,
        before=before,
        target=package.version,
        result=Outcome.FAILED,
    )
    held = opts.jobs.held.get(server.identity)
    if held:  # an earlier component's job may still be pending: start nothing beside it
        row.message = f"not started: {held}"
        raise ComponentFailed(row)
    job_id: str | None = None
    requested = False  # whether the update request may have been sent
    try:
        note = JobNotes.intention(run_id(), component=kind)
        await opts.jobs.note(server.identity, note)
        requested = True
        begun = await _start(server, package, opts)
        job_id = begun.job_id
        await opts.jobs.note(server.identity, {**note, "job": job_id})
        row.message = f"{begun.adopted}; " if begun.adopted else ""
        staged = await _stage(server, package, opts, job_id)
        if staged is not None and staged.reboot:
            row.message += f"reboot: {staged.reboot}; "
        applied = await _complete(server, package, opts, job_id, staged, before)
        opts.learn(applied.took_s, *_step(server, package, opts), "complete", _rebooted(staged))
        row.after, row.result = applied.version, Outcome.UPDATED
        row.message += f"{job_id} {applied.job.state}"
        await opts.jobs.note(server.identity, None)
    except RackflowError as exc:
        # Without a job id, a lost answer (not a refusal) may still have made a job.
        maybe = requested and isinstance(exc, TransportError | ServerError)
        done = await _settle(server, opts, job_id, maybe_started=maybe)
        row.message += str(exc) + (f"; {done}" if done else "")
        raise ComponentFailed(row) from exc
    except BaseException:  # cut off: the component's deadline, or the run cancelled
        # Awaits in a cancelled scope fail at once: settle the job shielded, bounded.
        done = "the job was not settled in time"
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _CLEANUP_S):
            done = await _settle(server, opts, job_id, maybe_started=requested)
        get_run_logger().error("%s %s: cut off; %s", server.identity, kind, done or "no job")
        raise
    finally:
        row.duration_s = round(time.monotonic() - started, 1)
    return row


async def _settle(
    server: ServerRecord, opts: RolloutOptions, job_id: str | None, *, maybe_started: bool
) -> str:
    """After a failure: delete the job if it never ran, settle the note (see JobNotes)."""
    return await opts.jobs.after_failure(
        server, [job_id] if job_id else [], maybe_started=maybe_started
    )


def _step(server: ServerRecord, package: Package, opts: RolloutOptions) -> tuple[str, ...]:
    """What makes two servers' steps alike (for the learned durations)."""
    return (server.model or "-", str(package.component), str(opts.apply_time))


def _rebooted(staged: StagedUpdate | None) -> bool:
    return staged is not None and staged.reboot is not None


async def _start(server: ServerRecord, package: Package, opts: RolloutOptions) -> StartedUpdate:
    """SimpleUpdate, or the job an earlier run recorded (or was cut off starting) for it."""
    assert server.bmc_address is not None and server.bmc_port is not None
    earlier = JobNotes.earlier(server)
    mine = earlier.get("component") == str(package.component)
    return await start_firmware_update(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        package,
        opts.apply_time,
        recorded=[j for j in [earlier.get("job"), *earlier.get("jobs", [])] if j],
        follow=earlier.get("job") if mine else None,
        interrupted=mine and not earlier.get("job"),
    )


async def _stage(
    server: ServerRecord, package: Package, opts: RolloutOptions, job_id: str
) -> StagedUpdate | None:
    """OnReset: the job to Scheduled/Downloaded, then the reboot (None for Immediate)."""
    if opts.apply_time is not ApplyTime.ON_RESET:
        return None
    assert server.bmc_address is not None and server.bmc_port is not None
    d = opts.deadlines
    staged = await reboot_when_staged(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        job_id,
        staged_s=d.job_staged_s,
        graceful_timeout_s=d.graceful_reboot_s,
        interval_s=d.poll_interval_s,
        expect_s=opts.expected(*_step(server, package, opts), "start"),
        progress=progress_key("firmware", server.identity, str(package.component)),
    )
    opts.learn(staged.staged_s, *_step(server, package, opts), "start")
    return staged


async def _complete(
    server: ServerRecord,
    package: Package,
    opts: RolloutOptions,
    job_id: str,
    staged: StagedUpdate | None,
    before: str | None,
) -> AppliedUpdate:
    assert server.bmc_address is not None and server.bmc_port is not None
    d = opts.deadlines
    rebooted = _rebooted(staged)
    artifact: UUID | None = staged.progress_artifact if staged is not None else None
    return await complete_firmware_update(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        package,
        before,
        job_id,
        rebooted=rebooted,
        host_back_s=d.host_back_s,
        job_done_s=d.job_done_s,
        interval_s=d.poll_interval_s,
        expect_s=opts.expected(*_step(server, package, opts), "complete", rebooted),
        progress=progress_key("firmware", server.identity, str(package.component)),
        progress_artifact=artifact,
    )


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
