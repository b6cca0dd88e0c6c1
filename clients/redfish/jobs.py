"""Dell iDRAC job, Lifecycle Controller and repository-update views (IDRAC.md).

Frozen pydantic models read from the Dell job view
(``/redfish/v1/Managers/iDRAC.Embedded.1/Jobs/JID_x``), TaskService as a
fallback, ``DellLCService.GetRemoteServicesAPIStatus`` and the CIM XML of
``GetRepoBasedUpdateList``. Missing optional fields are None, never a KeyError.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from clients.errors import ProtocolError
from clients.firmware._xml import local_name, parse_untrusted_xml
from clients.redfish.models import ComponentKind, classify_component

__all__ = [
    "DONE_STATES",
    "FAILURE_STATES",
    "FINAL_STATES",
    "STAGED_STATES",
    "SUCCESS_STATES",
    "DellJob",
    "JobState",
    "LcStatus",
    "RepoUpdate",
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


class RepoUpdate(_Frozen):
    """One ``DCIM_RepoUpdateSWID`` instance of ``GetRepoBasedUpdateList``: one pending update."""

    display_name: str | None = None
    package_name: str | None = None
    package_path: str | None = None
    package_version: str | None = None
    component_id: str | None = None
    component_type: str | None = None
    criticality: str | None = None
    reboot_type: str | None = None
    target: str | None = None
    installed_versions: tuple[str, ...] = ()
    job_id: str | None = None

    @property
    def installed_version(self) -> str | None:
        """The version installed now (first of ``ComponentInstalledVersion``)."""
        return self.installed_versions[0] if self.installed_versions else None

    @property
    def criticality_label(self) -> str | None:
        """1 Recommended, 2 Urgent, 3 Optional."""
        labels = {"1": "Recommended", "2": "Urgent", "3": "Optional"}
        return labels.get(self.criticality or "", self.criticality)

    @property
    def fqdd(self) -> str | None:
        """FQDD from ``Target``: ``DCIM:INSTALLED#741__BIOS.Setup.1-1`` -> ``BIOS.Setup.1-1``."""
        if not self.target:
            return None
        if "__" in self.target:
            return self.target.split("__", 1)[1]
        parts = self.target.split("#")  # DCIM:INSTALLED#iDRAC.Embedded.1-1#IDRACinfo
        if len(parts) > 1:
            return parts[1] or None
        return self.target  # a bare FQDD

    @property
    def kind(self) -> ComponentKind:
        """Component kind from the FQDD and component id."""
        return classify_component(self.fqdd or "", self.component_id)


_FIELDS = {
    "DisplayName": "display_name",
    "PackageName": "package_name",
    "PackagePath": "package_path",
    "PackageVersion": "package_version",
    "ComponentID": "component_id",
    "ComponentType": "component_type",
    "Criticality": "criticality",
    "RebootType": "reboot_type",
    "Target": "target",
    "JobID": "job_id",
}


def _values(prop: Any) -> list[str]:
    """VALUE children of a PROPERTY, or of a PROPERTY.ARRAY's VALUE.ARRAY."""
    out: list[str] = []
    for node in prop.iter():
        if local_name(node.tag) == "VALUE" and node.text and node.text.strip():
            out.append(node.text.strip())
    return out


def parse_package_list(xml_text: str, *, target: str) -> list[RepoUpdate]:
    """Parse the CIM XML ``PackageList`` of ``GetRepoBasedUpdateList``.

    Args:
        xml_text: The ``PackageList`` string.
        target: Where it came from.

    Returns:
        One RepoUpdate per ``INSTANCENAME CLASSNAME="DCIM_RepoUpdateSWID"``.

    Raises:
        ProtocolError: Malformed XML.
    """
    root = parse_untrusted_xml(xml_text, target=target)
    updates: list[RepoUpdate] = []
    # An iDRAC sends VALUE.NAMEDINSTANCE > INSTANCENAME (the key) + INSTANCE (the
    # PROPERTY elements); elements without PROPERTY children (the key) are skipped.
    for instance in root.iter():
        if local_name(instance.tag) not in ("INSTANCE", "INSTANCENAME"):
            continue
        if instance.get("CLASSNAME") not in (None, "DCIM_RepoUpdateSWID"):
            continue
        if not any(local_name(p.tag).startswith("PROPERTY") for p in instance):
            continue
        fields: dict[str, Any] = {}
        for prop in instance:
            name = prop.get("NAME")
            values = _values(prop)
            if name == "ComponentInstalledVersion":
                fields["installed_versions"] = tuple(values)
            elif name in _FIELDS and values:
                fields[_FIELDS[name]] = values[0]
        updates.append(RepoUpdate(**fields))
    return updates
