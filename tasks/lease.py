"""At most one running job per machine: the ``machine-<id>`` lease.

Every flow that acts on a machine holds a Prefect global concurrency limit
named ``machine-<id>`` (limit 1) for as long as it acts, so two jobs on one
machine never interleave, across workers. The limit is created on first use
(or for a whole fleet up front): with an unknown name Prefect would otherwise
run unlimited (PREFECT.md). The slot is taken, renewed and released straight
through the run's API client (see ``_Lease`` for why not ``concurrency()``).
A holder that dies frees the slot when its lease expires (~lease + 15 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, StateType
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run

from clients.errors import PreconditionError

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

logger = logging.getLogger("rackflow.tasks.lease")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_PAGE = 200
# Limits created at once: up front (the rollout waits for them), in the background (where
# they must leave room in the API client's pool of 16 connections to the leases themselves).
_CREATES_AT_ONCE = 8
_CREATES_LATER_AT_ONCE = 2
_RENEW_FRACTION = 0.75
_RENEW_ATTEMPTS = 3
# Releases of slots granted to a caller cancelled meanwhile (kept referenced until done).
_orphans: set[asyncio.Future[None]] = set()


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


async def prepare_machine_leases(
    machines: Sequence[str], *, first: int, background: LeaseReleases
) -> None:
    """File the run under every machine, and make their lease limits: the first now.

    A rollout over a fleet needs the limits of its first ``first`` machines
    (``max_parallel``) at once, the others only later: those are made in the
    background while the first ones are updated (a lease whose limit is not
    made yet makes it itself).

    Args:
        machines: Machine ids, in the order they are acted on.
        first: How many are needed at once.
        background: Where the rest is made (awaited when the run ends).
    """
    await asyncio.gather(tag_current_run(machines), ensure_machine_limits(machines[:first]))
    if machines[first:]:
        background.add(_ensure_later(machines[first:]))


async def _ensure_later(machines: Sequence[str]) -> None:
    try:
        await ensure_machine_limits(machines, at_once=_CREATES_LATER_AT_ONCE)
    except Exception as exc:  # noqa: BLE001 - each lease then makes its own limit
        logger.warning("lease limits not made ahead: %s", exc)


async def ensure_machine_limits(
    machines: Sequence[str], *, at_once: int = _CREATES_AT_ONCE
) -> None:
    """Create the lease limits of many machines at once, before acting on them.

    A run over a fleet calls this once and then ``machine_lease(...,
    ensure_limit=False)``: one paged read of the existing limits and a create
    per missing one, instead of a read (and maybe a create) per machine.

    Args:
        machines: Machine ids (service tags or FQDNs).
        at_once: Creates in flight at once.
    """
    wanted = {lease_name(m) for m in machines}
    if not wanted:
        return
    async with get_client() as client:
        ok: set[str] = set()
        offset = 0
        while True:
            page = await client.read_global_concurrency_limits(limit=_PAGE, offset=offset)
            ok.update(lim.name for lim in page if lim.limit == 1)
            offset += len(page)
            if len(page) < _PAGE:
                break
        gate = asyncio.Semaphore(at_once)

        async def create(name: str) -> None:
            async with gate:
                try:
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=1)
                    )
                except ObjectAlreadyExists:  # another run made it, or its limit is not 1
                    await client.upsert_global_concurrency_limit_by_name(name, limit=1)

        await asyncio.gather(*(create(n) for n in sorted(wanted - ok)))


class MachineLeaseLost(PreconditionError):
    """The machine's lease could not be renewed: the run stopped acting on it.

    Args:
        machine: Machine id.
        reason: What the renewal got back.
    """

    def __init__(self, *, machine: str, reason: str) -> None:
        self.machine = machine
        super().__init__(
            subject=f"machine {machine}",
            reason=f"lease lost ({reason}); stopped acting on it, another job may take it",
        )


class _Lease:
    """One slot of a ``machine-<id>`` limit, held with a Prefect lease, on the run's client.

    Prefect's ``concurrency()`` starts per limit name a service with its own
    API client, and per lease a thread with another client that renews at
    once: with a fleet that was a fifth of the flow's CPU. Here: one request to
    take the slot (again after 423 Locked, when Retry-After says), one to give
    it back, a renewal only when held that long. A lease the server forgot, or
    that fails to renew three times, cancels the holder (as ``strict=True``).
    """

    def __init__(self, client: PrefectClient, name: str, duration_s: float) -> None:
        self.client = client
        self.name = name
        self.duration_s = duration_s
        self.lease_id: UUID | None = None
        self.lost: str | None = None

    async def take(self, deadline: float) -> bool:
        """Take the slot; False when ``deadline`` (monotonic) passed first."""
        holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None
        delay = 0.5
        while True:
            request = asyncio.ensure_future(
                self.client.increment_concurrency_slots_with_lease(
                    names=[self.name],
                    slots=1,
                    mode="concurrency",
                    lease_duration=self.duration_s,
                    holder=holder,
                )
            )
            try:
                try:
                    response = await asyncio.shield(request)
                except asyncio.CancelledError:
                    # The slot may be granted after the caller is gone: give it back then.
                    request.add_done_callback(self._release_if_granted)
                    raise
                body = response.json()
                if body.get("limits"):
                    self.lease_id = UUID(body["lease_id"])
                    return True
                # No such limit (deleted after ensure_machine_limits?): Prefect would
                # let everyone in. Create it and ask again.
                await self._release(body.get("lease_id"))
                with contextlib.suppress(ObjectAlreadyExists):  # made meanwhile by another
                    await self.client.upsert_global_concurrency_limit_by_name(self.name, limit=1)
                pause = 0.0
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 423:  # another job holds it
                    pause = _retry_after(exc.response)
                elif exc.response.status_code in (429, 500, 502, 503, 504):  # a busy API
                    pause, delay = delay, min(delay * 2, 10.0)
                else:
                    raise
            except httpx.TransportError:
                pause, delay = delay, min(delay * 2, 10.0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(pause, remaining))

    async def keep(self, holder: asyncio.Task[Any], every_s: float) -> None:
        """Renew the lease every ``every_s`` until cancelled; cancel ``holder`` when it is lost.

        Lost: the server no longer knows it (410), or three renewals in a row failed.
        """
        assert self.lease_id is not None
        while True:
            await asyncio.sleep(every_s)
            for attempt in range(_RENEW_ATTEMPTS):
                try:
                    await self.client.renew_concurrency_lease(
                        lease_id=self.lease_id, lease_duration=self.duration_s
                    )
                    break
                except httpx.HTTPError as exc:
                    gone = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (
                        404,
                        410,
                    )
                    if gone or attempt + 1 == _RENEW_ATTEMPTS:
                        self.lost = f"{type(exc).__name__}: {exc}"
                        holder.cancel(f"lease of {self.name} lost")
                        return
                    await asyncio.sleep(2.0**attempt)

    def _release_if_granted(self, request: asyncio.Future[httpx.Response]) -> None:
        if request.cancelled() or request.exception() is not None:
            return
        release = asyncio.ensure_future(self._release(request.result().json().get("lease_id")))
        _orphans.add(release)
        release.add_done_callback(_orphans.discard)

    async def release(self) -> None:
        """Give the slot back (best effort: an unreleased lease expires by itself)."""
        await self._release(self.lease_id)

    async def _release(self, lease_id: object) -> None:
        if lease_id is None:
            return
        try:
            # Its own client context: a release in the background outlives the lease's.
            async with get_client() as client:
                await client.release_concurrency_slots_with_lease(lease_id=UUID(str(lease_id)))
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself; say so and go on
            logger.warning("could not release lease %s of %s: %s", lease_id, self.name, exc)


class LeaseReleases:
    """Lease bookkeeping finishing in the background, awaited when the run ends.

    A rolling update hands a server's rollout slot to the next server as soon
    as it is done with it; giving its lease back to Prefect (an API call) need
    not hold that up, nor need making the limits of machines acted on later
    (:func:`prepare_machine_leases`). Use as ``async with LeaseReleases() as
    releases:`` around everything that passes ``releases=`` to :func:`machine_lease`.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, release: Coroutine[Any, Any, None]) -> None:
        """Run a release (or other bookkeeping that never raises) in the background."""
        done = asyncio.create_task(release)
        self._tasks.add(done)
        done.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> LeaseReleases:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Shielded: a cancelled run still gives its leases back.
        await asyncio.shield(asyncio.gather(*self._tasks, return_exceptions=True))


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.1, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


