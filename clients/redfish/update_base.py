"""Shared plumbing of :class:`~clients.redfish.update.DellUpdates` (internal).

Paths of the Dell resources, job-id handling, and the wait that survives
an iDRAC resetting itself (see :mod:`clients.redfish.update_wait`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from clients.errors import PreconditionError, ProtocolError
from clients.redfish.client import RedfishClient
from clients.redfish.session import path_of
from clients.redfish.update_wait import wait_through_resets

__all__ = ["DellBase", "check_job_id", "json_body"]

T = TypeVar("T")

SYSTEM = "/redfish/v1/Systems/System.Embedded.1"
MANAGER = "/redfish/v1/Managers/iDRAC.Embedded.1"
JOBS = f"{MANAGER}/Jobs"
TASKS = "/redfish/v1/TaskService/Tasks"
UPDATE_SERVICE = "/redfish/v1/UpdateService"
SIMPLE_UPDATE = f"{UPDATE_SERVICE}/Actions/UpdateService.SimpleUpdate"
RESET = f"{SYSTEM}/Actions/ComputerSystem.Reset"
LC_STATUS = f"{MANAGER}/Oem/Dell/DellLCService/Actions/DellLCService.GetRemoteServicesAPIStatus"
DELETE_JOB_QUEUE = f"{MANAGER}/Oem/Dell/DellJobService/Actions/DellJobService.DeleteJobQueue"
_INSTALL = f"{SYSTEM}/Oem/Dell/DellSoftwareInstallationService/Actions"
INSTALL_FROM_REPOSITORY = f"{_INSTALL}/DellSoftwareInstallationService.InstallFromRepository"
REPO_UPDATE_LIST = f"{_INSTALL}/DellSoftwareInstallationService.GetRepoBasedUpdateList"
EXPAND = "?$expand=*($levels=1)"
_JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_job_id(job_id: str) -> str:
    """Refuse a job id that is not a safe URL path segment.

    Args:
        job_id: ``JID_123456789012``, ``JID_CLEARALL``, ...

    Returns:
        The job id.

    Raises:
        PreconditionError: Not a job id.
    """
    if not _JOB_ID.match(job_id):
        raise PreconditionError(subject="job_id", reason=f"not a job id: {job_id!r}")
    return job_id


class DellBase:
    """The iDRAC behind a Redfish client, a clock and a sleep (base of DellUpdates).

    Args:
        bmc: The Redfish client of the iDRAC (its session is used as is, never closed here).
        clock: Monotonic clock for wait deadlines (tests inject a fake one).
        sleep: Async sleep between polls (tests inject a fake one).
    """

    def __init__(
        self,
        bmc: RedfishClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bmc = bmc
        self._clock = clock
        self._sleep = sleep

    @property
    def bmc(self) -> RedfishClient:
        """The Redfish client this object acts through."""
        return self._bmc

    def _target(self, path: str) -> str:
        return self._bmc.base_url + path.split("?", 1)[0]

    def _job_id_from(self, response: httpx.Response, path: str) -> str:
        """Job id from ``Location`` (``/redfish/v1/TaskService/Tasks/JID_x``), else the body."""
        location = response.headers.get("Location")
        if not location:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                location = body.get("@odata.id") or body.get("Id")
        if not isinstance(location, str) or not location.strip("/"):
            raise ProtocolError(target=self._target(path), detail="no job Location in the answer")
        job_id = path_of(location).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if not _JOB_ID.match(job_id):
            raise ProtocolError(target=self._target(path), detail=f"odd job location {location!r}")
        return job_id

    def _wait_through_resets(
        self,
        fetch: Callable[[], Awaitable[T]],
        *,
        done: Callable[[T], bool],
        operation: Callable[[], str],
        timeout_s: float,
        interval_s: float,
        seen: Callable[[T], Awaitable[None]] | None = None,
    ) -> Awaitable[T]:
        return wait_through_resets(
            fetch,
            done=done,
            operation=operation,
            timeout_s=timeout_s,
            interval_s=interval_s,
            clock=self._clock,
            sleep=self._sleep,
            seen=seen,
        )


def json_body(response: httpx.Response, target: str) -> dict[str, Any]:
    """Decode an action's JSON answer.

    Args:
        response: A successful response.
        target: URL it came from.

    Returns:
        The JSON object.

    Raises:
        ProtocolError: Not JSON, or not an object.
    """
    try:
        body = response.json()
    except ValueError as exc:
        raise ProtocolError(target=target, detail="response is not JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError(target=target, detail="response is not a JSON object")
    return body
