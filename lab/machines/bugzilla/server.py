"""The fake Bugzilla's REST front-end (aiohttp) and a runner on its own loop thread.

Requests are authenticated, fault-injected and turned into calls of
:class:`~lab.machines.bugzilla.tracker.BugTracker`; its
:class:`~lab.machines.bugzilla.tracker.BugzillaError` becomes Bugzilla's JSON
error with the HTTP status of ``REST_STATUS_CODE_MAP``.
"""

from __future__ import annotations

import asyncio
import copy
import html
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lab.fleet import check_loopback
from lab.loop_thread import LoopThread
from lab.machines.bugzilla.tracker import BugTracker, BugzillaError

__all__ = ["BugzillaFake", "BugzillaFaults", "BugzillaPeer"]

# REST_STATUS_CODE_MAP of Bugzilla 5.0 (codes not listed answer 400).
_STATUS = {51: 404, 101: 404, 102: 401, 106: 401, 109: 401, 300: 401, 410: 401, 504: 401}
_STATUS |= {32614: 404}


@dataclass
class BugzillaFaults:
    """Faults to inject, counted down request by request.

    Attributes:
        fail_requests: The next N requests answer ``fail_status`` (an HTML page,
            as a proxy in front of Bugzilla would) without doing anything.
        fail_status: Status of those failures.
        fail_method: Only requests with this method count (e.g. ``"POST"``); None: all.
        stall_writes: The next N writes (POST/PUT) are carried out, then the
            answer is held back ``stall_s`` seconds: a client timeout then
            leaves it unsure whether the bug was filed.
        stall_s: How long a stalled answer is held back (real seconds).
    """

    fail_requests: int = 0
    fail_status: int = 500
    fail_method: str | None = None
    stall_writes: int = 0
    stall_s: float = 0.0