@asynccontextmanager
async def machine_lease(
    machine: str,
    *,
    wait_s: float = 3600.0,
    lease_duration_s: float = 60.0,
    tag: bool = True,
    ensure_limit: bool = True,
    releases: LeaseReleases | None = None,
    renew_every_s: float | None = None,
) -> AsyncIterator[UUID]:
    """Hold the machine's lease (creating its limit on first use) while acting on it.

    The current flow run is tagged ``machine:<id>`` (if it is not already).

    Args:
        machine: Machine id (service tag or FQDN).
        wait_s: How long to wait for another job on the machine to finish.
        lease_duration_s: Lease renewal period; a crashed holder frees the slot
            after about this plus 15 s (on a real server: ephemeral servers do not
            run the service that reclaims expired leases). At least 60.
        tag: Tag the flow run; False when it was tagged already (``tag_current_run``
            with every machine of the run, up front).
        ensure_limit: Create the limit when missing; False when
            :func:`ensure_machine_limits` did for every machine of the run.
        releases: Give the lease back in the background of these (the caller
            goes on at once); None: before returning.
        renew_every_s: How often the lease is renewed (default: three quarters
            of its duration).

    Yields:
        The Prefect lease id (for diagnostics); the body runs while the lease is held.

    Raises:
        MachineBusyError: The machine stayed busy for ``wait_s``.
        MachineLeaseLost: The lease could not be renewed; the body was cancelled.
    """
    name = lease_name(machine)
    deadline = time.monotonic() + wait_s
    async with get_client() as client:
        if ensure_limit:
            await client.upsert_global_concurrency_limit_by_name(name, limit=1)
        lease = _Lease(client, name, max(60.0, lease_duration_s))
        if not await lease.take(deadline):
            raise MachineBusyError(
                machine=machine, holders=await running_jobs(machine), waited_s=wait_s
            )
        holder = asyncio.current_task()
        assert holder is not None
        every = renew_every_s or lease.duration_s * _RENEW_FRACTION
        keeper = asyncio.create_task(lease.keep(holder, every))
        try:
            if tag:
                await tag_current_run([machine])
            assert lease.lease_id is not None
            yield lease.lease_id
        except asyncio.CancelledError:
            if lease.lost is not None and holder.uncancel() == 0:
                raise MachineLeaseLost(machine=machine, reason=lease.lost) from None
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if releases is not None:
                releases.add(lease.release())
            else:
                await lease.release()
