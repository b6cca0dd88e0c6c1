"""Redfish sessions and requests: the transport half of :class:`RedfishClient`.

One session per client, created lazily on the first authenticated call,
re-created once on 401, and deleted when the client leaves its ``async with``
(an iDRAC has ~8 session slots: tools that never log out lock others out).

Construction is cheap and does no I/O: discovery builds thousands of
clients that share one ``httpx.AsyncClient`` per chunk of addresses.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import httpx

from clients.closing import AsyncClosing
from clients.errors import PreconditionError, ProtocolError, RackflowError
from clients.http_errors import error_for_exception
from clients.redfish import _wire
from clients.redfish.models import ServiceRoot

__all__ = ["RedfishSession", "path_of"]

logger = logging.getLogger("rackflow.clients.redfish")

ROOT_PATH = "/redfish/v1"
SESSIONS_PATHS = ("/redfish/v1/SessionService/Sessions", "/redfish/v1/Sessions")
_JSON_HEADERS: Mapping[str, str] = MappingProxyType({"Accept": "application/json"})


def path_of(path_or_url: str) -> str:
    """Reduce a link to path and query.

    A Location header naming another host is not followed with our token.

    Args:
        path_or_url: ``/redfish/v1/...``, a relative path, or an absolute URL.

    Returns:
        The path (with query) starting with ``/``.
    """
    if path_or_url.startswith(("http://", "https://")):
        url = httpx.URL(path_or_url)
        query = url.query.decode("ascii")
        return url.path + (f"?{query}" if query else "")
    return path_or_url if path_or_url.startswith("/") else f"/{path_or_url}"


class RedfishSession(AsyncClosing):
    """Sessions and authenticated requests to one BMC (base of ``RedfishClient``).

    Args:
        base_url: ``https://host:port`` of the BMC (no path, no credentials).
        username: BMC user; None for unauthenticated use (service root only).
        password: BMC password. Never logged, never put in an error or repr.
        verify: TLS verification (an ``ssl.SSLContext``, True or False). Only
            used when this client builds its own httpx client.
        timeout: Per-request timeout (applied to every request, shared client too).
        transport: httpx transport for an own client (tests: ``httpx.MockTransport``).
        http_client: A shared ``httpx.AsyncClient``; used as is and NOT closed here.

    Raises:
        PreconditionError: Bad ``base_url``, or both ``transport`` and ``http_client``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: httpx.Timeout | float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if transport is not None and http_client is not None:
            raise PreconditionError(
                subject="transport", reason="give either transport or http_client, not both"
            )
        if not base_url.startswith(("http://", "https://")):
            raise PreconditionError(
                subject="base_url", reason="must start with https:// or http://"
            )
        authority = base_url.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority:
            raise PreconditionError(
                subject="base_url", reason="must not carry credentials; pass username/password"
            )
        self._base = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._verify = verify
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._transport = transport
        self._client = http_client
        self._owns_client = http_client is None
        self._root: ServiceRoot | None = None
        self._token: str | None = None
        self._session_path: str | None = None
        self._basic: str | None = None  # "Basic ..." header once sessions proved unavailable
        self._login_lock = asyncio.Lock()
        self._requests = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base!r}, username={self._username!r})"

    @property
    def base_url(self) -> str:
        """The BMC's base URL (no credentials)."""
        return self._base

    @property
    def requests_made(self) -> int:
        """HTTP requests this client has attempted (login and logout included)."""
        return self._requests

    async def aclose(self) -> None:
        """Log out (best effort) and close the httpx client if this client built it."""
        try:
            await self.logout()
        except RackflowError as err:
            # The session expires on its own (~30 min); do not mask the caller's outcome.
            logger.warning("Redfish logout from %s failed: %s", self._base, err)
        finally:
            if self._owns_client and self._client is not None:
                client, self._client = self._client, None
                await client.aclose()

    # -- plumbing -------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        # Built on first use, not in __init__: creating an SSL context costs milliseconds.
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self._verify, timeout=self._timeout, transport=self._transport
            )
        return self._client

    def _target(self, path: str) -> str:
        return self._base + path.split("?", 1)[0]

    def _scrub(self, text: str) -> str:
        if self._password and self._password in text:
            return text.replace(self._password, "********")
        return text

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One HTTP request; transport failures become TransportError / TlsError."""
        url = self._base + path
        self._requests += 1
        try:
            return await self._http().request(
                method,
                url,
                json=body,
                headers=headers or _JSON_HEADERS,
                timeout=self._timeout,
                follow_redirects=follow_redirects,
            )
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, target=self._target(path)) from exc

    def _check(self, response: httpx.Response, path: str, *, idempotent: bool) -> None:
        if response.is_success:
            return
        raise _wire.error_for_response(
            response, target=self._target(path), idempotent=idempotent, scrub=self._scrub
        )

    def _auth_headers(self) -> dict[str, str]:
        headers = dict(_JSON_HEADERS)
        if self._token is not None:
            headers["X-Auth-Token"] = self._token
        elif self._basic is not None:
            headers["Authorization"] = self._basic
        return headers

    # -- sessions -------------------------------------------------------------------

    async def login(self) -> None:
        """Open a session (no-op when one is open or no username was given).

        Tries the service root's sessions path (or the standard
        ``SessionService/Sessions``, then the pre-1.6 ``/redfish/v1/Sessions``);
        a service without a SessionService gets HTTP Basic auth instead.

        Raises:
            AuthError: Credentials refused.
            BusyError: Session slots full (iDRAC RAC0218) or 409/503.
            TransportError: The BMC could not be reached.
            ProtocolError: A 2xx answer without ``X-Auth-Token``.
        """
        async with self._login_lock:
            if self._username is None or self._token is not None or self._basic is not None:
                return
            await self._login_locked()

    async def _login_locked(self) -> None:
        if self._root is not None:
            candidates: tuple[str, ...] = (
                (self._root.sessions_path,) if self._root.sessions_path else ()
            )
        else:
            candidates = SESSIONS_PATHS
        credentials = {"UserName": self._username, "Password": self._password or ""}
        for path in dict.fromkeys(path_of(c) for c in candidates):
            response = await self._send("POST", path, body=credentials)
            if response.status_code in (404, 405, 501):
                continue  # no session service at this path
            self._check(response, path, idempotent=False)
            token = response.headers.get("X-Auth-Token")
            if not token:
                raise ProtocolError(target=self._target(path), detail="no X-Auth-Token in answer")
            self._token = token
            self._session_path = self._session_location(response)
            logger.debug("Redfish session opened on %s", self._base)
            return
        # No SessionService (emulators, some embedded BMCs): HTTP Basic on every request.
        raw = f"{self._username}:{self._password or ''}".encode()
        self._basic = "Basic " + base64.b64encode(raw).decode("ascii")
        logger.debug("Redfish service at %s has no sessions; using Basic auth", self._base)

    def _session_location(self, response: httpx.Response) -> str | None:
        location = response.headers.get("Location")
        if not location:
            try:
                body = response.json()
            except ValueError:
                body = None
            odata_id = body.get("@odata.id") if isinstance(body, dict) else None
            location = odata_id if isinstance(odata_id, str) else None
        return path_of(location) if location else None

    async def logout(self) -> None:
        """Delete the session, if one is open. A session already gone is not an error.

        Raises:
            TransportError: The BMC could not be reached (the session is forgotten anyway).
            RemoteError: The BMC refused the DELETE for another reason.
        """
        token, path = self._token, self._session_path
        self._token = self._session_path = None
        self._basic = None
        if token is None or path is None:
            return
        headers = {**_JSON_HEADERS, "X-Auth-Token": token}
        response = await self._send("DELETE", path, headers=headers)
        if response.status_code in (401, 404):
            return  # expired or already deleted
        self._check(response, path, idempotent=True)
        logger.debug("Redfish session closed on %s", self._base)

    async def _request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, idempotent: bool
    ) -> httpx.Response:
        """An authenticated request: lazy login, and one re-login on 401."""
        path = path_of(path)
        await self.login()
        token = self._token
        response = await self._send(method, path, body=body, headers=self._auth_headers())
        if response.status_code == 401 and token is not None:
            # Session expired or the BMC reset: open a new one once, then give up.
            async with self._login_lock:
                if self._token == token:
                    self._token = self._session_path = None
                    await self._login_locked()
            response = await self._send(method, path, body=body, headers=self._auth_headers())
        self._check(response, path, idempotent=idempotent)
        return response

    # -- generic calls --------------------------------------------------------------

    async def service_root(self) -> ServiceRoot:
        """Read ``GET /redfish/v1`` without credentials (and remember it).

        Returns:
            The service root: vendor, product, service tag, resource paths.

        Raises:
            TransportError: Not reachable (TlsError: certificate not trusted).
            ProtocolError: The answer is not a Redfish service root.
            RemoteError: The service answered with an error status.
        """
        response = await self._send("GET", ROOT_PATH, follow_redirects=True)
        self._check(response, ROOT_PATH, idempotent=True)
        data = _wire.json_object(response, target=self._target(ROOT_PATH))
        self._root = ServiceRoot.from_redfish(data, target=self._target(ROOT_PATH))
        return self._root

    async def get_json(self, path: str) -> dict[str, Any]:
        """Authenticated GET of a JSON object.

        Args:
            path: Resource path (``/redfish/v1/...``); an absolute URL keeps only its path.

        Returns:
            The decoded JSON object.

        Raises:
            AuthError, NotFoundError, BusyError, ServerError, RemoteError: Error statuses.
            TransportError: Not reachable.
            ProtocolError: The body is not a JSON object.
        """
        response = await self._request("GET", path, idempotent=True)
        return _wire.json_object(response, target=self._target(path_of(path)))

    async def post(
        self, path: str, body: dict[str, Any], *, idempotent: bool = False
    ) -> httpx.Response:
        """Authenticated POST of a JSON body (actions, jobs).

        Args:
            path: Resource or action path.
            body: JSON body.
            idempotent: Whether a ServerError from this call may be retried.

        Returns:
            The successful response (e.g. 202 with ``Location`` of a job).

        Raises:
            AuthError, NotFoundError, BusyError, ServerError, RemoteError: Error statuses.
            TransportError: Not reachable.
        """
        return await self._request("POST", path, body=body, idempotent=idempotent)

    async def delete(self, path: str) -> None:
        """Authenticated DELETE.

        Args:
            path: Resource path.

        Raises:
            AuthError, NotFoundError, BusyError, ServerError, RemoteError: Error statuses.
            TransportError: Not reachable.
        """
        await self._request("DELETE", path, idempotent=True)
