"""The one error tree of rackflow.

Every client raises only these. Each class carries ``retryable``: Prefect
tasks read it in their retry conditions (``tasks.retry.is_retryable``), so a
wrong password is never retried while a dropped connection is.

::

    RackflowError
    +- TransportError            retryable: connect, timeout, reset
    |  +- TlsError               never retried: certificate not trusted
    +- ProtocolError             malformed or missing field
    +- RemoteError(status, code, message, extended_info)
    |  +- AuthError              never retried
    |  +- NotFoundError
    |  +- BusyError              retryable: 409/503, RAC0218 session limit
    |  +- ServerError            retryable for idempotent calls only
    +- JobFailedError(job, state, messages)
    +- DeadlineExceeded(operation, waited_s)
    +- PreconditionError         refused to act: wrong model, state, or input
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RackflowError(Exception):
    """Base of every error rackflow raises on purpose."""

    retryable: bool = False


class TransportError(RackflowError):
    """The peer could not be reached or the connection broke.

    Args:
        target: Address or URL that was being contacted.
        reason: Short description of what went wrong (connect refused, timeout, ...).
    """

    retryable = True

    def __init__(self, *, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"{target}: {reason}")


class TlsError(TransportError):
    """The TLS handshake failed (untrusted or mismatched certificate).

    Not retried: a certificate does not become trusted by asking again.
    """

    retryable = False


class ProtocolError(RackflowError):
    """The peer answered, but not in the shape the protocol promises.

    Args:
        target: Address or URL that answered.
        detail: What was malformed or missing.
    """

    def __init__(self, *, target: str, detail: str) -> None:
        self.target = target
        self.detail = detail
        super().__init__(f"{target}: {detail}")


class RemoteError(RackflowError):
    """The peer answered with an error.

    Args:
        status: HTTP status (or the protocol's equivalent code).
        code: Vendor message id, e.g. ``RAC0218`` or ``Base.1.8.GeneralError``.
        message: Human-readable message from the peer.
        extended_info: The raw extended information list, when the peer sent one.
        target: Address or URL that answered.
        protocol: Whose status it is (``HTTP``, ``IPMI``, ``SNMP``, ``XenAPI``), for the message.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str | None = None,
        message: str = "",
        extended_info: Sequence[dict[str, Any]] = (),
        target: str = "",
        protocol: str = "HTTP",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.extended_info = list(extended_info)
        self.target = target
        self.protocol = protocol
        where = f"{target}: " if target else ""
        what = f" {code}" if code else ""
        super().__init__(f"{where}{protocol} {status}{what}: {message}".rstrip(": "))


class AuthError(RemoteError):
    """Credentials were refused. Never retried: retrying locks accounts."""


class NotFoundError(RemoteError):
    """The resource does not exist on the peer."""


class BusyError(RemoteError):
    """The peer is busy (409/503, iDRAC RAC0218 session limit); try later.

    Args:
        retry_after: Seconds the peer asked us to wait, when it said.
    """

    retryable = True

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)


class ServerError(RemoteError):
    """The peer failed (5xx). Retryable only for idempotent calls.

    Args:
        idempotent: Whether the failed call may safely be repeated.
    """

    def __init__(self, *, idempotent: bool = False, **kwargs: Any) -> None:
        self.idempotent = idempotent
        self.retryable = idempotent
        super().__init__(**kwargs)


class JobFailedError(RackflowError):
    """A job on a device ended in a failure state.

    Args:
        job: Job identifier, e.g. ``JID_123456789012``.
        state: The final state the device reported.
        messages: Messages the device attached to the job.
    """

    def __init__(self, *, job: str, state: str, messages: Sequence[str] = ()) -> None:
        self.job = job
        self.state = state
        self.messages = list(messages)
        detail = "; ".join(self.messages)
        super().__init__(f"job {job} ended {state}" + (f": {detail}" if detail else ""))


class DeadlineExceeded(RackflowError):
    """An operation did not finish before its deadline.

    Args:
        operation: What was being waited for.
        waited_s: How long we waited, in seconds.
    """

    def __init__(self, *, operation: str, waited_s: float) -> None:
        self.operation = operation
        self.waited_s = waited_s
        super().__init__(f"{operation}: not done after {waited_s:.1f} s")


class PreconditionError(RackflowError):
    """rackflow refused to act: wrong input, model or state.

    Args:
        subject: What was checked (a parameter name, a server, a component).
        reason: Why it was refused, naming the bad value.
    """

    def __init__(self, *, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


def is_retryable(exc: BaseException) -> bool:
    """Tell whether an exception is worth retrying.

    Args:
        exc: Any exception.

    Returns:
        The ``retryable`` flag of rackflow errors; False for everything else.
    """
    return bool(getattr(exc, "retryable", False)) if isinstance(exc, RackflowError) else False
