"""At most one running job per machine: the ``machine-<id>`` lease.

Every flow that acts on a machine holds a Prefect global concurrency limit
named ``machine-<id>`` (limit 1) for as long as it acts, so two jobs on one
machine never interleave, across workers. The limit is created on first use:
with an unknown name Prefect would otherwise run unlimited (PREFECT.md). A
holder that dies frees the slot when its lease expires (~lease + 15 s).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.concurrency.asyncio import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    concurrency,
)
from prefect.runtime import flow_run

from clients.errors import PreconditionError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


class MachineBusyError(PreconditionError):
    """Another job holds the machine's lease.

    Args:
        machine: Machine id (service tag or FQDN).
        holders: Names of the flow runs acting on it.
        waited_s: How long we waited for it.
    """

    def __init__(self, *, machine: str, holders: list[str], waited_s: float) -> None:
        self.machine = machine
        self.holders = holders
        who = ", ".join(holders) or "another run"
        super().__init__(
            subject=f"machine {machine}",
            reason=f"machine busy with {who} (waited {waited_s:.0f} s)",
        )


def safe_limit_name(text: str) -> str:
    """A Prefect concurrency limit name (Prefect forbids ``/ % & > <``)."""
    return _UNSAFE.sub("_", text.strip())


def lease_name(machine: str) -> str:
    """The concurrency limit name of a machine."""
    return safe_limit_name(f"machine-{machine}")


def machine_tag(machine: str) -> str:
    """The flow-run tag that files a run in the machine's job history."""
    return f"machine:{machine.strip()}"


async def running_jobs(machine: str) -> list[str]:
    """Names of running flow runs tagged with this machine (for error messages)."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[machine_tag(machine)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            )
        )
    mine = str(flow_run.id) if flow_run.id else None
    return [f"{r.name} ({r.id})" for r in runs if str(r.id) != mine]


async def tag_current_run(machines: Sequence[str]) -> None:
    """File the current flow run under these machines (``rackflow jobs <id>``, the UI).

    Flows that act on many machines call this once, up front: one read and one
    write, instead of one racy read-modify-write per machine.
    """
    if not flow_run.id or not machines:
        return
    async with get_client() as client:
        run = await client.read_flow_run(flow_run.id)
        wanted = [t for t in dict.fromkeys(machine_tag(m) for m in machines) if t not in run.tags]
        if wanted:
            await client.update_flow_run(run.id, tags=[*run.tags, *wanted])


@asynccontextmanager
async def _acquire(name: str, *, wait_s: float, lease_duration_s: float) -> AsyncIterator[None]:
    """Acquire a limit slot, riding out a busy API server until ``wait_s`` is spent.

    A Prefect server on SQLite answers 503 ("database is locked") under fan-out;
    the client gives up after a few tries with ConcurrencySlotAcquisitionError.
    That is the server being busy, not the machine: try again while time remains.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        remaining = deadline - time.monotonic()
        try:
            cm = concurrency(
                name,
                occupy=1,
                timeout_seconds=max(1.0, remaining),
                strict=True,
                lease_duration=max(60.0, lease_duration_s),
            )
            await cm.__aenter__()
            break
        except ConcurrencySlotAcquisitionError:
            if time.monotonic() + delay >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    try:
        yield
    except BaseException as exc:
        await cm.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        await cm.__aexit__(None, None, None)


@asynccontextmanager
async def machine_lease(
    machine: str, *, wait_s: float = 3600.0, lease_duration_s: float = 60.0
) -> AsyncIterator[None]:
    """Hold the machine's lease (creating its limit on first use) while acting on it.

    The current flow run is tagged ``machine:<id>`` (if it is not already).

    Args:
        machine: Machine id (service tag or FQDN).
        wait_s: How long to wait for another job on the machine to finish.
        lease_duration_s: Lease renewal period; a crashed holder frees the slot
            after about this plus 15 s (on a real server: ephemeral servers do not
            run the service that reclaims expired leases). At least 60.

    Yields:
        Nothing; the body runs while the lease is held.

    Raises:
        MachineBusyError: The machine stayed busy for ``wait_s``.
    """
    name = lease_name(machine)
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, limit=1)
    try:
        async with _acquire(name, wait_s=wait_s, lease_duration_s=lease_duration_s):
            await tag_current_run([machine])
            yield
    except AcquireConcurrencySlotTimeoutError:
        raise MachineBusyError(
            machine=machine, holders=await running_jobs(machine), waited_s=wait_s
        ) from None
