"""A small JSON admin API of the lab (plain HTTP on 127.0.0.1, no auth: loopback only).

- ``GET /lab/bmcs``: every BMC (identity, live state, faults, counters);
- ``GET /lab/requests``: requests per BMC and endpoint;
- ``POST /lab/bmcs/{address}/move`` ``{"address": ..., "port": ...}``;
- ``POST /lab/bmcs/{address}/faults`` ``{...Faults fields...}`` (replaces the faults);
- ``GET /lab/bmcs/{address}/jobs``: the iDRAC's job queue;
- ``GET /lab/repository``: the firmware repository (base URL, packages), if served.

``{address}`` is ``addr`` or ``addr:port`` (needed in single-host mode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError

from clients.errors import PreconditionError
from lab.fleet import Faults

if TYPE_CHECKING:
    from lab.core import LabCore

CORE_KEY: web.AppKey[Any] = web.AppKey("core")


def build_admin_app(core: LabCore) -> web.Application:
    """Build the admin application for a running lab.

    Args:
        core: The lab core it controls.

    Returns:
        The application.
    """
    app = web.Application(middlewares=[_errors])
    app[CORE_KEY] = core
    app.router.add_get("/lab/bmcs", _bmcs)
    app.router.add_get("/lab/requests", _requests)
    app.router.add_post("/lab/bmcs/{address}/move", _move)
    app.router.add_post("/lab/bmcs/{address}/faults", _faults)
    app.router.add_get("/lab/bmcs/{address}/jobs", _jobs)
    app.router.add_get("/lab/repository", _repository)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except PreconditionError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except ValidationError as exc:
        return web.json_response({"error": str(exc)}, status=422)
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"bad request: {exc!r}"}, status=400)


def _core(request: web.Request) -> LabCore:
    core: LabCore = request.app[CORE_KEY]
    return core


async def _bmcs(request: web.Request) -> web.Response:
    core = _core(request)
    return web.json_response(
        {
            "speed": core.clock.speed,
            "lab_time_s": core.clock.now(),
            "bmcs": [bmc.snapshot() for bmc in core.bmcs],
        }
    )


async def _requests(request: web.Request) -> web.Response:
    return web.json_response(_core(request).request_counts())


async def _move(request: web.Request) -> web.Response:
    core = _core(request)
    body = await request.json()
    bmc = core.find(request.match_info["address"])
    port = body.get("port")
    await core.move(bmc, str(body["address"]), int(port) if port is not None else None)
    return web.json_response(bmc.snapshot())


async def _faults(request: web.Request) -> web.Response:
    core = _core(request)
    faults = Faults.model_validate(await request.json())
    bmc = core.find(request.match_info["address"])
    await core.set_faults(bmc, faults)
    return web.json_response(bmc.snapshot())


async def _jobs(request: web.Request) -> web.Response:
    bmc = _core(request).find(request.match_info["address"])
    return web.json_response(
        [
            {
                "id": j.id,
                "name": j.name,
                "type": j.job_type,
                "state": j.state,
                "message": j.message,
                "message_id": j.message_id,
                "percent": j.percent,
                "target": j.target,
            }
            for j in bmc.jobs.all()
        ]
    )


async def _repository(request: web.Request) -> web.Response:
    repo = _core(request).repository
    if repo is None:
        return web.json_response({"error": "no firmware repository in this lab"}, status=404)
    return web.json_response(
        {
            "base_url": repo.base_url,
            "host": repo.host,
            "packages": [p.index_entry() for p in repo.packages],
        }
    )
