"""At most one running job per machine: the ``machine-<id>`` lease.

Every flow that acts on a machine holds a Prefect global concurrency limit
named ``machine-<id>`` (limit 1) for as long as it acts, so two jobs on one
machine never interleave, across workers. The limit is created on first use
(or for a whole fleet up front, :mod:`tasks.lease_limits`): with an unknown
name Prefect would otherwise run unlimited (PREFECT.md). The slot is taken,
renewed and released straight through the run's API client (see ``_Lease``
for why not ``concurrency()``). A holder that dies frees the slot when its
lease expires (~lease + 15 s).

A run is filed under the machine (tag ``machine:<id>``) before it waits for
the lease, so runs waiting or giving up show in the machine's history too;
the holder labels its run while it holds the lease, so a "machine busy"
error names the holder, not the others waiting (:mod:`tasks.lease_history`).
A stop request (``rackflow cancel``) is honoured while waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run

from clients.errors import PreconditionError
from tasks.lease_history import (
    holder_label,
    lease_holders,
    machine_tag,
    mark_holder,
    tag_current_run,
)
from tasks.lease_limits import (
    ensure_limits_later,
    ensure_machine_limits,
    lease_name,
    safe_limit_name,
)

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

__all__ = [
    "LeaseReleases",
    "LeaseWaitStopped",
    "MachineBusyError",
    "MachineLeaseLost",
    "StopCheck",
    "ensure_machine_limits",
    "holder_label",
    "lease_holders",
    "lease_name",
    "machine_lease",
    "machine_tag",
    "prepare_machine_leases",
    "safe_limit_name",
    "tag_current_run",
]

logger = logging.getLogger("rackflow.tasks.lease")

_RENEW_FRACTION = 0.75
_RENEW_ATTEMPTS = 3
# Releases of slots granted to a caller cancelled meanwhile (kept referenced until done).
_orphans: set[asyncio.Future[None]] = set()

StopCheck = Callable[[], Awaitable[str | None]]
"""Tells why to stop waiting for the lease (e.g. :func:`tasks.cancel.stop_requested`), or None."""


class MachineBusyError(PreconditionError):
    """Another job holds the machine's lease.

    Args:
        machine: Machine id (service tag or FQDN).
        holders: Names of the flow runs holding it (empty: not a flow run, or unknown).
        waited_s: How long we waited for it.
    """

    def __init__(self, *, machine: str, holders: list[str], waited_s: float) -> None:
        self.machine = machine
        self.holders = holders
        who = ", ".join(holders) or "another job"
        super().__init__(
            subject=f"machine {machine}",
            reason=f"machine busy with {who} (waited {waited_s:.0f} s)",
        )


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


class LeaseWaitStopped(PreconditionError):
    """A stop was requested while the run waited for the machine's lease (nothing was done).

    Args:
        machine: Machine id.
        why: The stop check's reason.
        waited_s: How long the run had waited.
    """

    def __init__(self, *, machine: str, why: str, waited_s: float) -> None:
        self.machine = machine
        self.why = why
        super().__init__(
            subject=f"machine {machine}",
            reason=f"{why} while waiting {waited_s:.0f} s for the machine's lease",
        )


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
        background.add(ensure_limits_later(machines[first:]))


class _Lease:
    """One slot of a ``machine-<id>`` limit, held with a Prefect lease, on the run's client.

    Prefect's ``concurrency()`` starts per limit name a service with its own
    API client, and per lease a thread with another client that renews at
    once: with a fleet that was a fifth of the flow's CPU. Here: one request to
    take the slot (again after 423 Locked, when Retry-After says), one to give
    it back, a renewal only when held that long. A lease the server forgot, or
    that fails to renew three times, cancels the holder (as ``strict=True``).
    """

    def __init__(
        self, client: PrefectClient, machine: str, duration_s: float, *, label: bool = True
    ) -> None:
        self.client = client
        self.label = label
        self.machine = machine
        self.name = lease_name(machine)
        self.duration_s = duration_s
        self.lease_id: UUID | None = None
        self.lost: str | None = None
        # The holder label is written beside the body, not before it: a rollout
        # hands slots from server to server and this is off its critical path.
        self._marking: asyncio.Task[None] | None = None

    async def take(self, deadline: float, stop: StopCheck | None, stop_every_s: float) -> bool:
        """Take the slot; False when ``deadline`` (monotonic) passed first.

        Raises:
            LeaseWaitStopped: ``stop`` said to stop while waiting.
        """
        holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None
        delay, started = 0.5, time.monotonic()
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
                    if self.label:
                        self._marking = asyncio.create_task(
                            mark_holder(self.client, self.machine, held=True)
                        )
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
            await self._wait(min(pause, remaining), stop, stop_every_s, started)

    async def _wait(
        self, seconds: float, stop: StopCheck | None, every_s: float, started: float
    ) -> None:
        """Sleep before asking again, looking for a stop request every ``every_s``."""
        end = time.monotonic() + seconds
        while True:
            if stop is not None:
                why = await stop()
                if why:
                    waited = time.monotonic() - started
                    raise LeaseWaitStopped(machine=self.machine, why=why, waited_s=waited)
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, every_s) if stop is not None else left)

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

    async def marked(self) -> None:
        """Wait for the holder label (before the lease's client closes, and before unmarking)."""
        if self._marking is not None:
            with contextlib.suppress(Exception):  # best effort (mark_holder logs its errors)
                await asyncio.shield(self._marking)

    async def release(self) -> None:
        """Give the slot back (best effort: an unreleased lease expires by itself)."""
        await self._release(self.lease_id, unmark=self.label)

    async def _release(self, lease_id: object, *, unmark: bool = False) -> None:
        if lease_id is None:
            return
        try:
            # Its own client context: a release in the background outlives the lease's.
            async with get_client() as client:
                if unmark:  # first: a waiting run names no holder rather than a past one
                    await mark_holder(client, self.machine, held=False)
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
    stop: StopCheck | None = None,
    stop_every_s: float = 5.0,
    label: bool = True,
) -> AsyncIterator[UUID]:
    """Hold the machine's lease (creating its limit on first use) while acting on it.

    The current flow run is tagged ``machine:<id>`` (if it is not already)
    before it waits, so a run waiting for the machine, or giving up, shows in
    the machine's history.

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
        stop: Asked while waiting: a reason stops the wait (:class:`LeaseWaitStopped`).
        stop_every_s: How often ``stop`` is asked while waiting.
        label: Label the run as the holder while it holds the lease, so that a busy
            error elsewhere names it (two API calls). Runs over a fleet (rollouts,
            tagged with every machine up front) pass False: a busy error then names
            the runs filed under the machine.

    Yields:
        The Prefect lease id (for diagnostics); the body runs while the lease is held.

    Raises:
        MachineBusyError: The machine stayed busy for ``wait_s``.
        MachineLeaseLost: The lease could not be renewed; the body was cancelled.
        LeaseWaitStopped: ``stop`` gave a reason before the lease was free.
    """
    deadline = time.monotonic() + wait_s
    if tag:
        await tag_current_run([machine])
    async with get_client() as client:
        lease = _Lease(client, machine, max(60.0, lease_duration_s), label=label)
        if ensure_limit:
            try:
                await client.upsert_global_concurrency_limit_by_name(lease.name, limit=1)
            except ObjectAlreadyExists:  # made meanwhile by another run: now it is updated
                await client.upsert_global_concurrency_limit_by_name(lease.name, limit=1)
        if not await lease.take(deadline, stop, stop_every_s):
            raise MachineBusyError(
                machine=machine, holders=await lease_holders(machine), waited_s=wait_s
            )
        holder = asyncio.current_task()
        assert holder is not None
        every = renew_every_s or lease.duration_s * _RENEW_FRACTION
        keeper = asyncio.create_task(lease.keep(holder, every))
        try:
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
            await lease.marked()  # done long ago in practice; "released" must come after it
            if releases is not None:
                releases.add(lease.release())
            else:
                await lease.release()
