"""HTTP helpers shared by the Redfish front-end modules of the simulated iDRAC."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from clients.errors import NotFoundError, RemoteError
from lab.idrac import documents as docs
from lab.idrac.state import BmcState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BmcHandler = Callable[[web.Request, BmcState], Awaitable[web.Response]]
# aiohttp >= 3.12 wants typed request keys; older versions take a plain string.
REQUEST_BMC: Any = web.RequestKey("bmc", BmcState) if hasattr(web, "RequestKey") else "bmc"
ODATA_HEADERS = {"OData-Version": "4.0", "Cache-Control": "no-cache"}


def json_response(body: dict[str, Any], *, status: int = 200, **headers: str) -> web.Response:
    """A JSON response with the headers an iDRAC sends."""
    resp = web.json_response(body, status=status, headers={**ODATA_HEADERS, **headers})
    resp.content_type = "application/json"
    return resp


def error_response(error: RemoteError, **headers: str) -> web.Response:
    """Render a project error as a Redfish error body with @Message.ExtendedInfo."""
    return json_response(
        docs.error_body(code=error.code or "Base.1.12.GeneralError", message=error.message),
        status=error.status,
        **headers,
    )


def request_bmc(request: web.Request) -> BmcState:
    """The BMC a request arrived at (set by the middleware)."""
    bmc: BmcState = request[REQUEST_BMC]
    return bmc


def not_found(path: str) -> NotFoundError:
    """The iDRAC's 404 for a path."""
    return NotFoundError(
        status=404,
        code="Base.1.12.ResourceMissingAtURI",
        message=f"The resource at the URI {path} was not found.",
    )


def authenticate(request: web.Request) -> str:
    """Check a request's X-Auth-Token or Basic credentials.

    Args:
        request: The request.

    Returns:
        The user name.

    Raises:
        AuthError: No valid session or credentials.
    """
    bmc = request_bmc(request)
    token = request.headers.get("X-Auth-Token")
    basic: tuple[str, str] | None = None
    auth = request.headers.get("Authorization", "")
    if token is None and auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            basic = (user, password)
        except (binascii.Error, UnicodeDecodeError):
            basic = None
    return bmc.authenticate(token=token, basic=basic)


def authed(handler: BmcHandler) -> Handler:
    """Wrap a handler so it runs only for authenticated requests."""

    async def wrapper(request: web.Request) -> web.Response:
        authenticate(request)
        return await handler(request, request_bmc(request))

    wrapper.__name__ = handler.__name__
    return wrapper


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when empty).

    Raises:
        RemoteError: 400 MalformedJSON when the body is not a JSON object.
    """
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RemoteError(
            status=400,
            code="Base.1.12.MalformedJSON",
            message="The request body submitted was malformed JSON.",
        )
    return body
