"""Dell iDRAC job, Lifecycle Controller and repository-update views (IDRAC.md).

Frozen pydantic models read from the Dell job view
(``/redfish/v1/Managers/iDRAC.Embedded.1/Jobs/JID_x``), TaskService as a
fallback, and ``DellLCService.GetRemoteServicesAPIStatus``; which pending
jobs are whose (names, states that have not run). The CIM XML of
``GetRepoBasedUpdateList`` is parsed in :mod:`clients.redfish.update_repo_list`
(re-exported here). Missing optional fields are None, never a KeyError.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from clients.errors import ProtocolError
from clients.redfish.models import ComponentKind
from clients.redfish.update_repo_list import RepoUpdate, parse_package_list

__all__ = [
    "DONE_STATES",
    "FAILURE_STATES",
    "FINAL_STATES",
    "JOB_NAME_WORDS",
    "NOT_RUN_STATES",
    "STAGED_STATES",
    "SUCCESS_STATES",
    "DellJob",
    "JobState",
    "LcStatus",
    "RepoUpdate",
    "interrupted_starts",
    "parse_package_list",
]


class JobState(StrEnum):
    """Dell ``JobState`` values."""

    NEW = "New"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    RUNNING = "Running"
    WAITING = "Waiting"
    READY_FOR_EXECUTION = "ReadyForExecution"
    PENDING_ACTIVATION = "PendingActivation"
    REBOOT_PENDING = "RebootPending"
    REBOOT_COMPLETED = "RebootCompleted"
    REBOOT_FAILED = "RebootFailed"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "CompletedWithErrors"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


# CompletedWithErrors is a success with a warning (the update applied; a
# sub-step complained): it is returned, with its message, not raised.
SUCCESS_STATES = frozenset(
    {JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.REBOOT_COMPLETED}
)
# Where a firmware job (JID_) ends: RebootCompleted is a success on the way,
# the job still moves on to Completed (and the inventory changes then).
DONE_STATES = frozenset({JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS})
FAILURE_STATES = frozenset({JobState.FAILED, JobState.REBOOT_FAILED, JobState.UNKNOWN})
FINAL_STATES = SUCCESS_STATES | FAILURE_STATES
# Where an OnReset update waits for the host reboot.
STAGED_STATES = frozenset({JobState.SCHEDULED, JobState.DOWNLOADED})
# A job in these states has flashed nothing yet: deleting it is safe (a Running
# job cannot be deleted on its own, and deleting it would be no undo anyway).
# RebootPending: an Immediate job waiting for the reboot the iDRAC is about to do.
NOT_RUN_STATES = frozenset(
    {
        JobState.NEW,
        JobState.SCHEDULING,
        JobState.SCHEDULED,
        JobState.DOWNLOADING,
        JobState.DOWNLOADED,
        JobState.WAITING,
        JobState.READY_FOR_EXECUTION,
        JobState.REBOOT_PENDING,
    }
)
# How Dell job names spell a component ("Firmware Update: Network" is a NIC).
JOB_NAME_WORDS = {
    ComponentKind.IDRAC: ("idrac",),
    ComponentKind.BIOS: ("bios",),
    ComponentKind.CPLD: ("cpld",),
    ComponentKind.RAID: ("raid",),
    ComponentKind.NIC: ("nic", "network"),
    ComponentKind.BACKPLANE: ("backplane",),
}
_FIRMWARE_JOB_NAME = "firmware update"
# "The Job was in running state and made no progress for the allocated time."
HUNG_MESSAGE_IDS = ("JCP052",)

# Redfish TaskState -> Dell JobState, for the TaskService fallback.
_TASK_STATES = {
    "New": JobState.NEW,
    "Starting": JobState.SCHEDULING,
    "Running": JobState.RUNNING,
    "Suspended": JobState.WAITING,
    "Interrupted": JobState.WAITING,
    # A task "Pending" has not started: not a staged OnReset job, keep waiting.
    "Pending": JobState.WAITING,
    "Stopping": JobState.RUNNING,
    "Service": JobState.RUNNING,
    "Cancelling": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Killed": JobState.FAILED,
    "Exception": JobState.FAILED,
    "Cancelled": JobState.FAILED,
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _percent(value: Any) -> int | None:
    """PercentComplete: absent on some iDRAC versions, a string on others."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return max(0, min(100, int(value)))
    if isinstance(value, str) and value.strip().isdigit():
        return max(0, min(100, int(value.strip())))
    return None


