"""Turn httpx outcomes into rackflow errors (internal to the Redfish client).

One place decides what an HTTP status, a Redfish error body or a broken
connection means, so every call of :class:`~clients.redfish.RedfishClient`
raises the same errors for the same failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    ProtocolError,
    RemoteError,
    ServerError,
)
from clients.polling import parse_retry_after

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})

# iDRAC: "The maximum number of user sessions is reached" (IDRAC.2.x.RAC0218);
# the DMTF Base registry calls the same condition SessionLimitExceeded.
SESSION_LIMIT_CODES = ("RAC0218", "SessionLimitExceeded")

Scrub = Callable[[str], str]


def _no_scrub(text: str) -> str:
    return text


def _scrub_deep(value: Any, scrub: Scrub) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub_deep(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_deep(v, scrub) for v in value]
    return value


def extended_info(response: httpx.Response) -> tuple[str | None, str, list[dict[str, Any]]]:
    """Read a Redfish error body.

    Args:
        response: An error response (any body, possibly not JSON).

    Returns:
        ``(code, message, extended_info)``: the first ``@Message.ExtendedInfo``
        MessageId (else ``error.code``), its Message (else ``error.message``,
        else the reason phrase), and the raw extended info list.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Some services put the extended info at the top level of the body.
        error = body if isinstance(body, dict) else {}
    raw = error.get("@Message.ExtendedInfo")
    infos = [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
    code: str | None = None
    message = ""
    if infos:
        code = _str_or_none(infos[0].get("MessageId"))
        message = "; ".join(m for i in infos if (m := _str_or_none(i.get("Message"))))
    code = code or _str_or_none(error.get("code"))
    message = message or _str_or_none(error.get("message")) or response.reason_phrase
    return code, message, infos


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def error_for_response(
    response: httpx.Response,
    *,
    target: str,
    idempotent: bool,
    scrub: Scrub = _no_scrub,
) -> RemoteError:
    """Map an unsuccessful response to the project's error.

    Args:
        response: The response (status >= 300).
        target: URL without credentials, for the message.
        idempotent: Whether the request may be repeated (GET/DELETE or flagged).
        scrub: Removes secrets from text the peer sent back.

    Returns:
        AuthError (401/403), NotFoundError (404), BusyError (409, 503 or RAC0218,
        with Retry-After), ServerError (other 5xx) or RemoteError (the rest).
    """
    code, message, infos = extended_info(response)
    status = response.status_code
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "message": scrub(message),
        "extended_info": _scrub_deep(infos, scrub),
        "target": target,
    }
    codes = [c for i in infos if (c := _str_or_none(i.get("MessageId")))] + [code or ""]
    if any(c.endswith(SESSION_LIMIT_CODES) for c in codes) or status in (409, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return BusyError(retry_after=retry_after, **kwargs)
    if status in (401, 403):
        return AuthError(**kwargs)
    if status == 404:
        return NotFoundError(**kwargs)
    if status >= 500:
        return ServerError(idempotent=idempotent, **kwargs)
    return RemoteError(**kwargs)


def json_object(response: httpx.Response, *, target: str) -> dict[str, Any]:
    """Decode a response body that must be a JSON object.

    Args:
        response: A successful response.
        target: URL without credentials, for the message.

    Returns:
        The decoded object.

    Raises:
        ProtocolError: The body is not JSON, or not an object.
    """
    try:
        body = response.json()
    except ValueError as exc:
        raise ProtocolError(target=target, detail="response is not JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError(target=target, detail="response is not a JSON object")
    return body
