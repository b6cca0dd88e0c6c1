"""Dell jobs of a simulated iDRAC: the job queue (``JID_...``) and its states.

A :class:`Job` is what both job views render: the Dell view
(``Managers/iDRAC.Embedded.1/Jobs/JID_x``, the source of truth) and the
TaskService view (``TaskService/Tasks/JID_x``), which forgets finished jobs
after a short lab delay and everything across an iDRAC reset.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = frozenset(
    {"Completed", "CompletedWithErrors", "Failed", "RebootFailed", "Unknown", "Killed"}
)
FAILED_STATES = frozenset({"Failed", "RebootFailed", "Unknown", "Killed"})

# JobState -> (TaskState, TaskStatus) of the TaskService view.
_TASK_STATE = {
    "New": ("New", "OK"),
    "Scheduling": ("Starting", "OK"),
    "Downloading": ("Running", "OK"),
    "Running": ("Running", "OK"),
    "RebootCompleted": ("Running", "OK"),
    "Scheduled": ("Pending", "OK"),
    "Downloaded": ("Pending", "OK"),
    "RebootPending": ("Pending", "OK"),
    "Waiting": ("Pending", "OK"),
    "Completed": ("Completed", "OK"),
    "CompletedWithErrors": ("Completed", "Warning"),
    "Failed": ("Exception", "Critical"),
    "RebootFailed": ("Exception", "Critical"),
    "Unknown": ("Exception", "Critical"),
    "Killed": ("Killed", "Critical"),
}


@dataclass
class Job:
    """One iDRAC job."""

    id: str
    name: str
    job_type: str
    created: float
    state: str = "New"
    message: str = "Job created."
    message_id: str = "JCP000"
    percent: int | None = 0
    finished: float | None = None
    completed_at: str | None = None
    target: str = ""
    #: Component kind (``bios``, ``idrac``...) and version, once the package was read.
    kind: str = ""
    new_version: str = ""
    #: Whether the TaskService still lists it (False after an iDRAC reset).
    in_task_service: bool = True
    task: asyncio.Task[Any] | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        """Whether the job reached a final state."""
        return self.state in FINAL_STATES

    def set(
        self, state: str, message: str, message_id: str, percent: int | None, *, now: float
    ) -> None:
        """Move the job to a new state.

        Args:
            state: Dell JobState.
            message: Job message.
            message_id: Dell message id (``RED001``...).
            percent: PercentComplete, or None to omit it (as real iDRACs sometimes do).
            now: Lab time.
        """
        self.state, self.message, self.message_id, self.percent = (
            state,
            message,
            message_id,
            percent,
        )
        if state in FINAL_STATES and self.finished is None:
            self.finished = now
            self.completed_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")

    def task_state(self) -> tuple[str, str]:
        """(TaskState, TaskStatus) of the TaskService view."""
        return _TASK_STATE.get(self.state, ("Running", "OK"))


class JobQueue:
    """The job queue of one iDRAC.

    Args:
        rng: Random source of job ids (per BMC, deterministic).
    """

    def __init__(self, *, rng: random.Random) -> None:
        # Real JIDs are 12 digits derived from time; keep them unique per BMC.
        self._next = rng.randrange(10**11, 9 * 10**11)
        self._jobs: dict[str, Job] = {}

    def create(self, *, name: str, job_type: str, now: float, target: str = "") -> Job:
        """Queue a new job in state New.

        Args:
            name: e.g. ``Firmware Update: BIOS``.
            job_type: ``FirmwareUpdate`` or ``RepositoryUpdate``.
            now: Lab time.
            target: FQDD the job updates, when known.

        Returns:
            The job.
        """
        self._next += 1
        job = Job(id=f"JID_{self._next:012d}", name=name, job_type=job_type, created=now)
        job.target = target
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        """A job by id."""
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every job, oldest first."""
        return list(self._jobs.values())

    def pending(self) -> list[Job]:
        """Jobs not in a final state."""
        return [j for j in self._jobs.values() if not j.final]

    def delete(self, job_id: str) -> Job | None:
        """Remove one job (cancelling its work).

        Returns:
            The removed job, or None if unknown.
        """
        job = self._jobs.pop(job_id, None)
        if job is not None and job.task is not None and not job.task.done():
            job.task.cancel()
        return job

    def clear(self) -> int:
        """Remove every job (``JID_CLEARALL``), cancelling running work.

        Returns:
            How many jobs were removed.
        """
        count = len(self._jobs)
        for job_id in list(self._jobs):
            self.delete(job_id)
        return count

    def visible_tasks(self, *, now: float, retention_s: float) -> list[Job]:
        """Jobs the TaskService still lists (iDRAC 7.00 drops finished tasks quickly)."""
        return [
            j
            for j in self._jobs.values()
            if j.in_task_service and (j.finished is None or now - j.finished <= retention_s)
        ]
