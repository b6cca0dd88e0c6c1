"""Switched PDU outlets over SNMP (APC PowerNet, ServerTech Sentry3) with pysnmp 7.

.. code-block:: python

    async with PduClient(host="10.0.0.5", auth=V2cAuth(community=...), model="apc") as pdu:
        await pdu.outlet_state("4")                   # "on" | "off"
        await pdu.reboot("4")                         # one SET of "reboot"
        await pdu.reboot("4", mode="off_on", off_delay_s=5)

A PDU model is a :class:`clients.pdu.PduProfile` (re-exported here): where
the outlet control and status columns are, how an outlet is written (APC
``4``; Sentry3 ``AA4`` = tower A, infeed A, outlet 4) and which integers mean
on / off / reboot. Outlets, actions and modes are checked before any packet
is sent.

SNMP failures map to the project's errors:

* no answer -> :class:`TransportError`. An agent silently drops a request
  with a wrong v2c community (or an undecryptable v3 one), so that is what a
  wrong community looks like; the message says so.
* v3 user unknown / wrong digest / security level refused, and error-status
  noAccess / notWritable / authorizationError (e.g. a read-only community
  used for a SET) -> :class:`AuthError`.
* no such outlet (noSuchInstance, or notWritable on an outlet that does not
  read either) -> :class:`NotFoundError`.
* other error-statuses -> :class:`RemoteError` (the SNMP error-status code
  and name).

Communities and keys never appear in logs, errors or reprs; the credential
types (:class:`V2cAuth`, :class:`V3Auth`) live in :mod:`clients.snmp_auth`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch import asyncio as hlapi
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from clients.closing import AsyncClosing
from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RemoteError,
    TransportError,
)
from clients.pdu import (
    APC,
    PROFILES,
    SENTRY3,
    Outlet,
    OutletAction,
    OutletState,
    PduProfile,
    profile_for,
)
from clients.snmp_auth import (
    AUTH_PROTOCOLS,
    PRIV_PROTOCOLS,
    SnmpAuth,
    V2cAuth,
    V3Auth,
    auth_data,
    check_auth,
)

__all__ = [
    "APC",
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "PROFILES",
    "SENTRY3",
    "OutletAction",
    "OutletState",
    "PduClient",
    "PduProfile",
    "RebootMode",
    "SnmpAuth",
    "V2cAuth",
    "V3Auth",
    "profile_for",
]

logger = logging.getLogger("rackflow.clients.snmp")

RebootMode = Literal["single", "off_on"]

# pysnmp error indications that mean "your credentials were refused".
_AUTH_INDICATIONS = frozenset(
    {"UnknownUserName", "WrongDigest", "UnsupportedSecurityLevel", "AuthenticationFailure"}
)
_AUTH_STATUSES = frozenset({"noAccess", "notWritable", "authorizationError"})


class PduClient(AsyncClosing):
    """Outlet control of one switched PDU over SNMP (an async context manager).

    Construction checks its arguments and does no I/O; the SNMP engine and
    its UDP socket are created on first use and closed on exit.

    Args:
        host: The PDU's address or name.
        port: UDP port of its SNMP agent.
        auth: :class:`V2cAuth` (community) or :class:`V3Auth` (USM user).
        model: A profile or its name (``apc``, ``sentry3``).
        timeout: Seconds to wait for each answer.
        retries: Re-sends after a timeout (0: one try).
        sleep: Async sleep (injectable for tests), used between off and on.

    Raises:
        PreconditionError: Unknown model or protocol, empty credentials, bad limits.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 161,
        auth: SnmpAuth,
        model: str | PduProfile,
        timeout: float = 2.0,
        retries: int = 1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.profile = model if isinstance(model, PduProfile) else profile_for(model)
        if timeout <= 0 or retries < 0:
            raise PreconditionError(
                subject="snmp",
                reason=f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})",
            )
        check_auth(auth)
        self.host = host
        self.port = port
        self._auth = auth
        self._timeout = timeout
        self._retries = retries
        self._sleep = sleep
        self._engine: Any = None
        self._target: Any = None
        self._auth_data: Any = None

    @property
    def target(self) -> str:
        """Where requests go, for messages (``udp:host:port``)."""
        return f"udp:{self.host}:{self.port}"

    def __repr__(self) -> str:
        version = "2c" if isinstance(self._auth, V2cAuth) else "3"
        return f"PduClient(target={self.target!r}, model={self.profile.name!r}, snmp=v{version})"

    async def aclose(self) -> None:
        """Close the SNMP engine's dispatcher (its UDP socket). Idempotent."""
        engine, self._engine, self._target, self._auth_data = self._engine, None, None, None
        if engine is not None:
            engine.close_dispatcher()

    # -- outlets ----------------------------------------------------------------
    async def outlet_state(self, outlet: Outlet) -> OutletState:
        """Read whether an outlet is powered.

        Args:
            outlet: The outlet as the model writes it (``4``, ``AA4``).

        Returns:
            ``"on"`` or ``"off"``.

        Raises:
            PreconditionError: Not an outlet of this model (nothing was sent).
            BusyError: The outlet is switching (retryable).
            NotFoundError: The PDU has no such outlet.
            TransportError / AuthError / RemoteError / ProtocolError: See the module docstring.
        """
        oid = self.profile.status_oid(outlet)
        value = await self._request("GET", oid)
        try:
            number = int(value)
        except (TypeError, ValueError):
            shown = value.prettyPrint() if hasattr(value, "prettyPrint") else repr(value)
            raise ProtocolError(
                target=self.target, detail=f"outlet {outlet}: status {shown!r} is not an integer"
            ) from None
        state = self.profile.states.get(number)
        if state is not None:
            return state
        if number in self.profile.pending:
            name = self.profile.pending[number]
            raise BusyError(
                protocol="SNMP",
                status=number,
                code=name,
                message=f"outlet {outlet} is {name}",
                target=self.target,
            )
        raise ProtocolError(target=self.target, detail=f"outlet {outlet}: unknown status {number}")

    async def set_outlet(self, outlet: Outlet, action: OutletAction) -> None:
        """Switch an outlet on or off, or reboot it (one SET).

        Args:
            outlet: The outlet as the model writes it.
            action: ``on``, ``off`` or ``reboot``.

        Raises:
            PreconditionError: Bad outlet or action (nothing was sent).
            AuthError: The credentials may not write (read-only community).
            NotFoundError: The PDU has no such outlet.
            TransportError / RemoteError: See the module docstring.
        """
        oid = self.profile.control_oid(outlet)
        value = self.profile.commands.get(action)
        if value is None:
            raise PreconditionError(
                subject="action",
                reason=f"{action!r} is not one of {', '.join(self.profile.commands)}",
            )
        try:
            await self._request("SET", oid, hlapi.Integer32(value))
        except AuthError as exc:
            if exc.code == "notWritable":
                # Agents answer notWritable for outlets they do not have, too:
                # tell "no such outlet" from "may not write" by reading it.
                await self._request("GET", self.profile.status_oid(outlet))
            raise
        logger.info("%s: outlet %s %s (SET %s = %d)", self.target, outlet, action, oid, value)

    async def reboot(
        self, outlet: Outlet, *, mode: RebootMode = "single", off_delay_s: float = 5.0
    ) -> None:
        """Power-cycle an outlet.

        Args:
            outlet: The outlet as the model writes it.
            mode: ``single``: one SET of the PDU's own reboot command;
                ``off_on``: SET off, wait ``off_delay_s``, SET on (for PDUs
                whose reboot delay is too short for the machine's PSU).
            off_delay_s: Seconds the outlet stays off in ``off_on`` mode.

        Raises:
            PreconditionError: Bad outlet, mode or delay (nothing was sent).
            AuthError / TransportError / RemoteError: See :meth:`set_outlet`.
        """
        self.profile.parse_outlet(outlet)
        if mode not in ("single", "off_on"):
            raise PreconditionError(subject="mode", reason=f"{mode!r} is not single or off_on")
        if off_delay_s < 0:
            raise PreconditionError(subject="off_delay_s", reason=f"{off_delay_s} is negative")
        if mode == "single":
            await self.set_outlet(outlet, "reboot")
            return
        await self.set_outlet(outlet, "off")
        await self._sleep(off_delay_s)
        await self.set_outlet(outlet, "on")

    # -- wire -------------------------------------------------------------------
    async def _session(self) -> tuple[Any, Any, Any]:
        if self._engine is None:
            self._engine = hlapi.SnmpEngine()
            # One auth object per client: pysnmp adds an engine table row per object.
            self._auth_data = auth_data(self._auth)
        if self._target is None:
            try:
                self._target = await hlapi.UdpTransportTarget.create(
                    (self.host, self.port), timeout=self._timeout, retries=self._retries
                )
            except PySnmpError as exc:
                raise TransportError(target=self.target, reason=f"cannot resolve: {exc}") from exc
        return self._engine, self._auth_data, self._target

    async def _request(self, op: Literal["GET", "SET"], oid: str, *value: Any) -> Any:
        engine, auth, target = await self._session()
        command = hlapi.get_cmd if op == "GET" else hlapi.set_cmd
        var_bind = hlapi.ObjectType(hlapi.ObjectIdentity(oid), *value)
        try:
            indication, status, _index, binds = await command(
                engine, auth, target, hlapi.ContextData(), var_bind, lookupMib=False
            )
        except PySnmpError as exc:
            raise TransportError(target=self.target, reason=f"{op} {oid}: {exc}") from exc
        self._raise_for(op, oid, indication, status)
        if not binds:
            raise ProtocolError(target=self.target, detail=f"{op} {oid}: empty answer")
        answer = binds[0][1]
        if isinstance(answer, NoSuchObject | NoSuchInstance | EndOfMibView):
            raise NotFoundError(
                protocol="SNMP",
                status=0,
                code=type(answer).__name__,
                message=f"{oid}: no such outlet on this {self.profile.name} PDU",
                target=self.target,
            )
        return answer

    def _raise_for(self, op: str, oid: str, indication: Any, status: Any) -> None:
        if indication is not None:
            name = type(indication).__name__
            if name == "RequestTimedOut":
                hint = "wrong community" if isinstance(self._auth, V2cAuth) else "wrong privacy key"
                tries = self._retries + 1
                raise TransportError(
                    target=self.target,
                    reason=(
                        f"{op} {oid}: no answer ({hint} or unreachable) "
                        f"after {tries} tr{'y' if tries == 1 else 'ies'} of {self._timeout:g} s"
                    ),
                )
            if name in _AUTH_INDICATIONS:
                raise AuthError(
                    protocol="SNMP",
                    status=0,
                    code=name,
                    message=f"{op} refused: {indication}",
                    target=self.target,
                )
            raise TransportError(target=self.target, reason=f"{op} {oid}: {indication}")
        code = int(status)
        if code:
            name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(code)
            error = AuthError if name in _AUTH_STATUSES else RemoteError
            raise error(
                status=code,
                code=name,
                message=f"{op} {oid} refused by the agent",
                target=self.target,
            )
