"""Redfish routes of the simulated iDRAC for firmware work: jobs, tasks, actions.

Thin handlers: parse the request, call the state/job modules
(``lab.idrac.firmware``, ``lab.idrac.repo_update``, ``lab.idrac.power``),
render with ``lab.idrac.jobdocs``. Dell OEM actions answer on both the
``Managers/.../Oem/Dell/...`` paths of IDRAC.md and the older
``/redfish/v1/Dell/...`` paths.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from clients.errors import RemoteError
from lab.idrac import documents as docs
from lab.idrac import firmware, jobdocs, power, repo_update
from lab.idrac import messages as msg
from lab.idrac.state import BmcState
from lab.idrac.web import Handler, authed, json_body, json_response, not_found

V1 = docs.V1
MGR = f"{V1}/Managers/{docs.MANAGER_ID}"
SYS = f"{V1}/Systems/{docs.SYSTEM_ID}"
OLD_MGR = f"{V1}/Dell/Managers/{docs.MANAGER_ID}"
OLD_SYS = f"{V1}/Dell/Systems/{docs.SYSTEM_ID}"
SIMPLE_UPDATE = f"{V1}/UpdateService/Actions/UpdateService.SimpleUpdate"
LC_STATUS = "DellLCService/Actions/DellLCService.GetRemoteServicesAPIStatus"
DELETE_QUEUE = "DellJobService/Actions/DellJobService.DeleteJobQueue"
SWI = "DellSoftwareInstallationService/Actions/DellSoftwareInstallationService"
APPLY_TIMES = ("Immediate", "OnReset")
CLEAR_ALL = ("JID_CLEARALL", "JID_CLEARALL_FORCE")


def _bad(message: str, code: str = "Base.1.12.PropertyValueNotInList") -> RemoteError:
    return RemoteError(status=400, code=code, message=message)


def _ext(message: msg.Msg) -> dict[str, Any]:
    return {
        "@Message.ExtendedInfo": [
            {
                "Message": message[0],
                "MessageArgs": [],
                "MessageId": f"IDRAC.2.8.{message[1]}",
                "Resolution": "No response action is required.",
                "Severity": "Informational",
            }
        ]
    }


def _expanded(request: web.Request) -> bool:
    return request.query.get("$expand", "").startswith(("*", ".", "~"))


@authed
async def _jobs(request: web.Request, bmc: BmcState) -> web.Response:
    path = request.path.rstrip("/")
    return json_response(jobdocs.dell_jobs(bmc.jobs.all(), expanded=_expanded(request), path=path))


@authed
async def _job(request: web.Request, bmc: BmcState) -> web.Response:
    job = bmc.jobs.get(request.match_info["jid"])
    if job is None:
        raise not_found(request.path)
    return json_response(jobdocs.dell_job(job, path=request.path.rstrip("/").rsplit("/", 1)[0]))


@authed
async def _delete_job(request: web.Request, bmc: BmcState) -> web.Response:
    _delete(bmc, request.match_info["jid"])
    return json_response(docs.success_body())


def _delete(bmc: BmcState, job_id: str) -> msg.Msg:
    if job_id in CLEAR_ALL:
        bmc.jobs.clear()
        return msg.QUEUE_CLEARED
    job = bmc.jobs.get(job_id)
    if job is None:
        raise _bad(f"Invalid Job ID {job_id}.", "IDRAC.2.8.SUP011")
    if job.state == "Running":
        # A single running job cannot be deleted; JID_CLEARALL can (field practice).
        raise _bad(f"Unable to delete the job {job_id} because it is running.", "IDRAC.2.8.SUP018")
    bmc.jobs.delete(job_id)
    return msg.JOB_DELETED


@authed
async def _delete_job_queue(request: web.Request, bmc: BmcState) -> web.Response:
    body = await json_body(request)
    job_id = body.get("JobID")
    if not isinstance(job_id, str) or not job_id:
        raise _bad("The property JobID is required.", "Base.1.12.PropertyMissing")
    return json_response(_ext(_delete(bmc, job_id)))


@authed
async def _task_service(request: web.Request, bmc: BmcState) -> web.Response:
    return json_response(jobdocs.task_service())


def _visible_tasks(bmc: BmcState) -> list[Any]:
    # iDRAC 7.00 drops finished tasks from TaskService within seconds.
    return bmc.jobs.visible_tasks(now=bmc.clock.now(), retention_s=bmc.durations.task_retention_s)


@authed
async def _tasks(request: web.Request, bmc: BmcState) -> web.Response:
    return json_response(jobdocs.tasks(_visible_tasks(bmc)))


@authed
async def _task(request: web.Request, bmc: BmcState) -> web.Response:
    jid = request.match_info["jid"]
    job = next((j for j in _visible_tasks(bmc) if j.id == jid), None)
    if job is None:
        raise not_found(request.path)
    return json_response(jobdocs.task(job))


@authed
async def _simple_update(request: web.Request, bmc: BmcState) -> web.Response:
    body = await json_body(request)
    uri = body.get("ImageURI")
    if not isinstance(uri, str) or not uri:
        raise _bad("The property ImageURI is required.", "Base.1.12.PropertyMissing")
    protocol = str(body.get("TransferProtocol") or urlsplit(uri).scheme).upper()
    if protocol not in docs.TRANSFER_PROTOCOLS:
        raise _bad(f"The value {protocol} for the property TransferProtocol is not supported.")
    apply_time = str(body.get("@Redfish.OperationApplyTime") or "Immediate")
    if apply_time not in APPLY_TIMES:
        raise _bad(f"The value {apply_time} for @Redfish.OperationApplyTime is not supported.")
    job = firmware.start_simple_update(bmc, image_uri=uri, apply_time=apply_time)
    location = f"{jobdocs.TASKS}/{job.id}"
    return json_response(_ext(msg.SCHEDULED), status=202, Location=location)


@authed
async def _reset(request: web.Request, bmc: BmcState) -> web.Response:
    if request.match_info["id"] != docs.SYSTEM_ID:
        raise not_found(request.path)
    body = await json_body(request)
    reset_type = body.get("ResetType")
    if not isinstance(reset_type, str):
        raise _bad("The property ResetType is required.", "Base.1.12.PropertyMissing")
    firmware.host_reset(bmc, reset_type)
    return web.Response(status=204, headers={"OData-Version": "4.0"})


@authed
async def _lc_status(request: web.Request, bmc: BmcState) -> web.Response:
    return json_response(power.lc_status(bmc))


@authed
async def _install_from_repository(request: web.Request, bmc: BmcState) -> web.Response:
    job = repo_update.start_install_from_repository(bmc, await json_body(request))
    return json_response(_ext(msg.SCHEDULED), status=202, Location=f"{jobdocs.JOBS}/{job.id}")


@authed
async def _repo_update_list(request: web.Request, bmc: BmcState) -> web.Response:
    return json_response(repo_update.update_list(bmc))


def _both(tail: str, handler: Handler, *, system: bool = False) -> list[tuple[str, str, Handler]]:
    new, old = (f"{SYS}/Oem/Dell", OLD_SYS) if system else (f"{MGR}/Oem/Dell", OLD_MGR)
    return [(f"{new}/{tail}", "POST", handler), (f"{old}/{tail}", "POST", handler)]


ROUTES: list[tuple[str, str, Handler]] = [
    (f"{MGR}/Jobs", "GET", _jobs),
    (f"{MGR}/Jobs/{{jid}}", "GET", _job),
    (f"{MGR}/Jobs/{{jid}}", "DELETE", _delete_job),
    (f"{MGR}/Oem/Dell/Jobs", "GET", _jobs),
    (f"{MGR}/Oem/Dell/Jobs/{{jid}}", "GET", _job),
    (f"{V1}/TaskService", "GET", _task_service),
    (jobdocs.TASKS, "GET", _tasks),
    (f"{jobdocs.TASKS}/{{jid}}", "GET", _task),
    (SIMPLE_UPDATE, "POST", _simple_update),
    (f"{V1}/Systems/{{id}}/Actions/ComputerSystem.Reset", "POST", _reset),
    *_both(LC_STATUS, _lc_status),
    *_both(DELETE_QUEUE, _delete_job_queue),
    *_both(f"{SWI}.InstallFromRepository", _install_from_repository, system=True),
    *_both(f"{SWI}.GetRepoBasedUpdateList", _repo_update_list, system=True),
]
