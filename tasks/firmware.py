"""Prefect tasks of firmware updates on Dell iDRACs (one task per real operation).

Every task takes the BMC's address and the credentials block NAME and opens
its own session (logged out in a ``finally``): clients are not task inputs
(PREFECT.md). Actions are written check-then-act, so a retry or a re-run
after a crash never starts a second job or a second reboot. Starting a job
and deleting one are in :mod:`tasks.firmware_jobs`; what follows a started
job in :mod:`tasks.firmware_finish`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field

from blocks.redfish import RedfishCredentials
from clients.errors import PreconditionError
from clients.firmware.repository import Package, PackageResolver
from clients.firmware.sources import DellCatalog, DirectUrl, HttpRepository
from clients.redfish import RedfishClient
from clients.redfish.jobs import DellJob, interrupted_starts
from clients.redfish.models import ComponentKind, FirmwareComponent
from clients.redfish.update import DellUpdates
from tasks.retry import retry_on_transient

Source = HttpRepository | DellCatalog | DirectUrl

_READ = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}


# A loaded credentials block is kept this long, for one flow run (see load_credentials).
_CREDENTIALS_TTL_S = 60.0
_credentials: dict[tuple[str, str | None], tuple[float, asyncio.Task[RedfishCredentials]]] = {}
# Within one job state, progress is written at most this often (each write is an API call).
_PROGRESS_EVERY_S = 5.0


class Readiness(BaseModel):
    """What the pre-checks saw on a server."""

    power_state: str | None
    health: str | None
    model: str | None
    lc_status: str | None
    pending_jobs: list[str]
    firmware: list[FirmwareComponent] = Field(
        default_factory=list, description="Installed firmware (read when asked for)"
    )


async def load_credentials(credentials_block: str) -> RedfishCredentials:
    """The named ``RedfishCredentials`` block, loaded once per flow run and minute.

    Every task of a rollout opens its own session; loading the block each time
    is an API round trip (reading block documents was most of the Prefect
    server's work). The copy is kept for the current flow run and at most a
    minute: a new run reads the block afresh, a long one picks up a changed
    password soon. Tasks starting together share one load; a flow may call
    this first so that it is ready for its tasks.

    Args:
        credentials_block: Block name.

    Returns:
        The block.
    """
    key = (credentials_block, str(flow_run.id) if flow_run.id else None)
    now, loop = time.monotonic(), asyncio.get_running_loop()
    hit = _credentials.get(key)
    if hit is None or now - hit[0] >= _CREDENTIALS_TTL_S or hit[1].get_loop() is not loop:
        for old in [k for k, (at, _) in _credentials.items() if now - at >= _CREDENTIALS_TTL_S]:
            _credentials.pop(old, None)
        hit = _credentials[key] = (
            now,
            loop.create_task(RedfishCredentials.aload(credentials_block)),
        )
    try:
        return await asyncio.shield(hit[1])
    except BaseException:
        if _credentials.get(key) is hit:  # a failed load is not remembered
            del _credentials[key]
        raise


async def _open(address: str, port: int, credentials_block: str) -> RedfishClient:
    creds = await load_credentials(credentials_block)
    return creds.get_client(address, port=port)


class JobProgress:
    """A Dell job's progress artifact, written in the background of the wait.

    Updated when the job changes state, and within one state at most every
    five seconds (a real job moves 1% at a time). The writes (API calls) run
    one after the other beside the polling, never holding it up; a failed one
    is logged, never fails the update. One artifact follows a job across
    tasks: the first creates it, the next get its id. Await :meth:`aclose`.

    Args:
        key: Artifact key (:func:`progress_key`).
        job_id: The job, named in the artifact's description.
        artifact: The job's artifact, when an earlier task created it.
    """

    def __init__(self, key: str, job_id: str, artifact: UUID | None = None) -> None:
        self._job_id = job_id
        self._state: str | None = None
        self._at = 0.0
        self.artifact = artifact
        self._chain: asyncio.Task[None] = asyncio.create_task(self._create(key))

    async def _create(self, key: str) -> None:
        if self.artifact is None:
            self.artifact = await acreate_progress_artifact(0.0, key=key)

    async def __call__(self, job: DellJob) -> None:
        """Note one read of the job (``DellUpdates.wait_for_job(on_progress=...)``)."""
        now = time.monotonic()
        if job.percent_complete is None or (
            job.state == self._state and now - self._at < _PROGRESS_EVERY_S
        ):
            return
        self._state, self._at = job.state, now
        self._chain = asyncio.create_task(
            self._update(self._chain, float(job.percent_complete), f"{self._job_id}: {job.state}")
        )

    async def _update(self, before: asyncio.Task[None], percent: float, text: str) -> None:
        await asyncio.gather(before, return_exceptions=True)
        if self.artifact is not None:
            await aupdate_progress_artifact(self.artifact, percent, description=text)

    async def aclose(self) -> None:
        """Wait for the writes in flight."""
        try:
            await self._chain
        except Exception as exc:  # noqa: BLE001 - the artifact is for people; the update goes on
            get_run_logger().warning("progress artifact of %s not updated: %s", self._job_id, exc)


@asynccontextmanager
async def job_progress(
    key: str | None, job_id: str, artifact: UUID | None = None
) -> AsyncIterator[JobProgress | None]:
    """A :class:`JobProgress` for the block (None without a key), its writes awaited at the end.

    Args:
        key: Artifact key, or None for no artifact.
        job_id: The job.
        artifact: The job's artifact, when an earlier task created it.

    Yields:
        The callback for ``DellUpdates.wait_for_job(on_progress=...)``.
    """
    progress = JobProgress(key, job_id, artifact) if key else None
    try:
        yield progress
    finally:
        if progress is not None:
            await progress.aclose()


def installed_of(
    components: list[FirmwareComponent], kind: ComponentKind, component_id: str | None = None
) -> list[FirmwareComponent]:
    """The installed instances of a component kind (one ``component_id`` when it matches).

    Args:
        components: A firmware inventory.
        kind: Component kind.
        component_id: Dell component id to narrow to, when known.

    Returns:
        The matching components.
    """
    found = [c for c in components if c.kind is kind and c.state in (None, "Installed")]
    if component_id:
        found = [c for c in found if c.component_id == component_id] or found
    return found


@task(cache_policy=TASK_SOURCE + INPUTS, cache_expiration=timedelta(minutes=5), **_READ)
async def resolve_firmware_package(
    source: Source, model: str | None, component: ComponentKind, component_id: str | None = None
) -> Package:
    """Pick the package for a component of a model from the firmware source.

    Args:
        source: Repository, catalog or direct URL.
        model: Server model, e.g. ``PowerEdge R640``.
        component: Component kind.
        component_id: The installed component's Dell id, when known.

    Returns:
        The package (URI and target version).

    Raises:
        PreconditionError: No package applies to this model and component.
    """
    async with PackageResolver() as resolver:
        return await resolver.resolve(
            source, model=model, component=component, component_id=component_id
        )


def not_ours(address: str, jobs: list[DellJob], *, candidates: int = 0) -> PreconditionError:
    """The refusal to start beside pending jobs rackflow did not record.

    Args:
        address: The BMC.
        jobs: The pending jobs.
        candidates: How many of them could have been rackflow's (more than one: ambiguous).

    Returns:
        The error to raise.
    """
    named = "; ".join(j.describe() for j in jobs)
    why = (
        f"{candidates} pending jobs could be rackflow's interrupted start; not guessing which: "
        if candidates > 1
        else ""
    )
    return PreconditionError(
        subject=address,
        reason=f"{why}pending job {named} not started by rackflow (not recorded in the "
        "inventory): let it finish or delete it, then re-run",
    )


@task(cache_policy=NO_CACHE, **_READ)
async def check_server_ready(
    address: str,
    port: int,
    credentials_block: str,
    own_jobs: list[str] | None = None,
    own_components: list[ComponentKind] | None = None,
    read_firmware: bool = False,
) -> Readiness:
    """Pre-checks: BMC reachable, Lifecycle Controller ready, no pending jobs, health.

    With ``read_firmware`` the installed firmware is read in the same session,
    for the caller's plan (which components need an update).

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        own_jobs: Jobs rackflow recorded in the inventory (an earlier run's):
            these do not count as "pending", the re-run follows them.
        own_components: Components an earlier run was starting jobs for. With
            no job recorded (killed between the request and noting the id),
            one pending job per component that fits is that run's
            (:func:`~clients.redfish.jobs.interrupted_starts`); with a job
            recorded, nothing else is.
        read_firmware: Also read the installed firmware (``Readiness.firmware``).

    Returns:
        What was seen.

    Raises:
        PreconditionError: A check failed (the reason names it); nothing was touched.
        TransportError: The BMC did not answer (retried, then the server is skipped).
    """
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        system = await dell.system()
        lc = await dell.lc_status()
        pending = [j for j in await dell.pending_jobs() if j.id not in (own_jobs or [])]
        if not own_jobs and own_components:
            # Killed between its request and noting the job id: that run's job is not foreign.
            theirs = interrupted_starts(pending, own_components)
            pending = [j for j in pending if j not in theirs]
        firmware = (
            [c for c in await bmc.firmware_inventory() if c.state in (None, "Installed")]
            if read_firmware and lc.ready and not pending
            else []
        )
    seen = Readiness(
        power_state=system.power_state,
        health=system.health_rollup or system.health,
        model=system.model,
        lc_status=lc.status,
        pending_jobs=[f"{j.id} {j.name or ''} ({j.state})".strip() for j in pending],
        firmware=firmware,
    )
    if not lc.ready:
        raise PreconditionError(
            subject=address, reason=f"Lifecycle Controller not ready ({lc.status})"
        )
    if pending:
        raise not_ours(address, pending)
    if (seen.health or "").lower() == "critical":
        raise PreconditionError(subject=address, reason="system health is Critical")
    return seen


@task(cache_policy=NO_CACHE, **_READ)
async def read_component_versions(
    address: str,
    port: int,
    credentials_block: str,
    component: ComponentKind,
    component_id: str | None = None,
) -> list[FirmwareComponent]:
    """Read the installed firmware of one component kind (all instances)."""
    async with await _open(address, port, credentials_block) as bmc:
        return installed_of(await bmc.firmware_inventory(), component, component_id)


def progress_key(*parts: str) -> str:
    """An artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:120]


def summarize_versions(components: list[FirmwareComponent]) -> str | None:
    """One version string for a list of instances (``2.19.1`` or ``22.0.1, 22.5.7``)."""
    versions = sorted({c.version for c in components if c.version})
    return ", ".join(versions) or None
