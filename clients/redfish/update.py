"""Dell iDRAC9 firmware operations over Redfish (IDRAC.md "Updating one component").

:class:`DellUpdates` wraps a :class:`~clients.redfish.RedfishClient`:
SimpleUpdate, the Dell job view, job queue, host reset, Lifecycle
Controller readiness, repository (catalog) updates and their dry-run list.
Waits go through :func:`clients.polling.poll` with a deadline and survive
the iDRAC resetting itself mid-update (connection errors, 503, 404 on
TaskService, 401 until a new session).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection

import httpx

from clients.errors import (
    AuthError,
    BusyError,
    JobFailedError,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RemoteError,
)
from clients.firmware.sources import ApplyTime
from clients.redfish.jobs import DONE_STATES, DellJob
from clients.redfish.models import ComponentKind, FirmwareComponent
from clients.redfish.session import path_of
from clients.redfish.update_base import (
    DELETE_JOB_QUEUE,
    EXPAND,
    JOBS,
    SIMPLE_UPDATE,
    TASKS,
    UPDATE_SERVICE,
    check_job_id,
)
from clients.redfish.update_host import HostOps, ResetType
from clients.redfish.update_repo import RepositoryOps

__all__ = ["DellUpdates", "ProgressCallback", "ResetType"]

logger = logging.getLogger("rackflow.clients.redfish.update")

ProgressCallback = Callable[[DellJob], Awaitable[None] | None]

CLEAR_ALL = "JID_CLEARALL"
# "Invalid Job ID": the job is not (or no longer) in the queue.
_UNKNOWN_JOB = "SUP011"


class DellUpdates(HostOps, RepositoryOps):
    """Firmware operations on one iDRAC through an open :class:`RedfishClient`.

    The client's session is used as is (one session per BMC per run); this
    object does no I/O when built and never closes the client.

    Args:
        bmc: The Redfish client of the iDRAC.
        clock: Monotonic clock for wait deadlines (tests inject a fake one).
        sleep: Async sleep between polls (tests inject a fake one).
    """

    # -- SimpleUpdate -----------------------------------------------------------------

    async def simple_update(
        self,
        image_uri: str,
        *,
        transfer_protocol: str = "HTTP",
        apply_time: ApplyTime | str = ApplyTime.ON_RESET,
    ) -> str:
        """Start ``UpdateService.SimpleUpdate``; the iDRAC downloads ``image_uri`` itself.

        Args:
            image_uri: http(s) URL of the Dell Update Package.
            transfer_protocol: HTTP or HTTPS; must match the URI and be in the
                action's ``TransferProtocol@Redfish.AllowableValues``.
            apply_time: OnReset (job waits in Scheduled until the host reboots)
                or Immediate (the iDRAC reboots the host itself when needed).

        Returns:
            The job id (``JID_...``) from the ``Location`` header.

        Raises:
            PreconditionError: Bad URI, protocol not offered, or no SimpleUpdate action.
            ProtocolError: 2xx without a job location.
            RackflowError: Any error of the POST (BusyError, ServerError, ...).
        """
        protocol = transfer_protocol.strip().upper()
        try:
            when = ApplyTime(apply_time)
        except ValueError:
            raise PreconditionError(
                subject="apply_time", reason=f"{apply_time!r} is not OnReset or Immediate"
            ) from None
        url = httpx.URL(image_uri)
        if url.scheme not in ("http", "https") or not url.host:
            raise PreconditionError(subject="image_uri", reason=f"not an http(s) URL: {image_uri}")
        if protocol in ("HTTP", "HTTPS") and url.scheme.upper() != protocol:
            raise PreconditionError(
                subject="transfer_protocol",
                reason=f"{protocol} does not match the {url.scheme}:// image URI",
            )
        target, allowed = await self._simple_update_action()
        if allowed and protocol not in allowed:
            raise PreconditionError(
                subject="transfer_protocol",
                reason=f"{protocol} not offered by {self._bmc.base_url} (allowed: "
                f"{', '.join(allowed)})",
            )
        body = {
            "ImageURI": image_uri,
            "TransferProtocol": protocol,
            "@Redfish.OperationApplyTime": when.value,
        }
        response = await self._bmc.post(target, body)
        job_id = self._job_id_from(response, target)
        logger.info("SimpleUpdate on %s started %s (%s)", self._bmc.base_url, job_id, when.value)
        return job_id

    async def _simple_update_action(self) -> tuple[str, list[str]]:
        """The SimpleUpdate target and its allowed protocols (empty: not advertised)."""
        service = await self._bmc.get_json(UPDATE_SERVICE)
        actions = service.get("Actions")
        action = actions.get("#UpdateService.SimpleUpdate") if isinstance(actions, dict) else None
        if not isinstance(action, dict):
            raise PreconditionError(
                subject="SimpleUpdate", reason=f"{self._bmc.base_url} offers no SimpleUpdate action"
            )
        target = action.get("target")
        allowed = action.get("TransferProtocol@Redfish.AllowableValues")
        protocols = [str(p).upper() for p in allowed] if isinstance(allowed, list) else []
        return (path_of(target) if isinstance(target, str) else SIMPLE_UPDATE), protocols

    # -- jobs -------------------------------------------------------------------------

    async def job(self, job_id: str) -> DellJob:
        """Read one job from the Dell job view, TaskService only when the Dell view lacks it.

        Args:
            job_id: ``JID_...``.

        Returns:
            The job; ``percent_complete`` None when the iDRAC omits it.

        Raises:
            NotFoundError: Neither view knows the job.
            PreconditionError: Not a job id.
            RackflowError: Other errors of the GETs.
        """
        check_job_id(job_id)
        path = f"{JOBS}/{job_id}"
        try:
            data = await self._bmc.get_json(path)
        except NotFoundError as dell_missing:
            try:
                task = await self._bmc.get_json(f"{TASKS}/{job_id}")
            except NotFoundError:
                raise dell_missing from None
            return DellJob.from_task(task, target=self._target(f"{TASKS}/{job_id}"))
        return DellJob.from_dell_job(data, target=self._target(path))

    async def jobs(self) -> list[DellJob]:
        """Read the whole Dell job queue.

        Returns:
            Every job the iDRAC lists, in its order.

        Raises:
            ProtocolError: A malformed collection or job.
            RackflowError: Other errors of the GETs.
        """
        try:
            data = await self._bmc.get_json(JOBS + EXPAND)
        except (AuthError, BusyError, NotFoundError):
            raise
        except (RemoteError, ProtocolError):
            data = await self._bmc.get_json(JOBS)  # firmware that refuses $expand
        members = data.get("Members")
        if not isinstance(members, list):
            raise ProtocolError(target=self._target(JOBS), detail="no Members list")
        out: list[DellJob] = []
        for member in members:
            if not isinstance(member, dict):
                continue
            if "JobState" not in member:
                link = member.get("@odata.id")
                if not isinstance(link, str):
                    continue
                try:
                    member = await self._bmc.get_json(link)
                except NotFoundError:
                    continue  # deleted between list and read
            out.append(DellJob.from_dell_job(member, target=self._target(JOBS)))
        return out

    async def pending_jobs(self) -> list[DellJob]:
        """Jobs that are not finished (Scheduled ones included: they block the queue).

        Returns:
            The jobs not in a final state.
        """
        return [j for j in await self.jobs() if not j.is_final]

    async def clear_job_queue(self, job_id: str = CLEAR_ALL) -> None:
        """``DellJobService.DeleteJobQueue``: delete one job, or all (``JID_CLEARALL``).

        Args:
            job_id: A job id, ``JID_CLEARALL``, or ``JID_CLEARALL_FORCE`` (also
                restarts the Lifecycle Controller services: wait for LC ready after).

        Raises:
            RackflowError: The iDRAC refused.
        """
        await self._bmc.post(DELETE_JOB_QUEUE, {"JobID": check_job_id(job_id)}, idempotent=True)
        logger.info("job queue %s deleted on %s", job_id, self._bmc.base_url)

    async def delete_job(self, job_id: str) -> bool:
        """Delete one job through ``DellJobService.DeleteJobQueue`` (never the whole queue).

        Args:
            job_id: A ``JID_...`` (``JID_CLEARALL`` is refused: use :meth:`clear_job_queue`).

        Returns:
            True when deleted, False when the iDRAC no longer knows the job.

        Raises:
            PreconditionError: Not a single job id.
            RemoteError: The iDRAC refused, e.g. ``SUP018`` for a running job.
            RackflowError: Other errors of the POST.
        """
        if check_job_id(job_id).upper().startswith(CLEAR_ALL):
            raise PreconditionError(subject="job_id", reason=f"{job_id} is not one job")
        try:
            await self._bmc.post(DELETE_JOB_QUEUE, {"JobID": job_id}, idempotent=True)
        except NotFoundError:
            return False
        except RemoteError as exc:
            if (exc.code or "").endswith(_UNKNOWN_JOB):
                return False
            raise
        logger.info("job %s deleted on %s", job_id, self._bmc.base_url)
        return True

    async def wait_for_job(
        self,
        job_id: str,
        *,
        until: Collection[str] = DONE_STATES,
        timeout_s: float,
        interval_s: float = 5.0,
        on_progress: ProgressCallback | None = None,
    ) -> DellJob:
        """Poll a job until it reaches one of ``until``, Completed or CompletedWithErrors.

        Survives the iDRAC resetting itself: connection errors, 5xx, 503, 404
        and, after such an outage, a few 401s while it comes back, are "not
        yet". Completed also ends a wait for a staged state (an OnReset job
        that needed no reboot goes straight through). RebootCompleted is a
        success on the way, not the end of a firmware job; pass
        ``until=SUCCESS_STATES`` to stop there (reboot jobs end in it).

        Args:
            job_id: ``JID_...``.
            until: States that end the wait, e.g. ``STAGED_STATES`` for OnReset;
                default ``DONE_STATES`` (Completed, CompletedWithErrors).
            timeout_s: Deadline, from the first read.
            interval_s: Pause between reads.
            on_progress: Called (sync or async) whenever state, percent or message changes.

        Returns:
            The job in the state that ended the wait (CompletedWithErrors is returned).

        Raises:
            JobFailedError: Failed, RebootFailed, Unknown, or hung (JCP052).
            DeadlineExceeded: Not there in time (last error chained as ``__cause__``).
            AuthError, TlsError, RemoteError: Errors that are not a reset symptom.
        """
        check_job_id(job_id)
        wanted = frozenset(str(s) for s in until)
        last: list[DellJob] = []

        async def report(job: DellJob) -> None:
            if on_progress is not None and (not last or _progress(last[-1]) != _progress(job)):
                outcome = on_progress(job)
                if inspect.isawaitable(outcome):
                    await outcome
            last[:] = [job]

        def done(job: DellJob) -> bool:
            return job.is_failure or job.state in wanted or job.state in DONE_STATES

        job = await self._wait_through_resets(
            lambda: self.job(job_id),
            done=done,
            seen=report,
            operation=lambda: _job_operation(job_id, wanted, last[-1] if last else None),
            timeout_s=timeout_s,
            interval_s=interval_s,
        )
        if job.is_failure:
            raise JobFailedError(job=job.id, state=job.state, messages=job.messages())
        return job

    # -- inventory --------------------------------------------------------------------

    async def installed_versions(self) -> dict[ComponentKind, list[FirmwareComponent]]:
        """Installed firmware by component kind (Previous-/Available- members left out).

        Returns:
            Kind -> installed components (a server can have several NICs or RAID cards).
        """
        out: dict[ComponentKind, list[FirmwareComponent]] = {}
        for component in await self._bmc.firmware_inventory():
            if component.state in ("Installed", "Current"):
                out.setdefault(component.kind, []).append(component)
        return out


def _progress(job: DellJob) -> tuple[str, int | None, str | None]:
    return job.state, job.percent_complete, job.message


def _job_operation(job_id: str, wanted: frozenset[str], last: DellJob | None) -> str:
    text = f"job {job_id} to reach {'/'.join(sorted(wanted))}"
    if last is None:
        return text + " (never read)"
    pct = f" {last.percent_complete}%" if last.percent_complete is not None else ""
    return text + f" (last: {last.state}{pct}: {last.message or '-'})"
