"""A fake Bugzilla 5.0 REST API, where reboot flows file their bug reports.

Served by aiohttp over plain HTTP on 127.0.0.1 (free port). Shapes follow
Bugzilla 5.0 (``Bugzilla/WebService/Constants.pm``, ``.../REST/Resources/Bug.pm``)::

    GET  /rest/bug?product=&component=&summary=&status=&resolution=---&include_fields=
    POST /rest/bug                {product, component, summary, version, description,
                                   op_sys, platform, severity, priority, cc}  201 {"id": N}
    GET  /rest/bug/{id}           {"bugs": [bug], "faults": []}
    PUT  /rest/bug/{id}           {status, resolution, comment: {body}}  {"bugs": [changes]}
    GET  /rest/bug/{id}/comment   {"bugs": {"<id>": {"comments": [...]}}, "comments": {}}
    POST /rest/bug/{id}/comment   {comment}  200 {"id": N}
    GET  /rest/version            {"version": "5.0.6"}
    GET  /show_bug.cgi?id=N       a small HTML page (what ``bug_url`` links to)

Authentication: ``X-BUGZILLA-API-KEY`` header, ``api_key`` query parameter or
body field. A wrong key is refused even on reads (code 306, which Bugzilla
maps to HTTP 400, not 401); writes without a key get code 410 (HTTP 401).
Errors are Bugzilla's JSON: ``{"error": true, "code": N, "message": ...}``
with the HTTP status of ``REST_STATUS_CODE_MAP``.

:class:`BugzillaPeer` is a reboot-lab peer (``MachineLab(peers=[peer])``);
:class:`BugzillaFake` serves one on its own loop thread. State (``bugs``,
``comments``, ``requests``) is owned by the loop: read it there.
"""

from __future__ import annotations

import asyncio
import copy
import html
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from lab.fleet import check_loopback
from lab.loop_thread import LoopThread

__all__ = ["BugzillaFake", "BugzillaFaults", "BugzillaPeer", "OPEN_STATUSES"]

OPEN_STATUSES = ("UNCONFIRMED", "CONFIRMED", "IN_PROGRESS")
CLOSED_STATUSES = ("RESOLVED", "VERIFIED")
RESOLUTIONS = ("FIXED", "INVALID", "WONTFIX", "DUPLICATE", "WORKSFORME")
LEGAL = {
    "severity": ("blocker", "critical", "major", "normal", "minor", "trivial", "enhancement"),
    "priority": ("Highest", "High", "Normal", "Low", "Lowest", "---"),
    "op_sys": ("All", "Windows", "Mac OS", "Linux", "Other"),
    "platform": ("All", "PC", "Macintosh", "Other"),
}
DEFAULTS = {"severity": "normal", "priority": "---", "op_sys": "All", "platform": "All"}
MAX_SUMMARY = 255  # MAX_FREETEXT_LENGTH
MAX_COMMENT = 65535
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


