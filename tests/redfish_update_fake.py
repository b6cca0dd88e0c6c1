"""A stateful fake iDRAC9 for firmware-operation tests (httpx.MockTransport).

Extends tests/redfish_fake.FakeIdrac with what IDRAC.md describes for
updates: SimpleUpdate (202 + Location), Dell jobs that advance one step per
read of the Dell job view, TaskService that forgets finished tasks, job
queue deletion, host reset and power, LC status, InstallFromRepository and
GetRepoBasedUpdateList (CIM XML or 400 SUP029), and an "outage" script that
plays an iDRAC resetting itself (refused connections, 503, 404, dropped
sessions, refused logins). No tests here.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx

from clients.redfish import RedfishClient
from tests.redfish_fake import BASE, PASSWORD, USER, FakeIdrac, error_response

MANAGER = "/redfish/v1/Managers/iDRAC.Embedded.1"
SYSTEM = "/redfish/v1/Systems/System.Embedded.1"
JOBS = f"{MANAGER}/Jobs"
TASKS = "/redfish/v1/TaskService/Tasks"
SIMPLE_UPDATE = "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"
LC_STATUS = f"{MANAGER}/Oem/Dell/DellLCService/Actions/DellLCService.GetRemoteServicesAPIStatus"
DELETE_QUEUE = f"{MANAGER}/Oem/Dell/DellJobService/Actions/DellJobService.DeleteJobQueue"
INSTALL = f"{SYSTEM}/Oem/Dell/DellSoftwareInstallationService/Actions"
FINAL = {"Completed", "CompletedWithErrors", "RebootCompleted", "Failed", "RebootFailed"}

# A step of a job: (JobState, PercentComplete or None to omit it, Message, MessageId)
Step = tuple[str, int | None, str, str]

ONRESET_STEPS: list[Step] = [
    ("New", 0, "Task successfully scheduled.", "JCP001"),
    ("Downloading", 30, "Downloading the package.", "RED003"),
    ("Downloaded", None, "Package successfully downloaded.", "RED002"),
    ("Scheduled", 0, "Task successfully scheduled.", "JCP001"),
]
IMMEDIATE_STEPS: list[Step] = [
    ("Downloading", 20, "Downloading the package.", "RED003"),
    ("Running", 50, "Installing the package.", "RED004"),
    ("RebootPending", 60, "Reboot is pending.", "RED005"),
    ("RebootCompleted", 90, "Reboot completed.", "RED006"),
    ("Completed", 100, "Job completed successfully.", "RED001"),
]


@dataclass
class FakeJob:
    id: str
    steps: list[Step]
    job_type: str = "FirmwareUpdate"
    name: str = "Firmware Update: BIOS"
    index: int = 0
    on_complete: Any = None  # callable run once when the last step is reached

    def view(self) -> dict[str, Any]:
        state, pct, message, message_id = self.steps[self.index]
        body: dict[str, Any] = {
            "@odata.id": f"{JOBS}/{self.id}",
            "Id": self.id,
            "JobState": state,
            "JobType": self.job_type,
            "Name": self.name,
            "Message": message,
            "MessageId": message_id,
        }
        if pct is not None:
            body["PercentComplete"] = pct
        return body

    def advance(self) -> None:
        if self.index < len(self.steps) - 1:
            self.index += 1
            if self.index == len(self.steps) - 1 and self.on_complete is not None:
                self.on_complete()

    @property
    def state(self) -> str:
        return self.steps[self.index][0]


@dataclass
class Settings:
    protocols: list[str] = field(default_factory=lambda: ["HTTP", "HTTPS"])
    dell_jobs: bool = True  # False: an old firmware without the Dell job view
    drop_finished_tasks: bool = True  # iDRAC 7.00 drops finished tasks from TaskService
    expand_jobs: bool = True
    package_list: str | None = None  # None: 400 SUP029 (up to date)


class FakeUpdateIdrac(FakeIdrac):
    """FakeIdrac plus jobs, updates, power, LC status and reset outages."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = Settings()
        self.jobs: dict[str, FakeJob] = {}
        self.next_steps: list[Step] = list(ONRESET_STEPS)
        self.next_name = "Firmware Update: BIOS"
        self.on_complete: Any = None
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.outage: list[
            str
        ] = []  # consumed one per request: connect|timeout|tls|503|500|404|drop|401
        self.power = "On"
        self.power_script: list[str] = []  # PowerState answers to play after a reset
        self.lc_script: list[str] = []  # Status answers to play, then "Ready"
        self.server_status: str | None = None  # LC ServerStatus; None: from the power state
        self.idrac_version = "7.00.00.174"
        self._jid = 123456789000

    # -- helpers for tests
    def add_job(self, steps: list[Step], *, name: str = "Firmware Update: BIOS", **kw: Any) -> str:
        self._jid += 1
        job = FakeJob(id=f"JID_{self._jid}", steps=list(steps), name=name, **kw)
        self.jobs[job.id] = job
        return job.id

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_update)

    # -- wire
    def handle_update(self, request: httpx.Request) -> httpx.Response:
        if self.outage:
            answer = self._outage(request, self.outage.pop(0))
            if answer is not None:
                return answer
        path = request.url.path
        if request.method == "POST" and path.startswith(
            ("/redfish/v1/SessionService", "/redfish/v1/Sessions")
        ):
            return self.handle(request)
        if self._auth_kind(request) == "none":
            return self.handle(request)  # 401 from the base fake (and logged there)
        answer = self._update_route(request, path)
        if answer is None:
            return self.handle(request)
        query = request.url.query.decode()
        self.log.append((request.method, path + (f"?{query}" if query else ""), "update"))
        return answer

    def _outage(self, request: httpx.Request, mode: str) -> httpx.Response | None:
        self.log.append((request.method, request.url.path, f"outage:{mode}"))
        if mode == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if mode == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if mode == "tls":
            cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
            cause.verify_message = "self-signed certificate"
            raise httpx.ConnectError("certificate verify failed", request=request) from cause
        if mode in ("503", "500"):
            return error_response(int(mode), "IDRAC.2.8.SYS446", "The iDRAC is restarting.")
        if mode == "404":
            return error_response(404, "Base.1.12.ResourceMissingAtURI", "not found")
        if mode == "drop":
            self.sessions.clear()  # the reset dropped every session; answer normally
            return None
        if mode == "401":
            return error_response(401, "Base.1.12.NoValidSession", "iDRAC not ready for logins")
        raise AssertionError(f"unknown outage mode {mode}")

    def _update_route(self, request: httpx.Request, path: str) -> httpx.Response | None:
        body = json.loads(request.content) if request.content else {}
        if request.method == "POST":
            self.posts.append((path, body))
            return self._post(path, body)
        if request.method != "GET":
            return None
        if path == "/redfish/v1/UpdateService":
            return httpx.Response(200, json=self._update_service())
        if path == MANAGER:
            return httpx.Response(
                200,
                json={
                    "@odata.id": path,
                    "Id": "iDRAC.Embedded.1",
                    "FirmwareVersion": self.idrac_version,
                },
            )
        if path == SYSTEM:
            if self.power_script:
                self.power = self.power_script.pop(0)
            return httpx.Response(
                200, json={"@odata.id": path, "Id": "System.Embedded.1", "PowerState": self.power}
            )
        if path == JOBS:
            return self._job_list(request.url.query.decode())
        if path.startswith(JOBS + "/"):
            return self._dell_job(path.rsplit("/", 1)[1])
        if path.startswith(TASKS + "/"):
            return self._task(path.rsplit("/", 1)[1])
        return None

    def _update_service(self) -> dict[str, Any]:
        action: dict[str, Any] = {"target": SIMPLE_UPDATE}
        if self.settings.protocols:
            action["TransferProtocol@Redfish.AllowableValues"] = self.settings.protocols
        return {
            "@odata.id": "/redfish/v1/UpdateService",
            "Id": "UpdateService",
            "Actions": {"#UpdateService.SimpleUpdate": action},
            "FirmwareInventory": {"@odata.id": "/redfish/v1/UpdateService/FirmwareInventory"},
        }

    def _dell_job(self, job_id: str) -> httpx.Response:
        job = self.jobs.get(job_id)
        if job is None or not self.settings.dell_jobs:
            return error_response(404, "Base.1.12.ResourceMissingAtURI", f"{job_id} not found")
        view = job.view()
        job.advance()
        return httpx.Response(200, json=view)

    def _task(self, job_id: str) -> httpx.Response:
        job = self.jobs.get(job_id)
        if job is None or (self.settings.drop_finished_tasks and job.state in FINAL):
            return error_response(404, "Base.1.12.ResourceMissingAtURI", f"{job_id} not found")
        state, pct, message, message_id = job.steps[job.index]
        job.advance()
        task_state = {
            "Completed": "Completed",
            "CompletedWithErrors": "Completed",
            "Failed": "Exception",
            "New": "New",
            "Scheduled": "Pending",
        }.get(state, "Running")
        status = {"Failed": "Critical", "CompletedWithErrors": "Warning"}.get(state, "OK")
        body: dict[str, Any] = {
            "@odata.id": f"{TASKS}/{job_id}",
            "Id": job_id,
            "Name": job.name,
            "TaskState": task_state,
            "TaskStatus": status,
            "Messages": [{"Message": message, "MessageId": message_id}],
        }
        if pct is not None:
            body["PercentComplete"] = pct
        return httpx.Response(200, json=body)

    def _job_list(self, query: str) -> httpx.Response:
        expanded = bool(query) and self.settings.expand_jobs
        members = [
            j.view() if expanded else {"@odata.id": f"{JOBS}/{j.id}"} for j in self.jobs.values()
        ]
        return httpx.Response(
            200, json={"@odata.id": JOBS, "Members": members, "Members@odata.count": len(members)}
        )

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        if path == SIMPLE_UPDATE:
            job_id = self.add_job(
                self.next_steps, name=self.next_name, on_complete=self.on_complete
            )
            return httpx.Response(202, headers={"Location": f"{TASKS}/{job_id}"})
        if path == f"{SYSTEM}/Actions/ComputerSystem.Reset":
            self.power_script = ["Off", "On"] if body.get("ResetType") != "ForceOff" else ["Off"]
            return httpx.Response(204)
        if path == LC_STATUS:
            status = self.lc_script.pop(0) if self.lc_script else "Ready"
            return httpx.Response(
                200,
                json={
                    "Status": status,
                    "LCStatus": status,
                    "ServerStatus": self.server_status
                    or ("PoweredOff" if self.power == "Off" else "OutOfPOST"),
                    "RTStatus": "Ready",
                },
            )
        if path == DELETE_QUEUE:
            job_id = body.get("JobID")
            if job_id in ("JID_CLEARALL", "JID_CLEARALL_FORCE"):
                self.jobs.clear()
            elif job_id in self.jobs:
                del self.jobs[job_id]
            else:
                return error_response(400, "IDRAC.2.8.SUP011", "Invalid Job ID.")
            return httpx.Response(
                200, json={"@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.8.SUP020"}]}
            )
        if path == f"{INSTALL}/DellSoftwareInstallationService.InstallFromRepository":
            job_id = self.add_job(
                [
                    ("Running", 10, "Checking for updates.", "RED014"),
                    ("Completed", 100, "Job completed successfully.", "RED001"),
                ],
                name="Repository Update",
                job_type="RepositoryUpdate",
            )
            return httpx.Response(202, headers={"Location": f"{MANAGER}/Jobs/{job_id}"})
        if path == f"{INSTALL}/DellSoftwareInstallationService.GetRepoBasedUpdateList":
            if self.settings.package_list is None:
                return error_response(
                    400,
                    "IDRAC.2.8.SUP029",
                    "Firmware versions on server match catalog, applicable updates are not "
                    "present in the repository.",
                )
            return httpx.Response(200, json={"PackageList": self.settings.package_list})
        return None


def update_client_for(fake: FakeUpdateIdrac, **kwargs: Any) -> RedfishClient:
    kwargs.setdefault("username", USER)
    kwargs.setdefault("password", PASSWORD)
    return RedfishClient(base_url=BASE, transport=fake.transport(), **kwargs)


class FakeTime:
    """A monotonic clock and a sleep that advance together without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