class BugzillaPeer:
    """The fake Bugzilla's state and HTTP server (a reboot-lab peer, or standalone).

    Args:
        products: Product name -> component names bugs may be filed against.
        versions: Versions every product has.
        api_keys: API key -> login; default: one random key for ``rackflow@lab.test``.
        users: Logins that exist (for ``cc``); None accepts any address with ``@``.
        require_login: Refuse anonymous reads too (``requirelogin`` parameter).
        host: Loopback address to bind.
        port: Port to bind (0: a free one).
        faults: Faults to inject (replace with :meth:`set_faults`).
    """

    def __init__(
        self,
        *,
        products: Mapping[str, Sequence[str]] | None = None,
        versions: Sequence[str] = ("unspecified",),
        api_keys: Mapping[str, str] | None = None,
        users: Iterable[str] | None = None,
        require_login: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: BugzillaFaults | None = None,
    ) -> None:
        self.api_keys = dict(api_keys or {secrets.token_urlsafe(30): "rackflow@lab.test"})
        self.tracker = BugTracker(
            products=products or {"Datacenter": ["Reboots"]},
            versions=versions,
            users=None if users is None else set(users) | set(self.api_keys.values()),
        )
        self.require_login = require_login
        self.host = check_loopback(host)
        self.port = port
        self.faults = faults or BugzillaFaults()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def api_key(self) -> str:
        """The first API key (the one tests usually need)."""
        return next(iter(self.api_keys))

    @property
    def bugs(self) -> dict[int, dict[str, Any]]:
        """Stored bugs by id (the tracker's own dict: read it on the loop)."""
        return self.tracker.bugs

    @property
    def comments(self) -> dict[int, list[dict[str, Any]]]:
        """Stored comments by bug id (the tracker's own dict: read it on the loop)."""
        return self.tracker.comments

    # -- lifecycle --------------------------------------------------------------------

    async def __call__(self, core: object) -> Callable[[], Awaitable[None]]:
        """Start as a reboot-lab peer; return the stop function."""
        await self.start()
        return self.stop

    async def start(self) -> None:
        """Bind the HTTP server on the running loop; :attr:`url` is known afterwards."""
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.get("/rest/version", self._version),
                web.get("/rest/bug", self._search),
                web.post("/rest/bug", self._create),
                web.get("/rest/bug/{id}", self._get),
                web.put("/rest/bug/{id}", self._update),
                web.get("/rest/bug/{id}/comment", self._get_comments),
                web.post("/rest/bug/{id}/comment", self._add_comment),
                web.get("/show_bug.cgi", self._show_bug),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Close the server (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- loop-side helpers for tests (async so ``lab.call(peer.list_bugs)`` works) -------

    async def list_bugs(self) -> list[dict[str, Any]]:
        """Copies of every stored bug, by id."""
        return [copy.deepcopy(self.bugs[i]) for i in sorted(self.bugs)]

    async def list_comments(self, bug_id: int) -> list[dict[str, Any]]:
        """Copies of one bug's comments (count 0 is the description)."""
        return copy.deepcopy(self.comments.get(bug_id, []))

    async def close_bug(self, bug_id: int, resolution: str = "FIXED") -> None:
        """Resolve a bug, as a person would in the web UI."""
        self.tracker.set_status(self.bugs[bug_id], "RESOLVED", resolution)

    async def set_faults(self, faults: BugzillaFaults) -> None:
        """Replace the injected faults."""
        self.faults = faults

    # -- plumbing ---------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        faults = self.faults
        if faults.fail_requests > 0 and faults.fail_method in (None, request.method):
            faults.fail_requests -= 1
            return web.Response(
                status=faults.fail_status,
                text="<html><body><h1>Internal Server Error</h1></body></html>",
                content_type="text/html",
            )
        try:
            response = await handler(request)
        except BugzillaError as err:
            return _error(err)
        except web.HTTPNotFound:
            return _error(
                BugzillaError(
                    32614,
                    f"A REST API resource was not found for '{request.method} "
                    f"{request.path.removeprefix('/rest')}'.",
                )
            )
        if request.method in ("POST", "PUT") and faults.stall_writes > 0:
            faults.stall_writes -= 1
            await asyncio.sleep(faults.stall_s)  # done already; only the answer is late
        return response

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            raise BugzillaError(-32600, f"The JSON request was invalid: {exc}") from exc
        if not isinstance(body, dict):
            raise BugzillaError(-32600, "The JSON request was invalid: not an object.")
        return body

    def _login(self, request: web.Request, body: Mapping[str, Any], *, write: bool) -> str | None:
        key = (
            request.headers.get("X-BUGZILLA-API-KEY")
            or request.query.get("api_key")
            or body.get("api_key")
        )
        if key:
            login = self.api_keys.get(str(key))
            if login is None:
                raise BugzillaError(
                    306,
                    "The API key you specified is invalid. "
                    "Please check that you typed it correctly.",
                )
            return login
        if write or self.require_login:
            raise BugzillaError(410, "You must log in before using this part of Bugzilla.")
        return None

    # -- handlers ---------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "5.0.6"})

    async def _search(self, request: web.Request) -> web.Response:
        self._login(request, {}, write=False)
        return web.json_response({"bugs": self.tracker.search(request.query)})

    async def _get(self, request: web.Request) -> web.Response:
        self._login(request, {}, write=False)
        bug = self.tracker.bug(request.match_info["id"])
        return web.json_response({"bugs": [bug], "faults": []})

    async def _get_comments(self, request: web.Request) -> web.Response:
        self._login(request, {}, write=False)
        bug = self.tracker.bug(request.match_info["id"])
        comments = self.comments[bug["id"]]
        return web.json_response({"bugs": {str(bug["id"]): {"comments": comments}}, "comments": {}})

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        login = self._login(request, body, write=True)
        bug = self.tracker.create(body, creator=str(login))
        return web.json_response({"id": bug["id"]}, status=201)

    async def _add_comment(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        login = self._login(request, body, write=True)
        bug = self.tracker.bug(request.match_info["id"])
        comment = self.tracker.add_comment(bug, body.get("comment"), creator=str(login))
        # Bugzilla 5.0's add_comment resource says ``success_code`` where REST.pm
        # reads ``status_code``: it answers 200, not 201 (create answers 201).
        return web.json_response({"id": comment["id"]})

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        login = self._login(request, body, write=True)
        bug = self.tracker.bug(request.match_info["id"])
        result = self.tracker.update(bug, body, creator=str(login))
        return web.json_response({"bugs": [result]})

    async def _show_bug(self, request: web.Request) -> web.Response:
        bug = self.tracker.bug(request.query.get("id", ""))
        title = html.escape(f"Bug {bug['id']} - {bug['summary']}")
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return web.Response(text=page, content_type="text/html")


def _error(err: BugzillaError) -> web.Response:
    body = {"error": True, "code": err.code, "message": err.message}
    return web.json_response(body, status=_STATUS.get(err.code, 400))


class BugzillaFake:
    """A :class:`BugzillaPeer` on its own loop thread; use as a context manager.

    .. code-block:: python

        with BugzillaFake(products={"Datacenter": ["Reboots"]}) as bz:
            bz.url, bz.api_key
            bz.bugs()          # copies of the stored bugs
            bz.close_bug(1)

    Args:
        **kwargs: Passed to :class:`BugzillaPeer`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.peer = BugzillaPeer(**kwargs)
        self._thread = LoopThread(
            name="rackflow-bugzilla", start=self.peer.start, stop=self.peer.stop
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (known once started)."""
        return self.peer.url

    @property
    def api_key(self) -> str:
        """The first API key."""
        return self.peer.api_key

    @property
    def api_keys(self) -> dict[str, str]:
        """API key -> login."""
        return dict(self.peer.api_keys)

    def start(self) -> None:
        """Start serving."""
        self._thread.run()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        self._thread.shutdown()

    def __enter__(self) -> BugzillaFake:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def bugs(self) -> list[dict[str, Any]]:
        """Copies of every stored bug, by id."""
        return self._thread.call(self.peer.list_bugs)

    def comments(self, bug_id: int) -> list[dict[str, Any]]:
        """Copies of one bug's comments (count 0 is the description)."""
        return self._thread.call(lambda: self.peer.list_comments(bug_id))

    def close_bug(self, bug_id: int, resolution: str = "FIXED") -> None:
        """Resolve a bug, as a person would in the web UI."""
        self._thread.call(lambda: self.peer.close_bug(bug_id, resolution))

    def set_faults(self, faults: BugzillaFaults) -> None:
        """Replace the injected faults."""
        self._thread.call(lambda: self.peer.set_faults(faults))

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request seen so far."""

        async def read() -> list[tuple[str, str]]:
            return list(self.peer.requests)

        return self._thread.call(read)