class BugzillaError(Exception):
    """An error Bugzilla reports as JSON (internal to the fake)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_text(text: str) -> str:
    """Bugzilla's ``clean_text``: control characters become one space, then trim."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


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
        self.products = {p: list(c) for p, c in (products or {"Datacenter": ["Reboots"]}).items()}
        self.versions = list(versions)
        self.api_keys = dict(api_keys or {secrets.token_urlsafe(30): "rackflow@lab.test"})
        self.users = None if users is None else set(users) | set(self.api_keys.values())
        self.require_login = require_login
        self.host = check_loopback(host)
        self.port = port
        self.faults = faults or BugzillaFaults()
        self.bugs: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self._next_comment = 1
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def api_key(self) -> str:
        """The first API key (the one tests usually need)."""
        return next(iter(self.api_keys))

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
        self._set_status(self.bugs[bug_id], "RESOLVED", resolution)

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

    def _bug(self, raw: str) -> dict[str, Any]:
        if not raw.isdigit():
            raise BugzillaError(100, f"'{raw}' is not a valid bug number nor an alias to a bug.")
        bug = self.bugs.get(int(raw))
        if bug is None:
            raise BugzillaError(101, f"Bug #{raw} does not exist.")
        return bug

    # -- handlers ---------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "5.0.6"})

    async def _search(self, request: web.Request) -> web.Response:
        self._login(request, {}, write=False)
        query = request.query
        found = [b for b in self.bugs.values() if _matches(b, query)]
        fields = [f for v in query.getall("include_fields", []) for f in v.split(",") if f]
        raw_limit = query.get("limit", "0") or "0"
        if not raw_limit.isdigit():
            raise BugzillaError(52, f"Invalid parameter passed to Bug.search: limit={raw_limit}")
        limit = int(raw_limit)
        found = found[:limit] if limit > 0 else found
        return web.json_response({"bugs": [_only(b, fields) for b in found]})

    async def _get(self, request: web.Request) -> web.Response:
        self._login(request, {}, write=False)
        bug = self._bug(request.match_info["id"])
        return web.json_response({"bugs": [bug], "faults": []})

    async def _get_comments(self, request: web.Request) -> web.Response:
        self._login(request, {}, write=False)
        bug = self._bug(request.match_info["id"])
        comments = self.comments[bug["id"]]
        return web.json_response({"bugs": {str(bug["id"]): {"comments": comments}}, "comments": {}})

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        login = self._login(request, body, write=True)
        bug = self._validated_new_bug(body, creator=str(login))
        self.bugs[bug["id"]] = bug
        self.comments[bug["id"]] = []
        self._store_comment(bug, str(body.get("description") or ""), creator=bug["creator"])
        return web.json_response({"id": bug["id"]}, status=201)

    async def _add_comment(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        login = self._login(request, body, write=True)
        bug = self._bug(request.match_info["id"])
        text = body.get("comment")
        if not isinstance(text, str) or not text.strip():
            raise BugzillaError(50, "The function Bug.add_comment requires a comment argument.")
        if len(text) > MAX_COMMENT:
            raise BugzillaError(114, f"Comments cannot be longer than {MAX_COMMENT} characters.")
        comment = self._store_comment(bug, text, creator=str(login))
        bug["last_change_time"] = comment["creation_time"]
        # Bugzilla 5.0's add_comment resource says ``success_code`` where REST.pm
        # reads ``status_code``: it answers 200, not 201 (create answers 201).
        return web.json_response({"id": comment["id"]})

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        login = self._login(request, body, write=True)
        bug = self._bug(request.match_info["id"])
        before = {"status": bug["status"], "resolution": bug["resolution"]}
        status = str(body.get("status", bug["status"]))
        resolution = body.get("resolution")
        if status not in OPEN_STATUSES + CLOSED_STATUSES:
            raise BugzillaError(51, f"There is no status named '{status}'.")
        self._set_status(bug, status, None if resolution is None else str(resolution))
        comment = body.get("comment")
        if isinstance(comment, dict) and str(comment.get("body", "")).strip():
            self._store_comment(bug, str(comment["body"]), creator=str(login))
        changes = {
            k: {"removed": before[k], "added": bug[k]} for k in before if before[k] != bug[k]
        }
        result = {"id": bug["id"], "alias": [], "last_change_time": bug["last_change_time"]}
        return web.json_response({"bugs": [result | {"changes": changes}]})

    async def _show_bug(self, request: web.Request) -> web.Response:
        bug = self._bug(request.query.get("id", ""))
        title = html.escape(f"Bug {bug['id']} - {bug['summary']}")
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return web.Response(text=page, content_type="text/html")

    # -- the model --------------------------------------------------------------------

    def _validated_new_bug(self, body: Mapping[str, Any], *, creator: str) -> dict[str, Any]:
        for field in ("product", "component", "summary", "version"):
            if field not in body or body[field] is None:
                raise BugzillaError(
                    50,
                    f"The function Bugzilla::Bug->create requires a {field} argument, "
                    "and that argument was not set.",
                )
        product, component = str(body["product"]).strip(), str(body["component"]).strip()
        if product not in self.products:
            raise BugzillaError(
                106,
                f"Sorry, either the product '{product}' does not exist or you aren't "
                "authorized to enter a bug into it.",
            )
        if not component:
            raise BugzillaError(105, "You must choose a component to file this bug in.")
        if component not in self.products[product]:
            raise BugzillaError(
                51, f"There is no component named '{component}' in the '{product}' product."
            )
        version = str(body["version"]).strip()
        if version not in self.versions:
            raise BugzillaError(
                51, f"There is no version named '{version}' in the '{product}' product."
            )
        summary = clean_text(str(body["summary"]))
        if not summary:
            raise BugzillaError(107, "You must enter a summary for this bug.")
        if len(summary) > MAX_SUMMARY:
            raise BugzillaError(
                104,
                f"The text you entered in the Summary field is too long ({len(summary)} "
                f"characters, above the maximum length allowed of {MAX_SUMMARY} characters).",
            )
        choices = {f: str(body.get(f) or DEFAULTS[f]) for f in LEGAL}
        for field, value in choices.items():
            if value not in LEGAL[field]:
                raise BugzillaError(51, f"There is no {field.replace('_', ' ')} named '{value}'.")
        now = _now()
        return {
            "id": max(self.bugs, default=0) + 1,
            "alias": [],
            "summary": summary,
            "product": product,
            "component": component,
            "version": version,
            "status": "CONFIRMED",
            "resolution": "",
            "is_open": True,
            "is_confirmed": True,
            **choices,
            "cc": self._checked_cc(body.get("cc")),
            "creator": creator,
            "assigned_to": f"{component.lower()}@{product.lower()}.bugs",
            "classification": "Unclassified",
            "target_milestone": "---",
            "creation_time": now,
            "last_change_time": now,
            "keywords": [],
            "whiteboard": "",
            "url": "",
            "dupe_of": None,
        }

    def _checked_cc(self, raw: Any) -> list[str]:
        cc = [raw] if isinstance(raw, str) else list(raw or [])
        for login in cc:
            known = "@" in str(login) if self.users is None else login in self.users
            if not known:
                raise BugzillaError(
                    504,
                    f"There is no user named '{login}'. Either you mis-typed the name or "
                    "that user has not yet registered for a Bugzilla account.",
                )
        return [str(c) for c in dict.fromkeys(cc)]

    def _store_comment(self, bug: dict[str, Any], text: str, *, creator: str) -> dict[str, Any]:
        comments = self.comments[bug["id"]]
        now = _now()
        comment = {
            "id": self._next_comment,
            "bug_id": bug["id"],
            "count": len(comments),
            "text": text.rstrip(),  # Bugzilla strips trailing whitespace from comments
            "creator": creator,
            "author": creator,
            "time": now,
            "creation_time": now,
            "is_private": False,
            "attachment_id": None,
            "tags": [],
        }
        self._next_comment += 1
        comments.append(comment)
        return comment

    def _set_status(self, bug: dict[str, Any], status: str, resolution: str | None) -> None:
        if status in CLOSED_STATUSES:
            resolution = resolution or (bug["resolution"] or None)
            if resolution not in RESOLUTIONS:
                raise BugzillaError(
                    121, f"A valid resolution is required to mark bugs as {status}."
                )
        elif resolution:
            raise BugzillaError(122, "You cannot set a resolution for open bugs.")
        bug["status"], bug["resolution"] = status, resolution or ""
        bug["is_open"] = status in OPEN_STATUSES
        bug["last_change_time"] = _now()


def _error(err: BugzillaError) -> web.Response:
    body = {"error": True, "code": err.code, "message": err.message}
    return web.json_response(body, status=_STATUS.get(err.code, 400))


def _matches(bug: Mapping[str, Any], query: MultiMapping[str]) -> bool:
    def any_of(name: str) -> list[str]:
        return list(query.getall(name, []))

    for field in ("product", "component", "status", "version", "severity", "creator"):
        wanted = any_of(field)
        if wanted and bug[field] not in wanted:
            return False
    resolutions = ["" if r == "---" else r for r in any_of("resolution")]
    if resolutions and bug["resolution"] not in resolutions:
        return False
    ids = any_of("id")
    if ids and str(bug["id"]) not in ids:
        return False
    # Bug.search's ``summary`` is a case-insensitive substring match (any of several).
    summaries = any_of("summary")
    return not summaries or any(s.lower() in bug["summary"].lower() for s in summaries)


def _only(bug: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    if not fields or "_all" in fields or "_default" in fields:
        return dict(bug)
    return {k: v for k, v in bug.items() if k in fields}


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
