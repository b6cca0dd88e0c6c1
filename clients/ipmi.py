"""A small synchronous IPMI-over-LAN (RMCP+) client for chassis power, on pyghmi.

pyghmi does the RMCP+ session (RAKP authentication, integrity, AES) on its
own I/O thread and blocks the caller; :class:`IpmiClient` wraps it with
rackflow's error tree and always logs the session out. Async code calls it
through ``asyncio.to_thread``.

Power goes through the standard chassis commands (Get Chassis Status
0x00/0x01, Chassis Control 0x00/0x02) rather than pyghmi's ``set_power``:
those have no ``cycle`` and run OEM detection first.

pyghmi quirks handled here:

- Cipher suite: pyghmi cannot be told one. It offers suite 17 (RAKP-HMAC-
  SHA256, HMAC-SHA256-128, AES-CBC-128) and falls back to suite 3 (SHA-1,
  HMAC-SHA1-96, AES-CBC-128) when the BMC refuses. So ``cipher_suite`` is 3
  (accept 3 or better) or 17 (refuse a session that fell back to 3); the
  suite agreed is checked after login.
- pyghmi shares one session per (BMC, user, password) across the whole
  process, so one caller's logout would end another's session: sessions to
  one BMC are serialized per process.
- pyghmi 1.6 never forgets a session it logged in when user and password
  are ``str`` (it files it under ``str`` keys and deletes ``bytes`` keys);
  the next session with the same credentials then fails with a TypeError.
  Passing ``bytes`` avoids that.
- pyghmi retransmits an unanswered request after 0.5-1 s, and a BMC carries
  out a retransmitted chassis control again (a reset twice). Chassis control
  is sent with the client's ``timeout`` as the first retransmit delay.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from pyghmi.exceptions import IpmiException
from pyghmi.ipmi import command as ipmi_command

from clients.errors import (
    AuthError,
    BusyError,
    PreconditionError,
    ProtocolError,
    RackflowError,
    RemoteError,
    ServerError,
    TransportError,
)

__all__ = [
    "CIPHER_SUITES",
    "POWER_ACTIONS",
    "PRIVILEGES",
    "IpmiClient",
    "PowerChange",
    "Privilege",
]

logger = logging.getLogger("rackflow.clients.ipmi")

Privilege = Literal["administrator", "operator", "user"]
PRIVILEGES: dict[str, int] = {"user": 2, "operator": 3, "administrator": 4}
CIPHER_SUITES = (3, 17)
# Chassis Control (IPMI 2.0 table 28-4) data byte per action.
_CONTROL = {"off": 0, "on": 1, "cycle": 2, "reset": 3, "soft": 5}
POWER_ACTIONS = tuple(_CONTROL)
_NEEDS_POWER = ("cycle", "reset")  # no effect on a machine that is off
_BUSY_CC = {0xC0}  # node busy
_SERVER_CC = {0xC3, 0xCE, 0xFF}  # timeout, cannot respond, unspecified
_PING_RESEND_S = 0.3
_LOCK_WAIT_S = 120.0
_MAX_CONTROL_WAIT_S = 10.0  # pyghmi gives up on a request after ~20 s

# RMCP presence ping: RMCP 1.0, no ack, class ASF; IANA 4542, type 0x80, tag, 0, len 0.
_PING = bytes([0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80])
_PONG = 0x40

_locks_guard = threading.Lock()
_endpoint_locks: dict[tuple[str, int], threading.Lock] = {}


def _endpoint_lock(address: str, port: int) -> threading.Lock:
    # Process-wide on purpose: pyghmi's session sharing is process-wide too.
    with _locks_guard:
        return _endpoint_locks.setdefault((address, port), threading.Lock())


@dataclass(frozen=True)
class PowerChange:
    """What :meth:`IpmiClient.power` did.

    Attributes:
        action: The action asked for.
        before: Power state read first (``on``/``off``).
        sent: Whether a chassis control was sent (False: already in that state).
        detail: One line for logs.
    """

    action: str
    before: str
    sent: bool
    detail: str


class IpmiClient:
    """Chassis power of one BMC over IPMI 2.0; use as ``with IpmiClient(...) as bmc:``.

    Construction does no I/O. Entering pings the BMC (RMCP presence ping,
    bounded by ``timeout``), logs in and checks the session; leaving logs out.

    Args:
        address: BMC address or host name.
        port: BMC UDP port.
        user: BMC user name.
        password: BMC password. Never logged, never put in an error or repr.
        privilege: Session privilege to ask for; power control needs ``operator``.
        cipher_suite: 3 or 17 (see the module docstring).
        timeout: Seconds to wait for the BMC to answer the presence ping, and
            before a chassis control is retransmitted.

    Raises:
        PreconditionError: Unknown privilege, unsupported cipher suite, bad timeout.
    """

    def __init__(
        self,
        *,
        address: str,
        port: int = 623,
        user: str,
        password: str,
        privilege: Privilege = "administrator",
        cipher_suite: int = 3,
        timeout: float = 5.0,
    ) -> None:
        if privilege not in PRIVILEGES:
            raise PreconditionError(
                subject="privilege", reason=f"{privilege!r} is not one of {sorted(PRIVILEGES)}"
            )
        if cipher_suite not in CIPHER_SUITES:
            raise PreconditionError(
                subject="cipher_suite",
                reason=f"{cipher_suite} unsupported: pyghmi negotiates suite 17 or 3 only",
            )
        if not timeout > 0:
            raise PreconditionError(subject="timeout", reason=f"must be > 0, got {timeout}")
        self.address = address
        self.port = port
        self.user = user
        self.privilege = privilege
        self.cipher_suite = cipher_suite
        self.timeout = timeout
        self._password = password
        self._cmd: Any = None
        self._lock: threading.Lock | None = None
        self.suite_in_use: int | None = None

    @property
    def target(self) -> str:
        """``address:port`` for messages."""
        return f"{self.address}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"IpmiClient(target={self.target!r}, user={self.user!r}, privilege={self.privilege!r})"
        )

    def __enter__(self) -> IpmiClient:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Reach the BMC, log in, check the session (cipher suite, privilege).

        Raises:
            TransportError: No answer within ``timeout`` or nothing listening.
            AuthError: User, password or privilege refused.
            BusyError: The BMC has no free session (or another session of this
                process to it did not end in time).
            PreconditionError: Already open, or the BMC only agreed to a weaker
                cipher suite / a lower privilege than asked.
        """
        if self._lock is not None:
            raise PreconditionError(subject=self.target, reason="IPMI session already open")
        lock = _endpoint_lock(self.address, self.port)
        if not lock.acquire(timeout=_LOCK_WAIT_S):
            reason = "another session of this process to the BMC is still open"
            raise BusyError(
                protocol="IPMI", status=0, code="LOCAL", message=reason, target=self.target
            )
        try:
            self._presence_ping()
            self._cmd = self._login()
            self._check_session()
        except BaseException:
            self._logout()
            lock.release()
            raise
        self._lock = lock
        logger.debug(
            "IPMI session to %s as %s, suite %s", self.target, self.user, self.suite_in_use
        )

    def close(self) -> None:
        """Log the session out (errors are logged, not raised). Idempotent."""
        self._logout()
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def power_status(self) -> str:
        """Read the chassis power state.

        Returns:
            ``"on"`` or ``"off"``.

        Raises:
            TransportError: The BMC stopped answering.
            RemoteError: The BMC refused (completion code in ``status``).
            ProtocolError: The answer was too short.
        """
        rsp = self._call(lambda cmd: cmd.xraw_command(netfn=0x00, command=0x01), idempotent=True)
        data = bytes(rsp.get("data") or b"")
        if not data:
            raise ProtocolError(target=self.target, detail="empty Get Chassis Status answer")
        return "on" if data[0] & 0x01 else "off"

    def power(self, action: str) -> PowerChange:
        """Carry out a power action, check-then-act.

        ``on`` when already on, ``off``/``soft`` when already off send nothing.
        ``cycle``/``reset`` of a machine that is off are refused: they would
        not power it on, and it may be off on purpose.

        Args:
            action: ``on``, ``off``, ``cycle``, ``reset`` or ``soft`` (ACPI soft off).

        Returns:
            What was found and done.

        Raises:
            PreconditionError: Unknown action, or cycle/reset while off.
            TransportError: The BMC stopped answering (a chassis control may
                then have been carried out or not).
            RemoteError: The BMC refused, e.g. completion code 0xD4
                (insufficient privilege).
        """
        if action not in _CONTROL:
            raise PreconditionError(
                subject="action", reason=f"{action!r} is not one of {list(POWER_ACTIONS)}"
            )
        before = self.power_status()
        if (action == "on" and before == "on") or (action in ("off", "soft") and before == "off"):
            return PowerChange(action, before, False, f"power already {before}: nothing sent")
        if action in _NEEDS_POWER and before == "off":
            raise PreconditionError(
                subject=self.target,
                reason=f"power is off: {action} would not turn it on (use 'on')",
            )
        wait = min(self.timeout, _MAX_CONTROL_WAIT_S)
        self._call(
            lambda cmd: cmd.xraw_command(
                netfn=0x00, command=0x02, data=[_CONTROL[action]], timeout=wait
            ),
            idempotent=False,
        )
        logger.info("IPMI %s: chassis power %s sent (was %s)", self.target, action, before)
        return PowerChange(action, before, True, f"chassis power {action} sent (was {before})")

    # -- internals --------------------------------------------------------

    def _presence_ping(self) -> None:
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                self.address, self.port, type=socket.SOCK_DGRAM
            )[0]
        except OSError as exc:
            raise TransportError(target=self.target, reason=f"cannot resolve: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                # Connected: an ICMP "port unreachable" comes back as ECONNREFUSED.
                sock.connect(sockaddr)
                for tag in range(1, 256):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    sock.send(_PING + bytes([tag, 0, 0]))
                    sock.settimeout(min(_PING_RESEND_S, remaining))
                    try:
                        data = sock.recv(512)
                    except TimeoutError:
                        continue
                    if len(data) > 8 and data[8] == _PONG:
                        return
            except ConnectionRefusedError as exc:
                raise TransportError(
                    target=self.target, reason="connection refused: no BMC listens on this port"
                ) from exc
            except OSError as exc:
                raise TransportError(target=self.target, reason=f"unreachable: {exc}") from exc
        raise TransportError(
            target=self.target, reason=f"no answer to RMCP presence ping within {self.timeout:g} s"
        )

    def _login(self) -> Any:
        try:
            return ipmi_command.Command(
                bmc=self.address,
                userid=self.user.encode(),
                password=self._password.encode(),
                port=self.port,
                privlevel=PRIVILEGES[self.privilege],
            )
        except IpmiException as exc:
            raise self._login_error(exc) from exc
        except OSError as exc:
            raise TransportError(target=self.target, reason=f"login failed: {exc}") from exc

    def _login_error(self, exc: IpmiException) -> RackflowError:
        text = str(exc.args[0]) if exc.args and exc.args[0] else ""
        lowered = text.lower()
        if "insufficient resources" in lowered:  # session table full (maybe "at this role")
            return BusyError(
                protocol="IPMI", status=0, code="RMCP", target=self.target, message=text
            )
        refused = None
        if "password" in lowered or "unauthorized name" in lowered:
            refused = f"the credentials of user {self.user!r}"
        elif "privilege" in lowered or "privelege" in lowered or "role" in lowered:
            refused = f"{self.privilege} privilege for user {self.user!r}"
        if refused:
            message = f"BMC refused {refused} ({text})"
            return AuthError(
                protocol="IPMI", status=0, code="RAKP", target=self.target, message=message
            )
        if "cipher suite" in lowered:
            return PreconditionError(
                subject=self.target,
                reason=f"no cipher suite in common (pyghmi offers 17, 3): {text}",
            )
        if not text or "timeout" in lowered or "session" in lowered:
            return TransportError(
                target=self.target, reason=f"login got no answer ({text or 'timeout'})"
            )
        return RemoteError(
            protocol="IPMI", status=exc.ipmicode or 0, code="RMCP", target=self.target, message=text
        )

    def _check_session(self) -> None:
        session = self._cmd.ipmi_session
        if getattr(session, "ipmiversion", None) != 2.0:
            raise PreconditionError(
                subject=self.target, reason="BMC only speaks IPMI 1.5 (no RMCP+): refused"
            )
        self.suite_in_use = 17 if session.attemptedhash == 256 else 3
        if self.cipher_suite == 17 and self.suite_in_use != 17:
            raise PreconditionError(
                subject=self.target,
                reason="cipher suite 17 (SHA-256) required; the BMC only agreed to suite 3 (SHA-1)",
            )
        granted = session.privlevel
        if granted != PRIVILEGES[self.privilege]:
            # pyghmi silently drops from administrator to operator on some BMCs.
            names = {v: k for k, v in PRIVILEGES.items()}
            raise PreconditionError(
                subject=self.target,
                reason=f"BMC granted {names.get(granted, granted)} privilege, "
                f"{self.privilege} was asked for",
            )

    def _call(self, send: Any, *, idempotent: bool) -> dict[str, Any]:
        if self._cmd is None:
            raise PreconditionError(subject=self.target, reason="IPMI session not open")
        try:
            rsp: dict[str, Any] = send(self._cmd)
        except IpmiException as exc:
            raise self._command_error(exc, idempotent=idempotent) from exc
        except OSError as exc:
            raise TransportError(target=self.target, reason=str(exc)) from exc
        return rsp

    def _command_error(self, exc: IpmiException, *, idempotent: bool) -> RackflowError:
        text = str(exc.args[0]) if exc.args and exc.args[0] else "no answer"
        cc = int(exc.ipmicode or 0)
        if cc in (0, 0xFFFF):  # pyghmi's own "no answer" / "session gone"
            return TransportError(target=self.target, reason=text)
        fields: dict[str, Any] = {"status": cc, "code": f"IPMI 0x{cc:02X}", "message": text}
        fields["target"] = self.target
        if cc in _BUSY_CC:
            return BusyError(protocol="IPMI", **fields)
        if cc in _SERVER_CC:
            return ServerError(protocol="IPMI", idempotent=idempotent, **fields)
        return RemoteError(protocol="IPMI", **fields)

    def _logout(self) -> None:
        cmd, self._cmd = self._cmd, None
        if cmd is None:
            return
        try:
            cmd.ipmi_session.logout()
        except Exception as exc:  # noqa: BLE001 - a failed logout must not hide the real outcome
            logger.warning("IPMI logout from %s failed: %s", self.target, exc)
