"""vSphere faults to rackflow errors (the table is in the package docstring)."""

from __future__ import annotations

import http.client
import ssl
from typing import Any

from pyVmomi import vmodl

from clients.errors import (
    AuthError,
    BusyError,
    DeadlineExceeded,
    JobFailedError,
    NotFoundError,
    PreconditionError,
    RackflowError,
    ServerError,
    TlsError,
    TransportError,
)

__all__ = ["task_failure", "translate_error"]

_AUTH_FAULTS = {"InvalidLogin", "NotAuthenticated", "NoPermission"}
_BUSY_FAULTS = {"TaskInProgress", "ConcurrentAccess"}
_REFUSED_FAULTS = {"InvalidState", "HostNotConnected", "InvalidPowerState"}


def _fault_name(fault: Any) -> str:
    return str(getattr(fault, "_wsdlName", None) or type(fault).__name__)


def _fault_message(fault: Any) -> str:
    return str(getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None) or "")


def translate_error(exc: BaseException, *, target: str, read: bool) -> RackflowError:
    """Map a pyVmomi or socket exception of a SOAP call to a rackflow error.

    Args:
        exc: What pyVmomi raised.
        target: vCenter address, named in the error.
        read: Whether the call only read (a failed read may be retried).

    Returns:
        The rackflow error to raise (``from exc``).
    """
    if isinstance(exc, RackflowError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(target=target, reason=f"certificate not trusted: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return TlsError(target=target, reason=f"TLS failed: {exc.reason or exc}")
    if isinstance(exc, vmodl.MethodFault):
        name, message = _fault_name(exc), _fault_message(exc)
        if name in _AUTH_FAULTS:
            return AuthError(status=500, code=name, message=message, target=target)
        if name == "ManagedObjectNotFound":
            return NotFoundError(status=500, code=name, message=message, target=target)
        if name in _BUSY_FAULTS:
            return BusyError(status=500, code=name, message=message, target=target)
        return ServerError(status=500, code=name, message=message, target=target, idempotent=read)
    if isinstance(exc, OSError | http.client.HTTPException):
        return TransportError(target=target, reason=f"{type(exc).__name__}: {exc}".rstrip(": "))
    return TransportError(target=target, reason=f"unexpected {type(exc).__name__}: {exc}")


def task_failure(
    fault: Any, *, job: str, subject: str, what: str, waited_s: float, target: str
) -> RackflowError:
    """Map the fault of a failed vCenter task to a rackflow error.

    Args:
        fault: ``task.info.error``.
        job: Task moid.
        subject: Host name the task acted on.
        what: What the task did (``enter maintenance mode on esx01``).
        waited_s: Seconds since the task started.
        target: vCenter address.

    Returns:
        DeadlineExceeded (Timedout), PreconditionError (vCenter refused),
        BusyError, AuthError, or JobFailedError (state ``canceled`` or ``error``).
    """
    name, message = _fault_name(fault), _fault_message(fault)
    if name == "Timedout":
        return DeadlineExceeded(operation=what, waited_s=waited_s)
    if name in _REFUSED_FAULTS:
        return PreconditionError(subject=subject, reason=f"vCenter refused to {what}: {message}")
    if name in _BUSY_FAULTS:
        return BusyError(status=500, code=name, message=message, target=target)
    if name in _AUTH_FAULTS:
        return AuthError(status=500, code=name, message=message, target=target)
    state = "canceled" if name == "RequestCanceled" else "error"
    return JobFailedError(job=job, state=state, messages=[f"{name}: {message}"])
