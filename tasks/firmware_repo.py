"""Prefect tasks of a Dell catalog applied by the iDRAC itself (InstallFromRepository).

With ``ApplyUpdate`` True the iDRAC compares the catalog with its inventory
and spawns one Dell job per component it will update, asynchronously, while
its RepositoryUpdate job runs (IDRAC.md "Dell repository / catalog
updates"). These tasks start that, find the spawned jobs by diffing the job
queue, follow them together and verify every component against the target
version the dry run (``GetRepoBasedUpdateList``) announced, so "job
completed but version unchanged" is still a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from clients.errors import JobFailedError, TransportError
from clients.firmware.sources import DellCatalog
from clients.redfish.jobs import (
    DONE_STATES,
    STAGED_STATES,
    DellJob,
    JobState,
    RepoUpdate,
)
from clients.redfish.models import ComponentKind
from clients.redfish.update import DellUpdates
from clients.redfish.update_repo import UP_TO_DATE_CODE
from clients.redfish.update_wait import wait_through_resets
from tasks.firmware import _READ, _open
from tasks.firmware_jobs import (
    attempt_key,
    catalog_jobs_to_adopt,
    forget_queue,
    queue_before,
    recorded_catalog_jobs,
    remember_queue,
)
from tasks.retry import retry_on_transient


class CatalogJobs(BaseModel):
    """What InstallFromRepository (ApplyUpdate True) started on one iDRAC."""

    repository_job: str | None
    jobs: list[str]
    up_to_date: bool = False


class CatalogCheck(BaseModel):
    """One component of a catalog update after its job: installed version and verdict."""

    installed: str | None
    ok: bool
    job: str | None = None
    message: str


def is_idrac_job(job: DellJob) -> bool:
    """Whether a job updates the iDRAC (it needs no host reboot)."""
    return job.names(ComponentKind.IDRAC)


def _named_for(update: RepoUpdate, job: DellJob) -> bool:
    display = (update.display_name or "").lower()
    return job.names(update.kind) or bool(display and display in (job.name or "").lower())


def match_jobs(updates: list[RepoUpdate], jobs: Iterable[DellJob]) -> list[DellJob | None]:
    """The spawned job of each update, recognised by its name ("Firmware Update: BIOS").

    A job that failed before the iDRAC read its package keeps a bare name
    ("Firmware Update"): when exactly one update and one job are left over,
    they belong together.

    Returns:
        One job (or None) per update, in order.
    """
    free = list(jobs)
    found: list[DellJob | None] = []
    for update in updates:
        job = next((j for j in free if _named_for(update, j)), None)
        if job is not None:
            free.remove(job)
        found.append(job)
    if found.count(None) == 1 and len(free) == 1:
        found[found.index(None)] = free[0]
    return found


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_transient
)
async def start_catalog_update(
    address: str,
    port: int,
    credentials_block: str,
    catalog: DellCatalog,
    *,
    reboot_needed: bool,
    timeout_s: float,
    interval_s: float = 5.0,
    recorded: list[str] | None = None,
    follow: list[str] | None = None,
    interrupted: list[ComponentKind] | None = None,
) -> CatalogJobs:
    """Apply a catalog with InstallFromRepository and find the component jobs it spawns.

    Check-then-act, by job id (see :mod:`tasks.firmware_jobs`): the jobs an
    earlier run recorded are followed while any is unfinished; a retry whose
    request's answer was lost, or a re-run after a run killed before it noted
    the ids (``interrupted``), adopts the jobs made since; any other
    unfinished job refuses the start ("not started by rackflow").

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        catalog: Where the iDRAC reads the catalog (a mirror or Dell's).
        reboot_needed: Let the iDRAC reboot the host itself (apply time Immediate).
        timeout_s: Deadline of the RepositoryUpdate job, and of the job queue settling.
        interval_s: Pause between reads.
        recorded: Job ids rackflow recorded for this server (they never block).
        follow: An earlier run's catalog jobs (its RepositoryUpdate job and component jobs).
        interrupted: Components an earlier run was killed applying, before noting its jobs.

    Returns:
        The RepositoryUpdate job and the component jobs, or ``up_to_date`` (SUP029).

    Raises:
        PreconditionError: An unfinished job rackflow did not record.
        JobFailedError: The RepositoryUpdate job failed (catalog unreadable...).
        DeadlineExceeded: The repository job or the job queue did not settle in time.
    """
    key = attempt_key(address)
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        queue = await dell.jobs()
        earlier = recorded_catalog_jobs(queue, follow or [])
        if earlier is not None:
            get_run_logger().info("%s: following the recorded jobs %s", address, earlier)
            return CatalogJobs(repository_job=earlier[0], jobs=earlier[1])
        adopted = catalog_jobs_to_adopt(
            address, queue, recorded or [], interrupted, queue_before(key)
        )
        known = {j.id for j in queue} - {j.id for j in adopted}
        repo_id = next((j.id for j in adopted if j.is_repository_update), None)
        if adopted:
            forget_queue(key)
            get_run_logger().info(
                "%s: adopting jobs of an interrupted start: %s",
                address,
                ", ".join(j.describe() for j in adopted),
            )
        else:
            remember_queue(key, queue)  # kept when the request fails: the retry adopts its jobs
            share = catalog.share()
            repo_id = await dell.install_from_repository(
                host=share.host,
                share_type=share.share_type,
                share_name=share.share_name,
                catalog_file=share.catalog_file,
                apply_update=True,
                reboot_needed=reboot_needed,
                ignore_cert_warning=catalog.ignore_cert_warning,
            )
            forget_queue(key)
        if repo_id is not None:
            known.add(repo_id)
            if await _nothing_to_update(dell, repo_id, timeout_s=timeout_s, interval_s=interval_s):
                return CatalogJobs(repository_job=repo_id, jobs=[], up_to_date=True)
        jobs = await _spawned_jobs(dell, known, timeout_s=timeout_s, interval_s=interval_s)
    return CatalogJobs(repository_job=repo_id, jobs=jobs)


async def _nothing_to_update(
    dell: DellUpdates, repo_id: str, *, timeout_s: float, interval_s: float
) -> bool:
    """Wait for the RepositoryUpdate job; True when it says SUP029 (up to date)."""
    try:
        job = await dell.wait_for_job(repo_id, timeout_s=timeout_s, interval_s=interval_s)
    except JobFailedError as exc:
        # Some firmware ends the job Failed with SUP029: still "up to date".
        if any(UP_TO_DATE_CODE in m for m in exc.messages):
            return True
        raise
    return (job.message_id or "").endswith(UP_TO_DATE_CODE)


async def _spawned_jobs(
    dell: DellUpdates, known: set[str], *, timeout_s: float, interval_s: float
) -> list[str]:
    """New component jobs: the queue minus ``known``, once two reads in a row agree.

    The iDRAC creates them asynchronously; after the RepositoryUpdate job ends
    they all exist, the second read makes sure no late one is missed.
    """
    reads: list[list[str]] = []

    async def settled() -> bool:
        ids = [j.id for j in await dell.jobs() if j.id not in known and not j.is_repository_update]
        same = bool(reads) and set(reads[-1]) == set(ids)
        reads.append(ids)
        return same

    await wait_through_resets(
        settled,
        done=bool,
        operation=lambda: f"job queue of {dell.bmc.base_url} to settle after InstallFromRepository",
        timeout_s=timeout_s,
        interval_s=interval_s,
        clock=time.monotonic,
        sleep=asyncio.sleep,
    )
    return reads[-1]


@task(cache_policy=NO_CACHE, **_READ)
async def wait_for_firmware_jobs(
    address: str,
    port: int,
    credentials_block: str,
    job_ids: list[str],
    *,
    staged: bool,
    timeout_s: float,
    interval_s: float = 5.0,
    progress: str | None = None,
) -> list[DellJob]:
    """Follow several Dell jobs at once (one job-queue read per poll).

    A failed job does not end the wait: the iDRAC runs the others anyway,
    and the caller reads every job's final state. Survives the iDRAC
    resetting itself (its own update).

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        job_ids: ``JID_...`` to follow.
        staged: Stop at Scheduled/Downloaded (OnReset before the reboot), else at completion.
        timeout_s: Deadline for all of them.
        interval_s: Pause between reads.
        progress: Key of a progress artifact (mean percent of the jobs).

    Returns:
        The jobs, in ``job_ids`` order; a job gone from the queue comes back ``Unknown``.

    Raises:
        DeadlineExceeded: Some job not there in ``timeout_s`` (named with its last state).
    """
    wanted = STAGED_STATES | DONE_STATES if staged else DONE_STATES
    artifact = await acreate_progress_artifact(0.0, key=progress) if progress else None
    last: list[list[DellJob]] = []

    def settled(job: DellJob) -> bool:
        return job.is_failure or job.state in wanted

    async def seen(jobs: list[DellJob]) -> None:
        changed = not last or [(j.state, j.percent_complete) for j in last[0]] != [
            (j.state, j.percent_complete) for j in jobs
        ]
        last[:] = [jobs]
        if artifact is not None and changed:
            done = [100 if settled(j) else (j.percent_complete or 0) for j in jobs]
            states = ", ".join(f"{j.id} {j.state}" for j in jobs)
            await aupdate_progress_artifact(
                artifact, sum(done) / max(1, len(done)), description=states
            )

    def operation() -> str:
        waiting = [j for j in (last[0] if last else []) if not settled(j)]
        states = ", ".join(f"{j.id} {j.state}" for j in waiting) or "never read"
        return f"jobs to reach {'/'.join(sorted(wanted))} (waiting: {states})"

    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)

        async def fetch() -> list[DellJob]:
            queue = {j.id: j for j in await dell.jobs()}
            return [queue.get(i) or _vanished(i) for i in job_ids]

        return await wait_through_resets(
            fetch,
            done=lambda jobs: all(settled(j) for j in jobs),
            operation=operation,
            timeout_s=timeout_s,
            interval_s=interval_s,
            clock=time.monotonic,
            sleep=asyncio.sleep,
            seen=seen,
        )


def _vanished(job_id: str) -> DellJob:
    return DellJob(
        id=job_id,
        state=JobState.UNKNOWN.value,
        message="no longer in the iDRAC job queue (deleted?)",
    )


@task(cache_policy=NO_CACHE, **_READ)
async def verify_catalog_update(
    address: str,
    port: int,
    credentials_block: str,
    updates: list[RepoUpdate],
    jobs: list[DellJob],
) -> list[CatalogCheck]:
    """Re-read the inventory: each component must be at the catalog's target version.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        updates: The dry run's list (component, installed and target version).
        jobs: The component jobs in their final states (failures are named in the checks).

    Returns:
        One check per update, in order: ok only when the target version is installed.

    Raises:
        TransportError: A component is not in the inventory yet (retried).
    """
    async with await _open(address, port, credentials_block) as bmc:
        inventory = [c for c in await bmc.firmware_inventory() if c.state in (None, "Installed")]
    checks = []
    for update, job in zip(updates, match_jobs(updates, jobs), strict=True):
        same_id = [c for c in inventory if c.component_id == update.component_id]
        found = [c for c in same_id if c.fqdd == update.fqdd] or [
            c for c in same_id if c.kind is update.kind
        ]
        versions = sorted({c.version for c in found if c.version})
        if not versions:
            raise TransportError(target=address, reason=f"no {update.fqdd} in the inventory yet")
        ok = update.package_version in versions
        checks.append(
            CatalogCheck(
                installed=", ".join(versions),
                ok=ok,
                job=job.id if job else None,
                message=_verdict(update, versions, job, ok),
            )
        )
    return checks


def _verdict(update: RepoUpdate, versions: list[str], job: DellJob | None, ok: bool) -> str:
    if ok:
        return f"{job.id} {job.state}" if job else "installed"
    if job is not None and job.is_failure:
        return str(JobFailedError(job=job.id, state=job.state, messages=job.messages()))
    how = f"{job.id} {job.state}" if job else "no iDRAC job recognised as its own"
    return (
        f"{update.kind} still at {', '.join(versions)} after the update "
        f"(expected {update.package_version}; {how})"
    )


@task(cache_policy=NO_CACHE, **_READ)
async def check_catalog_compliance(
    address: str,
    port: int,
    credentials_block: str,
    catalog: DellCatalog,
    *,
    timeout_s: float,
    interval_s: float = 5.0,
) -> list[RepoUpdate]:
    """Dry run of a catalog on the iDRAC: what it would update (nothing is applied).

    InstallFromRepository with ApplyUpdate False, wait for the job, then
    GetRepoBasedUpdateList. "Nothing to update" (HTTP 400 SUP029) is an empty list.

    Returns:
        One entry per component the catalog has a newer package for.
    """
    share = catalog.share()
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        job_id = await dell.install_from_repository(
            host=share.host,
            share_type=share.share_type,
            share_name=share.share_name,
            catalog_file=share.catalog_file,
            apply_update=False,
            ignore_cert_warning=catalog.ignore_cert_warning,
        )
        await dell.wait_for_job(job_id, timeout_s=timeout_s, interval_s=interval_s)
        return await dell.repo_update_list()