class DellJob(_Frozen):
    """One iDRAC job as the Dell job view (or, failing that, TaskService) shows it."""

    id: str
    state: str
    message: str | None = None
    message_id: str | None = None
    percent_complete: int | None = None
    job_type: str | None = None
    name: str | None = None
    source: Literal["dell", "task"] = "dell"

    @property
    def is_hung(self) -> bool:
        """Whether the iDRAC declared the job hung (JCP052)."""
        return (self.message_id or "").endswith(HUNG_MESSAGE_IDS)

    @property
    def is_failure(self) -> bool:
        """Failed, RebootFailed, Unknown, or hung."""
        return self.state in FAILURE_STATES or self.is_hung

    @property
    def is_success(self) -> bool:
        """Completed, CompletedWithErrors or RebootCompleted."""
        return self.state in SUCCESS_STATES and not self.is_hung

    @property
    def is_final(self) -> bool:
        """Whether the job will not change any more."""
        return self.is_success or self.is_failure

    @property
    def has_run(self) -> bool:
        """Whether the job may have flashed something (it is past :data:`NOT_RUN_STATES`)."""
        return self.state not in NOT_RUN_STATES

    @property
    def is_firmware_update(self) -> bool:
        """A firmware job (SimpleUpdate, or one component of a repository update)."""
        if self.job_type:
            return self.job_type.lower() == "firmwareupdate"
        return (self.name or "").lower().startswith(_FIRMWARE_JOB_NAME)

    @property
    def is_repository_update(self) -> bool:
        """The RepositoryUpdate job of InstallFromRepository itself."""
        return (self.job_type or "").lower() == "repositoryupdate" or "repository update" in (
            self.name or ""
        ).lower()

    def names(self, kind: ComponentKind) -> bool:
        """Whether the job's name says it updates this component ("Firmware Update: BIOS")."""
        name = (self.name or "").lower()
        return any(w in name for w in JOB_NAME_WORDS.get(kind, (str(kind),)))

    def may_update(self, kind: ComponentKind) -> bool:
        """A firmware job that names this component, or names none yet.

        The iDRAC names a job after its component only once it has read the
        package ("Firmware Update" while downloading); a job of a known other
        component is not this one.

        Args:
            kind: The component.
        """
        if not self.is_firmware_update:
            return False
        return self.names(kind) or (self.name or "").strip().lower() == _FIRMWARE_JOB_NAME

    def describe(self) -> str:
        """``JID_x (Firmware Update: BIOS, Scheduled)``, for messages."""
        return f"{self.id} ({self.name or 'unnamed'}, {self.state})"

    def messages(self) -> list[str]:
        """The job's message with its id, for errors and reports."""
        if not self.message:
            return [self.message_id] if self.message_id else []
        return [f"{self.message_id}: {self.message}" if self.message_id else self.message]

    @classmethod
    def from_dell_job(cls, data: Mapping[str, Any], *, target: str) -> DellJob:
        """Build from ``/Managers/iDRAC.Embedded.1/Jobs/JID_x``.

        Args:
            data: The decoded DellJob resource.
            target: URL it came from.

        Returns:
            The job.

        Raises:
            ProtocolError: No ``Id`` or no ``JobState``.
        """
        job_id, state = _text(data, "Id"), _text(data, "JobState")
        if job_id is None or state is None:
            raise ProtocolError(target=target, detail="job without Id or JobState")
        return cls(
            id=job_id,
            state=state,
            message=_text(data, "Message"),
            message_id=_text(data, "MessageId"),
            percent_complete=_percent(data.get("PercentComplete")),
            job_type=_text(data, "JobType"),
            name=_text(data, "Name"),
        )

    @classmethod
    def from_task(cls, data: Mapping[str, Any], *, target: str) -> DellJob:
        """Build from ``/redfish/v1/TaskService/Tasks/JID_x``.

        Uses the embedded ``Oem.Dell`` job when the iDRAC includes one; else
        maps ``TaskState`` / ``TaskStatus`` onto Dell job states.

        Args:
            data: The decoded Task resource.
            target: URL it came from.

        Returns:
            The job (``source="task"``).

        Raises:
            ProtocolError: No ``Id``, or neither a Dell job nor a ``TaskState``.
        """
        oem = data.get("Oem")
        dell = oem.get("Dell") if isinstance(oem, Mapping) else None
        if isinstance(dell, Mapping) and _text(dell, "JobState"):
            merged = {"Id": data.get("Id"), **dell}
            return cls.from_dell_job(merged, target=target).model_copy(update={"source": "task"})
        job_id, task_state = _text(data, "Id"), _text(data, "TaskState")
        if job_id is None or task_state is None:
            raise ProtocolError(target=target, detail="task without Id or TaskState")
        state = _TASK_STATES.get(task_state, JobState.UNKNOWN)
        status = _text(data, "TaskStatus")
        if state == JobState.COMPLETED and status == "Critical":
            state = JobState.FAILED
        elif state == JobState.COMPLETED and status == "Warning":
            state = JobState.COMPLETED_WITH_ERRORS
        messages = data.get("Messages")
        last = messages[-1] if isinstance(messages, list) and messages else {}
        last = last if isinstance(last, Mapping) else {}
        return cls(
            id=job_id,
            state=state.value,
            message=_text(last, "Message"),
            message_id=_text(last, "MessageId"),
            percent_complete=_percent(data.get("PercentComplete")),
            name=_text(data, "Name"),
            source="task",
        )


