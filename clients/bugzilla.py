"""An async client for the Bugzilla 5 REST API: find, file and comment on bugs.

We use httpx rather than python-bugzilla: that library is synchronous
(requests) and defaults to XML-RPC, while our tasks are async and need only
four REST calls.

The API key travels in the ``X-BUGZILLA-API-KEY`` header, never in a URL
(URLs end up in logs and error messages), and is scrubbed from any text the
server sends back.

Error mapping (Bugzilla's JSON errors carry a numeric ``code``):

- codes 300-399 and 410 (bad / revoked API key, login required) ->
  :class:`~clients.errors.AuthError`, whatever the HTTP status (Bugzilla 5
  answers a wrong API key with HTTP 400, code 306);
- codes 51/101 with HTTP 404 -> :class:`~clients.errors.NotFoundError`;
- any other Bugzilla error (e.g. 106 unknown product, 51 unknown component,
  even though 106 comes with HTTP 401) -> :class:`~clients.errors.RemoteError`;
- no Bugzilla JSON: 401/403 -> AuthError, 404 -> NotFoundError, 409/503 ->
  BusyError, other 5xx -> ServerError (retryable for GET/PUT only);
- connect, timeout, reset -> :class:`~clients.errors.TransportError`.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RemoteError,
    ServerError,
    TlsError,
    TransportError,
)
from clients.polling import parse_retry_after

__all__ = ["Bug", "BugzillaClient", "Comment", "normalize_summary"]

logger = logging.getLogger("rackflow.clients.bugzilla")

API_KEY_HEADER = "X-BUGZILLA-API-KEY"
MAX_SUMMARY = 255  # Bugzilla's MAX_FREETEXT_LENGTH
# The fields a duplicate check needs: far less than a whole bug (Bugzilla
# instances with many custom fields answer searches slowly otherwise).
SEARCH_FIELDS = "id,summary,status,resolution,is_open,product,component,version,creation_time"
_AUTH_CODES = range(300, 400)
_LOGIN_REQUIRED = 410
_ACCEPT: Mapping[str, str] = MappingProxyType({"Accept": "application/json"})

M = TypeVar("M", bound=BaseModel)


def normalize_summary(summary: str) -> str:
    """Normalize a summary the way Bugzilla stores it (``clean_text``).

    Args:
        summary: Summary text.

    Returns:
        Control characters (newlines, tabs) replaced by one space, ends trimmed.
    """
    return re.sub(r"[\x00-\x1f\x7f]+", " ", summary).strip()


class Bug(BaseModel):
    """A bug as Bugzilla's ``GET /rest/bug`` describes it (the fields rackflow reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    summary: str
    status: str
    resolution: str = ""
    is_open: bool | None = None
    product: str = ""
    component: str = ""
    version: str = ""
    severity: str | None = None
    creation_time: str | None = None
    cc: list[str] = Field(default_factory=list)

    @property
    def open(self) -> bool:
        """True while unresolved (``is_open``, else an empty resolution)."""
        return self.is_open if self.is_open is not None else not self.resolution


class Comment(BaseModel):
    """One comment of a bug; ``count`` 0 is the bug's description."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    bug_id: int
    count: int
    text: str
    creator: str = ""
    creation_time: str | None = None
    is_private: bool = False


class BugzillaClient:
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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
            raise self._transport_error(exc, path) from exc
        body = _json_or_none(response)
        error = body if isinstance(body, dict) and body.get("error") else None
        if not response.is_success or error is not None:
            raise self._remote_error(response, error, path, idempotent=method in ("GET", "PUT"))
        if not isinstance(body, dict):
            raise ProtocolError(target=self._target(path), detail="answer is not a JSON object")
        return body

    def _transport_error(self, exc: httpx.HTTPError, path: str) -> TransportError | ProtocolError:
        target = self._target(path)
        cert = _ssl_cause(exc)
        if cert is not None:
            reason = getattr(cert, "verify_message", None) or str(cert)
            return TlsError(target=target, reason=f"certificate not trusted: {reason}")
        if isinstance(exc, httpx.TimeoutException):
            return TransportError(target=target, reason=f"{type(exc).__name__}: timed out")
        if isinstance(exc, httpx.TransportError):
            return TransportError(target=target, reason=f"{type(exc).__name__}: {exc}")
        return ProtocolError(target=target, detail=f"{type(exc).__name__}: {exc}")

    def _remote_error(
        self,
        response: httpx.Response,
        error: Mapping[str, Any] | None,
        path: str,
        *,
        idempotent: bool,
    ) -> RemoteError:
        status = response.status_code
        code = error.get("code") if error else None
        message = error.get("message") if error else None
        kwargs: dict[str, Any] = {
            "status": status,
            "code": str(code) if code is not None else None,
            "message": self._scrub(str(message or response.reason_phrase or "error")),
            "target": self._target(path),
        }
        if isinstance(code, int):
            if code in _AUTH_CODES or code == _LOGIN_REQUIRED:
                return AuthError(**kwargs)
            if status == 404:
                return NotFoundError(**kwargs)
            if status >= 500:
                return ServerError(idempotent=idempotent, **kwargs)
            return RemoteError(**kwargs)
        if status in (401, 403):
            return AuthError(**kwargs)
        if status == 404:
            return NotFoundError(**kwargs)
        if status in (409, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return BusyError(retry_after=retry_after, **kwargs)
        if status >= 500:
            return ServerError(idempotent=idempotent, **kwargs)
        return RemoteError(**kwargs)

    def _models(self, model: type[M], raw: Any, *, path: str) -> list[M]:
        if not isinstance(raw, list):
            raise ProtocolError(target=self._target(path), detail="expected a list in the answer")
        try:
            return [model.model_validate(item) for item in raw]
        except ValidationError as exc:
            detail = f"malformed {model.__name__}: {exc.errors()[0].get('msg', exc)}"
            raise ProtocolError(target=self._target(path), detail=detail) from None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _ssl_cause(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """Find a certificate error in the cause/context chain (httpx -> httpcore -> ssl)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None
