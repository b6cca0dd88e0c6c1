"""The Redfish front-end of a simulated iDRAC9 (aiohttp), per IDRAC.md.

One :class:`aiohttp.web.Application` serves every BMC of the lab: a
middleware finds the :class:`~lab.idrac.state.BmcState` from the local
address the connection arrived on, counts the request under its route
template (``GET /redfish/v1/Systems/{id}``), applies injected latency and
errors, and turns the project's ``RemoteError`` into Redfish error bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from clients.errors import RemoteError
from lab.idrac import documents as docs
from lab.idrac.actions import ROUTES as ACTION_ROUTES
from lab.idrac.state import BmcState
from lab.idrac.web import (
    REQUEST_BMC,
    Handler,
    authed,
    error_response,
    json_response,
    not_found,
    request_bmc,
)

Resolver = Callable[[str, int], BmcState | None]
BMC_KEY: web.AppKey[Any] = web.AppKey("resolver")
SESSIONS = "/redfish/v1/SessionService/Sessions"


def build_app(resolver: Resolver) -> web.Application:
    """Build the aiohttp application shared by every simulated iDRAC.

    Args:
        resolver: Maps the local (address, port) of a connection to its BMC.

    Returns:
        The application.
    """
    app = web.Application(middlewares=[_bmc_middleware])
    app[BMC_KEY] = resolver
    app.on_response_prepare.append(_server_header)
    for path, method, handler in [*_ROUTES, *ACTION_ROUTES]:
        app.router.add_route(method, path, handler)
        # iDRAC answers with and without the trailing slash.
        app.router.add_route(method, path + "/", handler)
    return app


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "Apache"  # what an iDRAC9 web server calls itself


@web.middleware
async def _bmc_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    bmc = request.app[BMC_KEY](sock[0], sock[1]) if sock else None
    if bmc is None or bmc.faults.hang or bmc.faults.not_listening or bmc.offline:
        # A keep-alive connection to an address that moved or went dark
        # (or an iDRAC that is restarting): drop it.
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPServiceUnavailable()
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
    bmc.requests[f"{request.method} {template.rstrip('/') or '/'}"] += 1
    request[REQUEST_BMC] = bmc
    faults = bmc.faults
    if faults.latency_s > 0:
        await asyncio.sleep(faults.latency_s)
    if faults.error_rate > 0 and bmc.rng.random() < faults.error_rate:
        return _injected_error(bmc)
    if bmc.busy:
        # Starting up after a reset, or fault busy_503_s after a job started.
        bmc.unavailable_answers += 1
        return _unavailable(max(1, round(bmc.clock.real_seconds(bmc.busy_until - bmc.clock.now()))))
    try:
        return await handler(request)
    except RemoteError as exc:
        return error_response(exc)
    except web.HTTPNotFound:
        return error_response(not_found(request.path))
    except web.HTTPMethodNotAllowed:
        return json_response(
            docs.error_body(
                code="Base.1.12.OperationNotAllowed",
                message="The HTTP method is not allowed on this resource.",
            ),
            status=405,
        )


def _unavailable(retry_after: int) -> web.Response:
    body = docs.error_body(
        code="Base.1.12.ServiceTemporarilyUnavailable",
        message=f"The service is temporarily unavailable. Retry in {retry_after} seconds.",
    )
    return json_response(body, status=503, **{"Retry-After": str(retry_after)})


def _injected_error(bmc: BmcState) -> web.Response:
    if bmc.rng.random() < 0.5:
        return _unavailable(1)
    body = docs.error_body(
        code="Base.1.12.InternalError",
        message="The request failed due to an internal service error.",
    )
    return json_response(body, status=500)


async def _redfish(request: web.Request) -> web.Response:
    return json_response({"v1": "/redfish/v1/"})


async def _service_root(request: web.Request) -> web.Response:
    # No credentials needed: enough to fingerprint an iDRAC during a scan.
    return json_response(docs.service_root(request_bmc(request)))


async def _login(request: web.Request) -> web.Response:
    bmc = request_bmc(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("UserName"), str):
        return json_response(
            docs.error_body(
                code="Base.1.12.MalformedJSON",
                message="The request body submitted was malformed JSON.",
            ),
            status=400,
        )
    session = bmc.login(body["UserName"], str(body.get("Password", "")))
    location = f"{SESSIONS}/{session.id}"
    return json_response(
        docs.session(session),
        status=201,
        **{"X-Auth-Token": session.token, "Location": location},
    )


@authed
async def _session_service(request: web.Request, bmc: BmcState) -> web.Response:
    return json_response(docs.session_service(bmc))


@authed
async def _sessions(request: web.Request, bmc: BmcState) -> web.Response:
    members = [f"{SESSIONS}/{sid}" for sid in bmc.sessions.ids()]
    return json_response(
        docs.collection(SESSIONS, "SessionCollection", "Session Collection", members)
    )


@authed
async def _session(request: web.Request, bmc: BmcState) -> web.Response:
    session = bmc.sessions.get(request.match_info["id"])
    if session is None:
        raise not_found(request.path)
    return json_response(docs.session(session))


@authed
async def _delete_session(request: web.Request, bmc: BmcState) -> web.Response:
    if not bmc.sessions.delete(request.match_info["id"]):
        raise not_found(request.path)
    return json_response(docs.success_body(), status=200)


@authed
async def _systems(request: web.Request, bmc: BmcState) -> web.Response:
    path = "/redfish/v1/Systems"
    return json_response(
        docs.collection(
            path,
            "ComputerSystemCollection",
            "Computer System Collection",
            [f"{path}/{docs.SYSTEM_ID}"],
        )
    )


@authed
async def _system(request: web.Request, bmc: BmcState) -> web.Response:
    if request.match_info["id"] != docs.SYSTEM_ID:
        raise not_found(request.path)
    return json_response(docs.system(bmc))


@authed
async def _managers(request: web.Request, bmc: BmcState) -> web.Response:
    path = "/redfish/v1/Managers"
    return json_response(
        docs.collection(path, "ManagerCollection", "Manager", [f"{path}/{docs.MANAGER_ID}"])
    )


@authed
async def _manager(request: web.Request, bmc: BmcState) -> web.Response:
    if request.match_info["id"] != docs.MANAGER_ID:
        raise not_found(request.path)
    return json_response(docs.manager(bmc))


@authed
async def _update_service(request: web.Request, bmc: BmcState) -> web.Response:
    return json_response(docs.update_service(bmc))


@authed
async def _firmware_inventory(request: web.Request, bmc: BmcState) -> web.Response:
    expand = request.query.get("$expand", "")
    # iDRAC9 supports $expand=*($levels=1) and $expand=.($levels=1) here.
    expanded = expand.startswith(("*", ".", "~"))
    return json_response(docs.firmware_inventory(bmc, expanded=expanded))


@authed
async def _firmware_member(request: web.Request, bmc: BmcState) -> web.Response:
    entry = bmc.firmware_entry(request.match_info["id"])
    if entry is None:
        raise not_found(request.path)
    return json_response(docs.firmware_member(entry))


_ROUTES: list[tuple[str, str, Handler]] = [
    ("/redfish", "GET", _redfish),
    ("/redfish/v1", "GET", _service_root),
    ("/redfish/v1/SessionService", "GET", _session_service),
    (SESSIONS, "GET", _sessions),
    (SESSIONS, "POST", _login),
    (SESSIONS + "/{id}", "GET", _session),
    (SESSIONS + "/{id}", "DELETE", _delete_session),
    ("/redfish/v1/Systems", "GET", _systems),
    ("/redfish/v1/Systems/{id}", "GET", _system),
    ("/redfish/v1/Managers", "GET", _managers),
    ("/redfish/v1/Managers/{id}", "GET", _manager),
    ("/redfish/v1/UpdateService", "GET", _update_service),
    ("/redfish/v1/UpdateService/FirmwareInventory", "GET", _firmware_inventory),
    ("/redfish/v1/UpdateService/FirmwareInventory/{id}", "GET", _firmware_member),
]