def interrupted_starts(pending: list[DellJob], components: list[ComponentKind]) -> list[DellJob]:
    """The jobs an interrupted start of these components may have left, if unambiguous.

    A run killed between its update request and recording the job id in the
    inventory leaves a note "starting <components>" without a job id. The
    run's pre-check had found no pending job it had not recorded, and it held
    the machine's lease: a pending job that no run recorded was created since
    (the Dell job views have no creation time to check it by). Each component
    may account for one firmware job naming it (or none yet), plus one
    RepositoryUpdate job for a catalog; with two candidates for one component,
    none is taken (a person must look).

    Args:
        pending: Unfinished jobs no rackflow run recorded.
        components: What the interrupted run was starting.

    Returns:
        The jobs to treat as that run's own.
    """
    taken: list[DellJob] = []
    for kind in components:
        fits = [j for j in pending if j.may_update(kind) and j not in taken]
        named = [j for j in fits if j.names(kind)]
        pick = named if len(named) == 1 else fits
        if len(pick) == 1:
            taken.append(pick[0])
    repository = [j for j in pending if j.is_repository_update]
    if components and len(repository) == 1:
        taken.append(repository[0])
    return taken


class LcStatus(_Frozen):
    """``DellLCService.GetRemoteServicesAPIStatus``: is the iDRAC ready for jobs."""

    status: str | None = None
    lc_status: str | None = None
    server_status: str | None = None
    rt_status: str | None = None

    @property
    def ready(self) -> bool:
        """``Status`` Ready and, when reported, ``LCStatus`` Ready.

        ``ServerStatus`` is informative only (OutOfPOST, PoweredOff, ... on real iDRACs).
        """
        return self.status == "Ready" and self.lc_status in (None, "Ready")

    @classmethod
    def from_redfish(cls, data: Mapping[str, Any]) -> LcStatus:
        """Build from the action's JSON answer.

        Args:
            data: The decoded answer.

        Returns:
            The status.
        """
        return cls(
            status=_text(data, "Status"),
            lc_status=_text(data, "LCStatus"),
            server_status=_text(data, "ServerStatus"),
            rt_status=_text(data, "RTStatus"),
        )
