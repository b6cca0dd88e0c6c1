"""Prefect tasks that own Dell firmware jobs by id: start one, and delete what never ran.

rackflow follows only jobs whose id it recorded in the inventory (the
``pending:firmware-job`` note), never a job it merely finds by name: job
names are unreliable ("Firmware Update" until the package is read, "Network"
for a NIC) and a queued job may be someone else's. Two windows have no
recorded id yet, and each has its rule:

- a Prefect retry of a start whose answer was lost: the job ids in the queue
  before the request are kept (in this process, by task run), and the retry
  adopts the one firmware job created since, instead of starting a second;
- a run killed between the request and the note (or cut off with the answer
  lost): the note says "starting <component>" without a job; the next run
  adopts the one pending job that fits
  (:func:`clients.redfish.jobs.interrupted_starts`) and refuses to guess
  between several. Dell's job views carry no creation time: "created after
  the note" rests on that run's pre-check, which had found no pending job
  rackflow did not record, while it held the machine's lease; the version
  check after the job catches a wrong one.

Any other pending job stops the start: "not started by rackflow".
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from pydantic import BaseModel, Field

from clients.errors import NotFoundError, RemoteError
from clients.firmware.repository import Package
from clients.firmware.sources import ApplyTime
from clients.redfish.jobs import DellJob, interrupted_starts
from clients.redfish.models import ComponentKind
from clients.redfish.update import DellUpdates
from tasks.firmware import _open, not_ours
from tasks.retry import retry_on_transient

# Job ids in the queue before a start's request, by task run id. A retry of the
# same task run (the answer to its request was lost) adopts the job created
# since; kept in memory only: a killed run is covered by the inventory note.
_BEFORE: dict[str, frozenset[str]] = {}
_BEFORE_MAX = 1000


def attempt_key(address: str) -> str | None:
    """This task run (the same across its retries), with the BMC; None outside a task run."""
    return f"{task_run.id}:{address}" if task_run.id else None


def remember_queue(key: str | None, queue: Iterable[DellJob]) -> None:
    """Note the jobs in the queue before a start's request (see :func:`queue_before`)."""
    if key is None:
        return
    while len(_BEFORE) >= _BEFORE_MAX:  # retries that never came: forget the oldest
        del _BEFORE[next(iter(_BEFORE))]
    _BEFORE[key] = frozenset(j.id for j in queue)


def queue_before(key: str | None) -> frozenset[str] | None:
    """The job ids an earlier attempt of this task run saw before its request (None: none sent)."""
    return _BEFORE.get(key) if key is not None else None


def forget_queue(key: str | None) -> None:
    """The start is settled (started, or adopted): a later retry has nothing to adopt."""
    if key is not None:
        _BEFORE.pop(key, None)


class StartedUpdate(BaseModel):
    """A firmware job started, or an earlier start's job adopted."""

    job_id: str = Field(description="The Dell job (JID_...)")
    state: str | None = Field(default=None, description="Its state when adopted (None: just made)")
    adopted: str | None = Field(
        default=None, description="Why an existing job is followed instead of a new one"
    )
    took_s: float = Field(default=0.0, description="How long the start took")


def choose_job(
    address: str,
    queue: list[DellJob],
    kind: ComponentKind,
    *,
    recorded: list[str],
    follow: str | None,
    interrupted: bool,
    before: frozenset[str] | None,
) -> tuple[DellJob | None, str | None]:
    """Which pending job a start adopts (None: start one), and why.

    Args:
        address: The BMC (for the error).
        queue: The whole Dell job queue.
        kind: The component being updated.
        recorded: Job ids rackflow recorded for this server (they never block).
        follow: The job an earlier run recorded for this component.
        interrupted: An earlier run was killed starting this component (no job id noted).
        before: The queue before this task run's earlier request, on a retry.

    Returns:
        The job to adopt (or None) and the reason.

    Raises:
        PreconditionError: A pending job rackflow did not record (or several candidates).
    """
    pending = [j for j in queue if not j.is_final]
    mine = next((j for j in pending if follow and j.id == follow), None)
    if mine is not None:
        return mine, f"following {mine.describe()}, recorded by an earlier run"
    unrecorded = [j for j in pending if j.id not in recorded]
    if before is not None:
        fits = [j for j in unrecorded if j.id not in before and j.may_update(kind)]
        why = "the answer to this start's request was lost"
    elif interrupted:
        fits = [j for j in interrupted_starts(unrecorded, [kind]) if j.is_firmware_update]
        why = "an earlier run was cut off while starting it (no job id noted)"
    else:
        fits, why = [], ""
    adopt = fits[0] if len(fits) == 1 else None
    blocking = [j for j in unrecorded if j is not adopt]
    if blocking:
        raise not_ours(address, blocking, candidates=len(fits))
    if adopt is None:
        return None, None
    return adopt, f"adopted {adopt.describe()}: {why}"


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_transient
)
async def start_firmware_update(
    address: str,
    port: int,
    credentials_block: str,
    package: Package,
    apply_time: ApplyTime,
    *,
    recorded: list[str] | None = None,
    follow: str | None = None,
    interrupted: bool = False,
) -> StartedUpdate:
    """Start SimpleUpdate, or adopt the job an earlier start of this update made.

    Returns as soon as the job exists: the caller records its id in the
    inventory before following it. One read of the job queue comes first
    (check-then-act, see the module docstring for what is adopted).

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        package: What to install.
        apply_time: OnReset or Immediate.
        recorded: Job ids rackflow recorded for this server (pending ones do not block).
        follow: The job an earlier run recorded for this component: followed while pending.
        interrupted: An earlier run was killed while starting this component.

    Returns:
        The job id, and why an existing job was adopted.

    Raises:
        PreconditionError: A pending job rackflow did not record; a bad package URI.
        RackflowError: The request failed (transient errors are retried).
    """
    started = time.monotonic()
    key = attempt_key(address)
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        queue = await dell.jobs()
        job, why = choose_job(
            address,
            queue,
            package.component,
            recorded=recorded or [],
            follow=follow,
            interrupted=interrupted,
            before=queue_before(key),
        )
        if job is not None:
            forget_queue(key)
            get_run_logger().info("%s: %s", address, why)
            return StartedUpdate(
                job_id=job.id,
                state=job.state,
                adopted=why,
                took_s=round(time.monotonic() - started, 3),
            )
        protocol = "HTTPS" if package.uri.lower().startswith("https:") else "HTTP"
        remember_queue(key, queue)  # kept when the request fails: the retry looks for its job
        job_id = await dell.simple_update(
            package.uri, transfer_protocol=protocol, apply_time=apply_time
        )
    forget_queue(key)
    return StartedUpdate(job_id=job_id, took_s=round(time.monotonic() - started, 3))


