"""The Bugzilla REST client: find, read, file and comment on bugs (see :mod:`clients.bugzilla`)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from clients.bugzilla._wire import json_or_none, remote_error
from clients.bugzilla.models import MAX_SUMMARY, SEARCH_FIELDS, Bug, Comment, normalize_summary
from clients.closing import AsyncClosing
from clients.errors import PreconditionError, ProtocolError
from clients.http_errors import error_for_exception

__all__ = ["API_KEY_HEADER", "BugzillaClient"]

logger = logging.getLogger("rackflow.clients.bugzilla")

API_KEY_HEADER = "X-BUGZILLA-API-KEY"
_ACCEPT: Mapping[str, str] = MappingProxyType({"Accept": "application/json"})

M = TypeVar("M", bound=BaseModel)


class BugzillaClient(AsyncClosing):
    """Talk to one Bugzilla; use as ``async with BugzillaClient(...) as bz:``.

    Construction does no I/O. Clients do not retry: Prefect tasks do.

    Args:
        url: Base URL, e.g. ``https://bugzilla.example.com`` (``/rest`` is added).
        api_key: A Bugzilla API key (Preferences -> API Keys). Never logged.
        verify: TLS verification: an ``ssl.SSLContext``, True or False.
        timeout: Per-request timeout in seconds, or an ``httpx.Timeout``.
        transport: httpx transport (tests: ``httpx.MockTransport``).

    Raises:
        PreconditionError: ``url`` not http(s), carrying credentials, or an empty key.
    """

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        verify: ssl.SSLContext | bool = True,
        timeout: httpx.Timeout | float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise PreconditionError(subject="url", reason="must start with https:// or http://")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise PreconditionError(subject="url", reason="must not carry credentials")
        if not api_key:
            raise PreconditionError(subject="api_key", reason="is empty")
        self._base = url.rstrip("/").removesuffix("/rest")
        self._api_key = api_key
        self._verify = verify
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._base!r})"

    @property
    def url(self) -> str:
        """The Bugzilla base URL (without ``/rest``)."""
        return self._base

    async def aclose(self) -> None:
        """Close the HTTP connections (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def bug_url(self, bug_id: int) -> str:
        """The web page of a bug, for people.

        Args:
            bug_id: The bug's number.

        Returns:
            ``<url>/show_bug.cgi?id=N``.
        """
        return f"{self._base}/show_bug.cgi?id={bug_id}"

    # -- calls ------------------------------------------------------------------------

    async def find_open_bugs(self, summary: str, *, product: str, component: str) -> list[Bug]:
        """Find the unresolved bugs whose summary is exactly ``summary``.

        Bugzilla's ``summary`` search is a case-insensitive substring match;
        the exact comparison (after Bugzilla's own normalization) is done here.

        Args:
            summary: The summary to look for.
            product: Product the bugs are in.
            component: Component the bugs are in.

        Returns:
            Matching open bugs, oldest (lowest id) first.

        Raises:
            AuthError: The API key was refused.
            RackflowError: Any other error of the request.
        """
        wanted = normalize_summary(summary)
        params = {
            "product": product,
            "component": component,
            "summary": wanted,
            "resolution": "---",  # Bugzilla's spelling of "no resolution": open bugs
            "include_fields": SEARCH_FIELDS,
        }
        data = await self._request("GET", "/rest/bug", params=params)
        bugs = self._models(Bug, data.get("bugs"), path="/rest/bug")
        found = [b for b in bugs if b.open and normalize_summary(b.summary) == wanted]
        return sorted(found, key=lambda b: b.id)

    async def get_bug(self, bug_id: int) -> Bug:
        """Read one bug.

        Args:
            bug_id: The bug's number.

        Returns:
            The bug.

        Raises:
            NotFoundError: No such bug (or not visible to this key).
            RackflowError: Any other error of the request.
        """
        path = f"/rest/bug/{int(bug_id)}"
        data = await self._request("GET", path)
        bugs = self._models(Bug, data.get("bugs"), path=path)
        if not bugs:
            raise ProtocolError(target=self._target(path), detail="no bug in the answer")
        return bugs[0]

    async def comments(self, bug_id: int) -> list[Comment]:
        """Read a bug's comments.

        Args:
            bug_id: The bug's number.

        Returns:
            The comments, description (count 0) first.

        Raises:
            NotFoundError: No such bug.
            RackflowError: Any other error of the request.
        """
        path = f"/rest/bug/{int(bug_id)}/comment"
        data = await self._request("GET", path)
        bugs = data.get("bugs")
        entry = bugs.get(str(int(bug_id))) if isinstance(bugs, dict) else None
        raw = entry.get("comments") if isinstance(entry, dict) else None
        return sorted(self._models(Comment, raw, path=path), key=lambda c: c.count)

    async def create_bug(
        self,
        *,
        product: str,
        component: str,
        summary: str,
        description: str,
        version: str = "unspecified",
        severity: str | None = None,
        op_sys: str = "All",
        platform: str = "All",
        cc: Sequence[str] = (),
    ) -> Bug:
        """File a bug, then read it back.

        ``op_sys`` and ``platform`` are always sent: Bugzilla otherwise guesses
        them from the client's User-Agent or the admin's defaults.

        Args:
            product: Product name.
            component: Component of that product.
            summary: One line, at most 255 characters once normalized.
            description: The first comment.
            version: A version of the product.
            severity: e.g. ``major``; None: the instance's default.
            op_sys: Operating system field.
            platform: Hardware platform field.
            cc: Logins (e-mail addresses) to put on CC; each must have an account.

        Returns:
            The new bug.

        Raises:
            PreconditionError: Empty or over-long summary.
            RemoteError: Bugzilla refused it (unknown product 106, component or
                version 51, unknown CC user 504, ...).
            RackflowError: Any other error of the request. After a timeout the
                bug may exist anyway: search before filing again.
        """
        text = normalize_summary(summary)
        if not text or len(text) > MAX_SUMMARY:
            raise PreconditionError(
                subject="summary", reason=f"must be 1-{MAX_SUMMARY} characters, got {len(text)}"
            )
        body: dict[str, Any] = {
            "product": product,
            "component": component,
            "summary": text,
            "version": version,
            "description": description,
            "op_sys": op_sys,
            "platform": platform,
        }
        if severity:
            body["severity"] = severity
        if cc:
            body["cc"] = list(cc)
        data = await self._request("POST", "/rest/bug", json=body)
        bug_id = data.get("id")
        if not isinstance(bug_id, int):
            raise ProtocolError(target=self._target("/rest/bug"), detail="no bug id in answer")
        logger.info("filed bug %d in %s/%s", bug_id, product, component)
        return await self.get_bug(bug_id)

    async def add_comment(self, bug_id: int, text: str) -> int:
        """Add a public comment to a bug.

        Args:
            bug_id: The bug's number.
            text: The comment (at most 65,535 characters).

        Returns:
            The new comment's id.

        Raises:
            NotFoundError: No such bug.
            RackflowError: Any other error of the request.
        """
        path = f"/rest/bug/{int(bug_id)}/comment"
        data = await self._request("POST", path, json={"comment": text})
        comment_id = data.get("id")
        if not isinstance(comment_id, int):
            raise ProtocolError(target=self._target(path), detail="no comment id in answer")
        return comment_id

    async def set_status(
        self, bug_id: int, status: str, *, resolution: str | None = None, comment: str = ""
    ) -> None:
        """Change a bug's status, e.g. ``RESOLVED`` / ``FIXED``.

        Args:
            bug_id: The bug's number.
            status: New status (``RESOLVED``, ``VERIFIED``, ``CONFIRMED``, ...).
            resolution: Needed when resolving (``FIXED``, ``WONTFIX``, ...).
            comment: A comment to add with the change.

        Raises:
            RemoteError: Refused (121 missing resolution, 122 resolution on an open bug).
            RackflowError: Any other error of the request.
        """
        body: dict[str, Any] = {"status": status}
        if resolution is not None:
            body["resolution"] = resolution
        if comment:
            body["comment"] = {"body": comment}
        await self._request("PUT", f"/rest/bug/{int(bug_id)}", json=body)

    # -- plumbing ---------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        # Built on first use: an SSL context costs milliseconds, and no I/O in __init__.
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self._verify, timeout=self._timeout, transport=self._transport
            )
        return self._client

    def _target(self, path: str) -> str:
        return self._base + path

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "********") if self._api_key in text else text

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = dict(_ACCEPT)
        headers[API_KEY_HEADER] = self._api_key
        try:
            response = await self._http().request(
                method, self._base + path, params=params, json=json, headers=headers
            )
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, target=self._target(path)) from exc
        body = json_or_none(response)
        error = body if isinstance(body, dict) and body.get("error") else None
        if not response.is_success or error is not None:
            raise remote_error(
                response,
                error,
                target=self._target(path),
                scrub=self._scrub,
                idempotent=method in ("GET", "PUT"),
            )
        if not isinstance(body, dict):
            raise ProtocolError(target=self._target(path), detail="answer is not a JSON object")
        return body

    def _models(self, model: type[M], raw: Any, *, path: str) -> list[M]:
        if not isinstance(raw, list):
            raise ProtocolError(target=self._target(path), detail="expected a list in the answer")
        try:
            return [model.model_validate(item) for item in raw]
        except ValidationError as exc:
            detail = f"malformed {model.__name__}: {exc.errors()[0].get('msg', exc)}"
            raise ProtocolError(target=self._target(path), detail=detail) from None
