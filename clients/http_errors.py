"""Map what httpx raises to the project's errors (shared by the httpx clients).

A certificate the client does not trust becomes :class:`~clients.errors.TlsError`
(found anywhere in the cause chain: httpx wraps httpcore, which wraps ssl),
connect / timeout / reset a :class:`~clients.errors.TransportError`, and
anything else httpx refuses (undecodable answer, redirect loop) a
:class:`~clients.errors.ProtocolError`.
"""

from __future__ import annotations

import ssl

import httpx

from clients.errors import ProtocolError, TlsError, TransportError

__all__ = ["error_for_exception", "ssl_cause"]


def ssl_cause(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """Find a certificate error in the cause/context chain (httpx -> httpcore -> ssl).

    Args:
        exc: What httpx raised.

    Returns:
        The certificate verification error, or None when there is none.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


def error_for_exception(exc: httpx.HTTPError, *, target: str) -> TransportError | ProtocolError:
    """Map an httpx exception to the project's error.

    Args:
        exc: What httpx raised.
        target: URL without credentials, for the message.

    Returns:
        TlsError when the certificate was not trusted, TransportError for
        connect/timeout/reset and other transport failures, ProtocolError for
        undecodable answers and redirect loops.
    """
    cert = ssl_cause(exc)
    if cert is not None:
        reason = getattr(cert, "verify_message", None) or str(cert)
        return TlsError(target=target, reason=f"certificate not trusted: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(target=target, reason=f"{type(exc).__name__}: timed out")
    if isinstance(exc, httpx.TransportError):
        detail = str(exc) or type(exc).__name__
        return TransportError(target=target, reason=f"{type(exc).__name__}: {detail}")
    return ProtocolError(target=target, detail=f"{type(exc).__name__}: {exc}")