class JobCleanup(BaseModel):
    """What became of the jobs a failed update leaves behind."""

    deleted: list[str] = Field(default_factory=list, description="Deleted before they ran")
    finished: list[str] = Field(default_factory=list, description="Already final: nothing to do")
    left: list[str] = Field(
        default_factory=list, description="Still pending, NOT deleted (running, or refused)"
    )
    notes: list[str] = Field(default_factory=list, description="One line per job, for messages")

    @property
    def message(self) -> str:
        """The notes, joined (empty when every job had finished)."""
        return "; ".join(self.notes)


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_transient
)
async def delete_unstarted_jobs(
    address: str, port: int, credentials_block: str, job_ids: list[str]
) -> JobCleanup:
    """Delete, one by one, the given jobs that have not run yet (after a failure).

    A staged job left in the queue would flash at the next reboot, by
    anyone, outside any maintenance window. Jobs already final are left for
    the record; a job that has started (Running...) cannot be deleted on
    its own and is reported as left. Only these ids are touched, never the
    whole queue.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        job_ids: The run's jobs (``JID_...``).

    Returns:
        Deleted, finished and left jobs, with a line for each.

    Raises:
        RackflowError: The BMC could not be asked (transient errors are retried).
    """
    out = JobCleanup()
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        for job_id in job_ids:
            try:
                job = await dell.job(job_id)
            except NotFoundError:
                out.finished.append(job_id)
                continue
            if job.is_final:
                out.finished.append(job_id)
            elif job.has_run:
                out.left.append(job_id)
                out.notes.append(f"job {job.describe()} has started: cannot be deleted")
            else:
                await _delete(dell, job, out)
    return out


async def _delete(dell: DellUpdates, job: DellJob, out: JobCleanup) -> None:
    try:
        gone = await dell.delete_job(job.id)
    except RemoteError as exc:  # e.g. SUP018: it started meanwhile
        out.left.append(job.id)
        out.notes.append(f"job {job.describe()} NOT deleted: {exc}")
        return
    if gone:
        out.deleted.append(job.id)
        out.notes.append(f"job {job.id} deleted ({job.state}, never ran)")
    else:  # gone from the queue meanwhile
        out.finished.append(job.id)


def recorded_catalog_jobs(
    queue: list[DellJob], follow: list[str]
) -> tuple[str | None, list[str]] | None:
    """An earlier run's recorded catalog jobs, when any of them is still unfinished.

    Args:
        queue: The whole Dell job queue.
        follow: The ids that run recorded (its RepositoryUpdate job and component jobs).

    Returns:
        The RepositoryUpdate job and the component jobs still in the queue, or None.
    """
    by_id = {j.id: j for j in queue}
    mine = [by_id[i] for i in follow if i in by_id]
    if not any(not j.is_final for j in mine):
        return None
    return (
        next((j.id for j in mine if j.is_repository_update), None),
        [j.id for j in mine if not j.is_repository_update],
    )


def catalog_jobs_to_adopt(
    address: str,
    queue: list[DellJob],
    recorded: list[str],
    interrupted: list[ComponentKind] | None,
    before: frozenset[str] | None,
) -> list[DellJob]:
    """Unfinished jobs an interrupted catalog start made (see ``start_catalog_update``).

    Args:
        address: The BMC (for the error).
        queue: The whole Dell job queue.
        recorded: Job ids rackflow recorded for this server (they never block).
        interrupted: Components an earlier run was killed applying, before noting its jobs.
        before: The queue before this task run's earlier request, on a retry.

    Returns:
        The jobs to adopt (empty: start anew).

    Raises:
        PreconditionError: Another unfinished job rackflow did not record.
    """
    unrecorded = [j for j in queue if not j.is_final and j.id not in recorded]
    if before is not None:  # this task run's request was sent: its jobs are the new ones
        ours = [
            j
            for j in unrecorded
            if j.id not in before and (j.is_repository_update or j.is_firmware_update)
        ]
    elif interrupted:
        ours = interrupted_starts(unrecorded, interrupted)
    else:
        ours = []
    foreign = [j for j in unrecorded if j not in ours]
    if foreign:
        raise not_ours(address, foreign)
    return ours
