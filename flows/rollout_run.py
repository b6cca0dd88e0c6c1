"""One run of a firmware procedure: its deadlines, options and result rows.

The run's settings every server shares and its shared helpers (the
inventory handle and job notes, the thread pool for vCenter calls, the
machine leases, what the run learned), and the rows it reports. The flows
import these through :mod:`flows.rollout`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import statistics
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from clients.errors import PreconditionError
from clients.firmware.repository import Package
from clients.firmware.sources import ApplyTime
from clients.inventory import ServerRecord
from clients.redfish.models import ComponentKind
from clients.vsphere import MaintenanceOptions
from tasks.firmware import load_credentials, resolve_firmware_package
from tasks.firmware_notes import JobNotes
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


@dataclass
class RolloutOptions:
    """Settings every server of one run shares, and the run's shared helpers.

    ``inventory`` is the run's handle for its notes, ``jobs`` its notes of the
    firmware jobs it started; ``threads`` runs the sync tasks (vCenter) of the
    servers in flight; ``releases`` gives machine leases back in the
    background; ``packages`` and ``took`` are what the run learned (packages
    per model, how long steps take). Built by :func:`rollout_options`.
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
    jobs: JobNotes
    maintenance: MaintenanceOptions = field(default_factory=MaintenanceOptions)
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


# The options of the run in progress (set by rollout_options).
_RUN_OPTIONS: contextvars.ContextVar[RolloutOptions | None] = contextvars.ContextVar(
    "rackflow_run_options", default=None
)


def run_options() -> RolloutOptions | None:
    """The options of the run in progress (inside :func:`rollout_options`), else None."""
    return _RUN_OPTIONS.get()


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
                opts = RolloutOptions(
                    **settings,
                    inventory=inventory,
                    threads=threads,
                    releases=releases,
                    jobs=JobNotes(inventory, settings["credentials_block"]),
                )
                token = _RUN_OPTIONS.set(opts)  # for rolling(): its callers pass no options
                try:
                    yield opts
                finally:
                    _RUN_OPTIONS.reset(token)
    finally:
        threads.shutdown(wait=False)


def run_id() -> str:
    """This flow run's id (for records of pending changes)."""
    return str(flow_run.id) if flow_run.id else "local"
