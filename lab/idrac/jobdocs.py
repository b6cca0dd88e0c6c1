"""Redfish documents of iDRAC jobs: the Dell job view and the TaskService view."""

from __future__ import annotations

from typing import Any

from lab.idrac.documents import MANAGER_ID, V1, collection
from lab.idrac.jobs import Job

JOBS = f"{V1}/Managers/{MANAGER_ID}/Jobs"
TASKS = f"{V1}/TaskService/Tasks"


def dell_job(job: Job, *, path: str = JOBS) -> dict[str, Any]:
    """``GET /redfish/v1/Managers/iDRAC.Embedded.1/Jobs/JID_x`` (the source of truth).

    ``PercentComplete`` is omitted when the job has none (Scheduled,
    RebootPending, a running RepositoryUpdate), as real iDRACs do.
    """
    doc: dict[str, Any] = {
        "@odata.context": f"{V1}/$metadata#DellJob.DellJob",
        "@odata.id": f"{path}/{job.id}",
        "@odata.type": "#DellJob.v1_4_0.DellJob",
        "ActualRunningStartTime": None,
        "ActualRunningStopTime": None,
        "CompletionTime": job.completed_at,
        "Description": "Job Instance",
        "EndTime": "TIME_NA",
        "Id": job.id,
        "JobState": job.state,
        "JobType": job.job_type,
        "Message": job.message,
        "MessageArgs": [],
        "MessageArgs@odata.count": 0,
        "MessageId": job.message_id,
        "Name": job.name,
        "StartTime": "TIME_NOW",
        "TargetSettingsURI": None,
    }
    if job.percent is not None:
        doc["PercentComplete"] = job.percent
    return doc


def dell_jobs(jobs: list[Job], *, expanded: bool, path: str = JOBS) -> dict[str, Any]:
    """The Dell job collection (optionally ``$expand``-ed)."""
    doc = collection(path, "DellJobCollection", "JobQueue", [f"{path}/{j.id}" for j in jobs])
    doc["Description"] = "Collection of Job Instances"
    if expanded:
        doc["Members"] = [dell_job(j, path=path) for j in jobs]
    return doc


def task(job: Job) -> dict[str, Any]:
    """``GET /redfish/v1/TaskService/Tasks/JID_x``."""
    state, status = job.task_state()
    doc: dict[str, Any] = {
        "@odata.context": f"{V1}/$metadata#Task.Task",
        "@odata.id": f"{TASKS}/{job.id}",
        "@odata.type": "#Task.v1_4_3.Task",
        "Id": job.id,
        "Name": job.name,
        "Description": "Server Configuration and other Tasks running on iDRAC are listed here",
        "TaskState": state,
        "TaskStatus": status,
        "Messages": [
            {
                "Message": job.message,
                "MessageArgs": [],
                "MessageArgs@odata.count": 0,
                "MessageId": f"IDRAC.2.8.{job.message_id}",
            }
        ],
        "Messages@odata.count": 1,
        "Oem": {"Dell": dell_job(job)},
    }
    if job.percent is not None:
        doc["PercentComplete"] = job.percent
    return doc


def task_service() -> dict[str, Any]:
    """``GET /redfish/v1/TaskService``."""
    return {
        "@odata.id": f"{V1}/TaskService",
        "@odata.type": "#TaskService.v1_5_0.TaskService",
        "Id": "TaskService",
        "Name": "Task Service",
        "ServiceEnabled": True,
        "CompletedTaskOverWritePolicy": "Oldest",
        "LifeCycleEventOnTaskStateChange": True,
        "Status": {"Health": "OK", "State": "Enabled"},
        "Tasks": {"@odata.id": TASKS},
    }


def tasks(jobs: list[Job]) -> dict[str, Any]:
    """``GET /redfish/v1/TaskService/Tasks``."""
    return collection(TASKS, "TaskCollection", "Task Collection", [f"{TASKS}/{j.id}" for j in jobs])
