"""Turn Bugzilla's answers into rackflow errors (internal to the Bugzilla client).

Bugzilla's JSON errors carry a numeric ``code``:

- codes 300-399 and 410 (bad / revoked API key, login required) ->
  :class:`~clients.errors.AuthError`, whatever the HTTP status (Bugzilla 5
  answers a wrong API key with HTTP 400, code 306);
- codes 51/101 with HTTP 404 -> :class:`~clients.errors.NotFoundError`;
- any other Bugzilla error (e.g. 106 unknown product, 51 unknown component,
  even though 106 comes with HTTP 401) -> :class:`~clients.errors.RemoteError`;
- no Bugzilla JSON: 401/403 -> AuthError, 404 -> NotFoundError, 409/503 ->
  BusyError, other 5xx -> ServerError (retryable for GET/PUT only);
- connect, timeout, reset -> :class:`~clients.errors.TransportError`
  (:func:`clients.http_errors.error_for_exception`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from clients.errors import AuthError, BusyError, NotFoundError, RemoteError, ServerError
from clients.polling import parse_retry_after

__all__ = ["json_or_none", "remote_error"]

_AUTH_CODES = range(300, 400)
_LOGIN_REQUIRED = 410


def json_or_none(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON (a proxy's HTML page)."""
    try:
        return response.json()
    except ValueError:
        return None


def remote_error(
    response: httpx.Response,
    error: Mapping[str, Any] | None,
    *,
    target: str,
    scrub: Callable[[str], str],
    idempotent: bool,
) -> RemoteError:
    """The error for a failed answer (see the module docstring).

    Args:
        response: The answer.
        error: Bugzilla's JSON error object, when the body was one.
        target: URL without credentials, for the message.
        scrub: Removes the API key from text the server sent back.
        idempotent: The request may be repeated (GET, PUT): 5xx is retryable.

    Returns:
        AuthError, NotFoundError, BusyError, ServerError or RemoteError.
    """
    status = response.status_code
    code = error.get("code") if error else None
    message = error.get("message") if error else None
    kwargs: dict[str, Any] = {
        "status": status,
        "code": str(code) if code is not None else None,
        "message": scrub(str(message or response.reason_phrase or "error")),
        "target": target,
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
