"""What the firmware procedures share: parameters, the run's options, the rolling
scheduler and the steps that update one component of one server.

No protocol code here: every step is a task from ``tasks/``. Sync tasks
(vCenter via pyVmomi) run in the run's own bounded thread pool so the
rollout's other servers keep moving; bookkeeping in the inventory (the
pending-change notes a crashed run is recovered from) goes through the run's
:class:`~tasks.inventory.RunInventory`, written before the step it protects.
The vCenter maintenance window is in :mod:`flows.maintenance_window`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from clients.errors import PreconditionError, RackflowError
from clients.firmware.repository import Package
from clients.firmware.sources import ApplyTime
from clients.inventory import ServerRecord
from clients.redfish.jobs import DONE_STATES
from clients.redfish.models import ComponentKind
from tasks.firmware import (
    StartedUpdate,
    load_credentials,
    progress_key,
    read_component_versions,
    resolve_firmware_package,
    start_firmware_update,
    summarize_versions,
)
from tasks.firmware_finish import AppliedUpdate, complete_firmware_update, reboot_server
from tasks.inventory import RunInventory
from tasks.lease import LeaseReleases, prepare_machine_leases

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
    """Settings every server of one run shares, and the run's shared helpers.

    ``inventory`` is the run's handle for its notes; ``threads`` runs the sync
    tasks (vCenter) of the servers in flight; ``releases`` gives machine leases
    back in the background; ``packages`` and ``took`` are what the run learned
    (packages per model, how long steps take). Built by :func:`rollout_options`.
    """

    credentials_block: str
    vcenter_block: str | None
    inventory_block: str | None
    apply_time: ApplyTime
    deadlines: StepDeadlines
    max_unavailable_per_cluster: int
    dry_run: bool
    inventory: RunInventory
    threads: ThreadPoolExecutor
    releases: LeaseReleases
    cluster_gates: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    packages: dict[tuple[Any, ...], asyncio.Future[Package]] = field(default_factory=dict)
    took: dict[tuple[Any, ...], list[float]] = field(default_factory=dict)

    def gate(self, cluster: str | None) -> asyncio.Semaphore:
        """Never more than ``max_unavailable_per_cluster`` hosts of a cluster in maintenance."""
        key = cluster or "-standalone-"
        if key not in self.cluster_gates:
            size = self.max_unavailable_per_cluster if cluster else 1_000_000
            self.cluster_gates[key] = asyncio.Semaphore(size)
        return self.cluster_gates[key]

    def expected(self, *step: Any) -> float | None:
        """How long a step took so far on servers like this one (None: not seen yet).

        The fastest time seen (reads found it done soonest after the fact), but
        never under half the median: one odd fast run (a job found already
        staged) must not make every later wait read early and often.

        Args:
            *step: What identifies the step: model, component, step name.
        """
        seen = self.took.get(step)
        if not seen:
            return None
        return max(min(seen), statistics.median(seen) / 2)

    def learn(self, took_s: float, *step: Any) -> None:
        """Remember how long a step took (the last 50 times per step)."""
        seen = self.took.setdefault(step, [])
        seen.append(took_s)
        del seen[:-50]

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a sync task in the run's thread pool (with the caller's Prefect context)."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self.threads, call)

    async def package(
        self, source: Any, model: str | None, kind: ComponentKind, component_id: str | None
    ) -> Package:
        """The package for a model's component, resolved once per run (every server shares it).

        Raises:
            PreconditionError: No package applies (remembered too).
        """
        key = (source.model_dump_json(), model, kind, component_id)
        future = self.packages.get(key)
        if future is None:
            future = self.packages[key] = asyncio.ensure_future(
                resolve_firmware_package(source, model, kind, component_id)
            )
        try:
            return await asyncio.shield(future)
        except PreconditionError:
            raise
        except BaseException:
            if self.packages.get(key) is future:  # a transient failure: the next server asks again
                del self.packages[key]
            raise


@asynccontextmanager
async def rollout_options(
    servers: Sequence[ServerRecord], *, max_parallel: int, **settings: Any
) -> AsyncIterator[RolloutOptions]:
    """Prepare a run over ``servers``; its settings and shared helpers, closed at its end.

    The credentials block is loaded (once for the run's tasks), the run is
    filed under every machine (its job history) and their lease limits are
    made (the first ``max_parallel`` now, the rest meanwhile); at the end the
    leases are given back and the inventory closed.

    Args:
        servers: The servers, in rollout order.
        max_parallel: Servers at once (sizes the thread pool).
        **settings: The other fields of :class:`RolloutOptions`.

    Yields:
        The options.
    """
    # Bounded: a thread per server in flight (a maintenance-mode entry holds one for
    # minutes), at most 64; the default executor has only cpu + 4.
    threads = ThreadPoolExecutor(
        max_workers=min(max_parallel, 64) + 2, thread_name_prefix="rackflow-sync"
    )
    try:
        async with LeaseReleases() as releases:
            machines = [s.identity for s in servers]
            # The credentials once, ready for the first servers' tasks (a bad name fails here).
            await asyncio.gather(
                load_credentials(settings["credentials_block"]),
                prepare_machine_leases(machines, first=max_parallel, background=releases),
            )
            async with await RunInventory.open(settings["inventory_block"]) as inventory:
                yield RolloutOptions(
                    **settings, inventory=inventory, threads=threads, releases=releases
                )
    finally:
        threads.shutdown(wait=False)


def run_id() -> str:
    """This flow run's id (for records of pending changes)."""
    return str(flow_run.id) if flow_run.id else "local"


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
    server's slot is given to the next server.
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
        if after is not None:
            try:
                await after(server, rows)
            except Exception:  # noqa: BLE001 - bookkeeping never undoes the server's result
                get_run_logger().exception("%s: after the update", server.identity)
        return rows

    per_server = await asyncio.gather(*(one(s) for s in servers))
    return [row for rows in per_server for row in rows]


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
    (intention before the request, job id after, cleared once verified).
    """
    started = time.monotonic()
    row = ComponentResult(
        server=server.identity,
        component=str(package.component),
        before=before,
        target=package.version,
        result=Outcome.FAILED,
    )
    note = {"run": run_id(), "job": None, "component": str(package.component)}
    try:
        # The intention first: a crash between the request and the note would
        # otherwise leave a job the next run takes for someone else's.
        await opts.inventory.note(server.identity, "firmware-job", note)
        begun = await _start(server, package, opts)
        job = begun.job
        await opts.inventory.note(server.identity, "firmware-job", {**note, "job": job.id})
        rebooted = opts.apply_time is ApplyTime.ON_RESET and job.state not in DONE_STATES
        if rebooted:
            row.message = f"reboot: {await _reboot(server, job.id, opts)}; "
        applied = await _complete(server, package, opts, begun, before, rebooted=rebooted)
        opts.learn(begun.took_s, *_step(server, package, opts), "start")
        opts.learn(applied.took_s, *_step(server, package, opts), "complete", rebooted)
        row.after, row.result = applied.version, Outcome.UPDATED
        row.message += f"{job.id} {applied.job.state}"
        await opts.inventory.note(server.identity, "firmware-job", None)
    except RackflowError as exc:
        row.message += str(exc)
        raise ComponentFailed(row) from exc
    finally:
        row.duration_s = round(time.monotonic() - started, 1)
    return row


def _step(server: ServerRecord, package: Package, opts: RolloutOptions) -> tuple[str, ...]:
    """What makes two servers' steps alike (for the learned durations)."""
    return (server.model or "-", str(package.component), str(opts.apply_time))


async def _start(server: ServerRecord, package: Package, opts: RolloutOptions) -> StartedUpdate:
    assert server.bmc_address is not None and server.bmc_port is not None
    d = opts.deadlines
    return await start_firmware_update(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        package,
        opts.apply_time,
        staged_s=d.job_staged_s if opts.apply_time is ApplyTime.ON_RESET else None,
        interval_s=d.poll_interval_s,
        expect_s=opts.expected(*_step(server, package, opts), "start"),
        progress=progress_key("firmware", server.identity, str(package.component)),
    )


async def _reboot(server: ServerRecord, job_id: str, opts: RolloutOptions) -> str:
    assert server.bmc_address is not None and server.bmc_port is not None
    return await reboot_server(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        graceful_timeout_s=opts.deadlines.graceful_reboot_s,
        interval_s=opts.deadlines.poll_interval_s,
        job_id=job_id,
    )


async def _complete(
    server: ServerRecord,
    package: Package,
    opts: RolloutOptions,
    begun: StartedUpdate,
    before: str | None,
    *,
    rebooted: bool,
) -> AppliedUpdate:
    assert server.bmc_address is not None and server.bmc_port is not None
    d = opts.deadlines
    return await complete_firmware_update(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        package,
        before,
        begun.job.id,
        rebooted=rebooted,
        host_back_s=d.host_back_s,
        job_done_s=d.job_done_s,
        interval_s=d.poll_interval_s,
        expect_s=opts.expected(*_step(server, package, opts), "complete", rebooted),
        progress=progress_key("firmware", server.identity, str(package.component)),
        progress_artifact=begun.progress_artifact,
    )


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
