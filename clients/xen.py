"""XenServer / XCP-ng VM power control over XenAPI (the ``XenAPI`` package, synchronous).

``XenAPI.Session`` is an ``xmlrpc.client.ServerProxy``: its default transport
has no timeout, so a hung pool master would block a worker thread forever.
:class:`XenClient` gives it transports with one (adjustable per call, since a
clean shutdown legitimately takes minutes), maps every failure to
:mod:`clients.errors`, and always logs out: XAPI keeps sessions until they
time out and pools cap them per user.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import xmlrpc.client
from collections.abc import Sequence
from typing import Any, cast
from xml.parsers.expat import ExpatError

import XenAPI

from clients.closing import Closing
from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RackflowError,
    RemoteError,
    ServerError,
    TlsError,
    TransportError,
)

__all__ = ["XenClient"]

logger = logging.getLogger("rackflow.clients.xen")

# XAPI error code -> (error class, status-like code for RemoteError).
_FAILURES: dict[str, tuple[type[RemoteError], int]] = {
    "SESSION_AUTHENTICATION_FAILED": (AuthError, 401),
    "PERMISSION_DENIED": (AuthError, 403),
    "RBAC_PERMISSION_DENIED": (AuthError, 403),
    "UUID_INVALID": (NotFoundError, 404),
    "HANDLE_INVALID": (NotFoundError, 404),
    "OTHER_OPERATION_IN_PROGRESS": (BusyError, 409),
    "HOST_STILL_BOOTING": (BusyError, 503),
    "INTERNAL_ERROR": (ServerError, 500),
}


def _with_timeout(conn: http.client.HTTPConnection, timeout_s: float) -> None:
    conn.timeout = timeout_s
    if conn.sock is not None:  # kept-alive connection: change its socket too
        conn.sock.settimeout(timeout_s)


# What a XenAPI call can raise: XAPI failures, xmlrpc faults and HTTP errors, socket
# and TLS errors, broken HTTP, and bodies that are not XML.
_CALL_ERRORS = (XenAPI.Failure, xmlrpc.client.Error, OSError, http.client.HTTPException, ExpatError)


class _Transport(xmlrpc.client.Transport):
    """An xmlrpc transport whose socket timeout can change between calls."""

    def __init__(self, *, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        _with_timeout(conn, self.timeout_s)
        return conn


class _SafeTransport(xmlrpc.client.SafeTransport):
    """The HTTPS variant of :class:`_Transport`."""

    def __init__(self, *, timeout_s: float, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self.timeout_s = timeout_s

    def make_connection(self, host: Any) -> http.client.HTTPSConnection:
        conn = super().make_connection(host)
        _with_timeout(conn, self.timeout_s)
        return conn


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class XenClient(Closing):
    """XenAPI calls to one pool master; use as ``with XenClient(...) as xen:``.

    Construction does no I/O; the session is opened on the first call and
    closed on :meth:`logout` / leaving the ``with``.

    Args:
        url: ``https://pool-master`` (or ``http://``), no credentials in it.
        username: XAPI user (e.g. ``root``).
        password: Its password. Never logged, never put in an error or repr.
        verify: TLS verification for https: an ``ssl.SSLContext``, True (system
            store) or False.
        timeout_s: Socket timeout of every call but clean shutdowns.
        originator: Name XAPI shows for the session.

    Raises:
        PreconditionError: Bad ``url`` or ``timeout_s``.
    """

    def __init__(
        self,
        *,
        url: str,
        username: str,
        password: str,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 30.0,
        originator: str = "rackflow",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise PreconditionError(subject="url", reason="must start with https:// or http://")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise PreconditionError(
                subject="url", reason="must not carry credentials; pass username/password"
            )
        if not timeout_s > 0:
            raise PreconditionError(subject="timeout_s", reason=f"must be > 0, got {timeout_s}")
        self._url = url
        self._username = username
        self._password = password
        self._verify = verify
        self._timeout_s = timeout_s
        self._originator = originator
        self._session: Any = None  # XenAPI.Session once built
        self._transport: _Transport | _SafeTransport | None = None
        self._logged_in = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._url!r}, username={self._username!r})"

    @property
    def logged_in(self) -> bool:
        """Whether a session is open."""
        return self._logged_in

    # -- plumbing ---------------------------------------------------------------------

    def _proxy(self) -> Any:
        if self._session is None:
            if self._url.startswith("https://"):
                verify = self._verify
                if verify is True:
                    context = ssl.create_default_context()
                elif verify is False:
                    context = _unverified()
                else:
                    context = verify
                self._transport = _SafeTransport(timeout_s=self._timeout_s, context=context)
            else:
                self._transport = _Transport(timeout_s=self._timeout_s)
            self._session = XenAPI.Session(self._url, transport=self._transport)
        return self._session

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "********") if self._password else text

    def _error(self, exc: BaseException, method: str) -> RackflowError:
        """Map what XenAPI / xmlrpc / the socket raised to the project's errors."""
        target = f"{self._url} {method}"
        if isinstance(exc, XenAPI.Failure):
            details = [self._scrub(str(d)) for d in cast(Sequence[Any], exc.details)]
            code = details[0] if details else "UNKNOWN"
            cls, status = _FAILURES.get(code, (RemoteError, 400))
            kwargs: dict[str, Any] = {"status": status, "code": code, "target": target}
            kwargs["message"] = " ".join(details[1:])
            if cls is ServerError:
                return ServerError(
                    protocol="XenAPI", idempotent=method.startswith("VM.get_"), **kwargs
                )
            return cls(**kwargs)
        if isinstance(exc, xmlrpc.client.Fault) and exc.faultCode == 504:
            # XenAPI turns a connect ETIMEDOUT during login into Fault(504).
            return TransportError(target=target, reason="connection timed out")
        if isinstance(exc, xmlrpc.client.Fault):
            detail = self._scrub(f"XML-RPC fault: {exc.faultString}")
            return ProtocolError(target=target, detail=detail)
        if isinstance(exc, xmlrpc.client.ProtocolError):
            status = exc.errcode
            kwargs = {"status": status, "message": exc.errmsg, "target": target}
            if status in (401, 403):
                return AuthError(protocol="XenAPI", **kwargs)
            if status in (409, 503):
                return BusyError(protocol="XenAPI", **kwargs)
            if status >= 500:
                return ServerError(
                    protocol="XenAPI", idempotent=method.startswith("VM.get_"), **kwargs
                )
            return RemoteError(protocol="XenAPI", **kwargs)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = exc.verify_message or str(exc)
            return TlsError(target=target, reason=f"certificate not trusted: {reason}")
        if isinstance(exc, socket.timeout | TimeoutError):
            return TransportError(target=target, reason=f"timed out after {self._timeout_now()} s")
        if isinstance(exc, OSError | http.client.HTTPException):
            return TransportError(target=target, reason=f"{type(exc).__name__}: {exc}")
        return ProtocolError(target=target, detail=f"{type(exc).__name__}: {self._scrub(str(exc))}")

    def _timeout_now(self) -> float:
        return self._transport.timeout_s if self._transport is not None else self._timeout_s

    def _invoke(self, method: str, fn: Any, *params: Any) -> Any:
        try:
            return fn(*params)
        except _CALL_ERRORS as exc:
            # "from None": the original traceback holds the call's arguments (the password
            # for a login).
            raise self._error(exc, method) from None

    def _call(self, method: str, *params: Any, timeout_s: float | None = None) -> Any:
        """One XenAPI call (``VM.get_by_uuid`` ...), logging in first when needed."""
        self.login()
        proxy = self._proxy()
        assert self._transport is not None
        self._transport.timeout_s = timeout_s or self._timeout_s
        try:
            fn = proxy.xenapi
            for part in method.split("."):
                fn = getattr(fn, part)
            return self._invoke(method, fn, *params)
        finally:
            self._transport.timeout_s = self._timeout_s

    # -- sessions ---------------------------------------------------------------------

    def login(self) -> None:
        """Open a session (no-op when one is open).

        Raises:
            AuthError: Credentials refused (SESSION_AUTHENTICATION_FAILED).
            TransportError: The pool master could not be reached (TlsError: untrusted).
            ProtocolError: The answer was not XenAPI.
        """
        if self._logged_in:
            return
        proxy = self._proxy()
        credentials = (self._username, self._password, "1.0", self._originator)
        self._invoke("session.login_with_password", proxy.login_with_password, *credentials)
        self._logged_in = True
        logger.debug("XenAPI session opened on %s", self._url)

    def logout(self) -> None:
        """Close the session, if one is open. The session is forgotten even on failure.

        Raises:
            TransportError: The pool master could not be reached.
            RemoteError: XAPI refused.
        """
        if not self._logged_in:
            return
        self._logged_in = False
        self._invoke("session.logout", self._proxy().xenapi.session.logout)
        logger.debug("XenAPI session closed on %s", self._url)

    def close(self) -> None:
        """Log out (best effort: a failure is logged, not raised) and drop the connection."""
        try:
            self.logout()
        except RackflowError as err:
            # XAPI expires idle sessions itself; do not mask the caller's outcome.
            logger.warning("XenAPI logout from %s failed: %s", self._url, err)
        finally:
            if self._transport is not None:
                self._transport.close()

    # -- VMs --------------------------------------------------------------------------

    def vm_ref(self, vm_uuid: str) -> str:
        """Find a VM by uuid.

        Args:
            vm_uuid: The VM's uuid.

        Returns:
            Its ``OpaqueRef:...``.

        Raises:
            NotFoundError: No such VM (UUID_INVALID).
            RackflowError: Other errors of the call.
        """
        return str(self._call("VM.get_by_uuid", vm_uuid))

    def power_state(self, vm_uuid: str) -> str:
        """Read a VM's power state.

        Args:
            vm_uuid: The VM's uuid.

        Returns:
            ``Running``, ``Halted``, ``Paused`` or ``Suspended``.

        Raises:
            NotFoundError: No such VM.
            RackflowError: Other errors of the call.
        """
        return str(self._call("VM.get_power_state", self.vm_ref(vm_uuid)))

    def reboot_vm(self, vm_uuid: str, *, shutdown_timeout_s: float = 120.0) -> str:
        """Shut a VM down (clean, else hard) and start it again; always log out.

        A VM already halted is only started. A clean shutdown that fails
        (guest without PV tools, VM_SHUTDOWN_TIMEOUT) or does not return within
        ``shutdown_timeout_s`` is followed by a hard shutdown, unless the VM
        halted meanwhile.

        Args:
            vm_uuid: The VM's uuid.
            shutdown_timeout_s: Seconds to wait for the clean shutdown.

        Returns:
            What was done, e.g. ``"clean shutdown, start"`` or
            ``"hard shutdown (clean shutdown failed: VM_SHUTDOWN_TIMEOUT), start"``.

        Raises:
            AuthError: Credentials refused.
            NotFoundError: No VM with this uuid.
            TransportError: The pool master could not be reached.
            RemoteError: XAPI refused the hard shutdown or the start.
        """
        try:
            vm = self.vm_ref(vm_uuid)
            state = str(self._call("VM.get_power_state", vm))
            how = self._shut_down(vm, vm_uuid, state, shutdown_timeout_s)
            self._call("VM.start", vm, False, False)
            logger.info("XenAPI %s: VM %s restarted (%s)", self._url, vm_uuid, how)
            return f"{how}, start"
        finally:
            self.close()

    def _shut_down(self, vm: str, vm_uuid: str, state: str, timeout_s: float) -> str:
        if state == "Halted":
            return "was halted"
        why = f"VM was {state}"
        if state == "Running":
            try:
                self._call("VM.clean_shutdown", vm, timeout_s=timeout_s)
                return "clean shutdown"
            except (AuthError, NotFoundError, TlsError):
                raise
            except (RemoteError, TransportError) as err:
                detail = err.code if isinstance(err, RemoteError) else err.reason
                why = f"clean shutdown failed: {detail}"
                logger.warning("XenAPI %s: VM %s %s; forcing", self._url, vm_uuid, why)
            # The clean shutdown may have finished after we stopped waiting.
            if str(self._call("VM.get_power_state", vm)) == "Halted":
                return "clean shutdown (late)"
        self._call("VM.hard_shutdown", vm)
        return f"hard shutdown ({why})"
