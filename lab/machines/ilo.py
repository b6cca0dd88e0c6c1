"""An HPE iLO 5 "personality" for the reboot lab: Redfish over HTTPS, one per machine.

Each machine gets its own iLO, an aiohttp app on the lab loop bound to an
address of its own (the BMC keeps answering while the host is down), with a
certificate from the lab CA (:class:`lab.tls.LabCertificates`). It answers
like an iLO 5 where rackflow cares::

    GET    /redfish/v1/                                  service root (no auth)
    POST   /redfish/v1/SessionService/Sessions/          login -> 201, X-Auth-Token, Location
    DELETE /redfish/v1/SessionService/Sessions/{id}/     logout
    GET    /redfish/v1/Systems/1/                        PowerState, Oem.Hpe.PostState
    POST   /redfish/v1/Systems/1/Actions/ComputerSystem.Reset/   {"ResetType": ...}

HTTP Basic auth works too. Paths are accepted with and without the trailing
slash (iLO links carry one). Reset types act on the shared
:class:`~lab.machines.state.Machine` with source ``ilo``; graceful ones
(GracefulRestart, GracefulShutdown, a power-button press on a running OS) use
source ``ilo-graceful`` while the machine's faults list it in
``ignore_sources``, so the machine ignores them (an OS that does not react to
ACPI), which is what a forced fallback is tested against.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.fleet import check_loopback
from lab.machines.core import MachineCore
from lab.machines.state import Machine, MachineSpec, Phase, Refused
from lab.tls import LabCertificates

log = logging.getLogger(__name__)

__all__ = ["GRACEFUL_FAULT", "IloBmc", "IloPeer", "post_state"]

GRACEFUL_FAULT = "ilo-graceful"
"""Put this in ``MachineFaults.ignore_sources`` to make the OS ignore graceful requests."""

RESET_TYPES = (
    "On",
    "ForceOff",
    "GracefulShutdown",
    "ForceRestart",
    "GracefulRestart",
    "PushPowerButton",
    "Nmi",
)
SESSIONS = "/redfish/v1/SessionService/Sessions/"
SYSTEM = "/redfish/v1/Systems/1/"
RESET = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset/"


def post_state(machine: Machine) -> str:
    """What iLO reports as ``Oem.Hpe.PostState`` for a machine.

    ``FinishedPost`` while the OS runs (also while it shuts down: POST state
    only changes when the server resets), ``InPost`` while powered but not up,
    ``PowerOff`` when unpowered.
    """
    if not machine.powered:
        return "PowerOff"
    if machine.phase in (Phase.UP, Phase.STOPPING):
        return "FinishedPost"
    return "InPost"


def _error(status: int, message_id: str, *, args: list[str] | None = None) -> web.Response:
    # iLO wraps every outcome, success included, in an "error" object whose
    # details are in @Message.ExtendedInfo (HPE's Redfish docs show the shape).
    info: dict[str, Any] = {"MessageId": message_id}
    if args:
        info["MessageArgs"] = args
    body = {
        "error": {
            "code": "iLO.0.10.ExtendedInfo",
            "message": "See @Message.ExtendedInfo for more information.",
            "@Message.ExtendedInfo": [info],
        }
    }
    return web.json_response(body, status=status)


@dataclass
class IloBmc:
    """One machine's iLO: credentials, sessions and what it was asked to do.

    Attributes:
        machine: The machine it manages.
        address: Its own loopback address.
        port: Its HTTPS port (known once bound).
        sessions: Open sessions, token -> session id.
        logins: Sessions created so far.
        failed_logins: Logins refused (wrong user or password).
        resets: ResetType values accepted, in order.
    """

    machine: Machine
    address: str
    username: str
    password: str
    port: int = 0
    sessions: dict[str, str] = field(default_factory=dict)
    logins: int = 0
    failed_logins: int = 0
    resets: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    # -- auth -------------------------------------------------------------------------

    def _valid(self, username: str, password: str) -> bool:
        ok_user = hmac.compare_digest(username.encode(), self.username.encode())
        ok_pass = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_pass

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            return token in self.sessions
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return self._valid(user, password)

    # -- routes -----------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application of this iLO."""

        @web.middleware
        async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            public = request.path.rstrip("/") == "/redfish/v1" or (
                request.method == "POST" and request.path.rstrip("/") == SESSIONS.rstrip("/")
            )
            if not public and not self._authorized(request):
                return _error(401, "Base.1.4.NoValidSession")
            return await handler(request)

        app = web.Application(middlewares=[auth])
        app.add_routes(
            [
                web.get("/redfish/v1{s:/?}", self._root),
                web.post("/redfish/v1/SessionService/Sessions{s:/?}", self._login),
                web.get("/redfish/v1/SessionService/Sessions{s:/?}", self._sessions),
                web.delete("/redfish/v1/SessionService/Sessions/{id}{s:/?}", self._logout),
                web.get("/redfish/v1/Systems{s:/?}", self._systems),
                web.get("/redfish/v1/Systems/1{s:/?}", self._system),
                web.post("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset{s:/?}", self._reset),
                web.route("*", "/{tail:.*}", self._missing),
            ]
        )
        return app

    async def _missing(self, request: web.Request) -> web.Response:
        return _error(404, "Base.1.4.ResourceMissingAtURI", args=[request.path])

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.id": "/redfish/v1/",
                "@odata.type": "#ServiceRoot.v1_5_1.ServiceRoot",
                "Id": "RootService",
                "Name": "HPE RESTful Root Service",
                "Product": "ProLiant DL360 Gen10",
                "RedfishVersion": "1.6.0",
                "Vendor": "HPE",
                "Oem": {
                    "Hpe": {
                        "Manager": [
                            {
                                "ManagerType": "iLO 5",
                                "ManagerFirmwareVersion": "2.72",
                                "HostName": f"ilo-{self.machine.name}",
                            }
                        ]
                    }
                },
                "Systems": {"@odata.id": "/redfish/v1/Systems/"},
                "SessionService": {"@odata.id": "/redfish/v1/SessionService/"},
                "Links": {"Sessions": {"@odata.id": SESSIONS}},
            }
        )

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Base.1.4.MalformedJSON")
        user = body.get("UserName") if isinstance(body, dict) else None
        password = body.get("Password") if isinstance(body, dict) else None
        if not isinstance(user, str) or not isinstance(password, str):
            return _error(400, "Base.1.4.PropertyMissing", args=["UserName"])
        if not self._valid(user, password):
            self.failed_logins += 1
            return _error(401, "Base.1.4.NoValidSession")
        token = secrets.token_hex(16)
        session_id = f"{user.lower()}{secrets.token_hex(8)}"
        self.sessions[token] = session_id
        self.logins += 1
        path = f"{SESSIONS}{session_id}/"
        location = f"https://{self.address}:{self.port}{path}"
        body = {"@odata.id": path, "Id": session_id, "UserName": user}
        return web.json_response(
            body, status=201, headers={"X-Auth-Token": token, "Location": location}
        )

    async def _sessions(self, request: web.Request) -> web.Response:
        members = [{"@odata.id": f"{SESSIONS}{sid}/"} for sid in self.sessions.values()]
        return web.json_response(
            {"@odata.id": SESSIONS, "Members": members, "Members@odata.count": len(members)}
        )

    async def _logout(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        for token, sid in list(self.sessions.items()):
            if sid == session_id:
                del self.sessions[token]
                return _error(200, "Base.1.4.Success")
        return _error(404, "Base.1.4.ResourceMissingAtURI", args=[request.path])

    async def _systems(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.id": "/redfish/v1/Systems/",
                "Members": [{"@odata.id": SYSTEM}],
                "Members@odata.count": 1,
            }
        )

    async def _system(self, request: web.Request) -> web.Response:
        machine = self.machine
        return web.json_response(
            {
                "@odata.id": SYSTEM,
                "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
                "Id": "1",
                "Manufacturer": "HPE",
                "Model": "ProLiant DL360 Gen10",
                "HostName": machine.name,
                "PowerState": "On" if machine.powered else "Off",
                "Status": {"State": "Enabled", "Health": "OK"},
                "Oem": {"Hpe": {"PostState": post_state(machine)}},
                "Actions": {
                    "#ComputerSystem.Reset": {
                        "target": RESET,
                        "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
                    }
                },
            }
        )

    async def _reset(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Base.1.4.MalformedJSON")
        reset_type = body.get("ResetType") if isinstance(body, dict) else None
        if reset_type is None:
            return _error(400, "Base.1.4.ActionParameterMissing", args=["ResetType"])
        if reset_type not in RESET_TYPES:
            return _error(400, "Base.1.4.ActionParameterNotSupported", args=[str(reset_type)])
        plan = self._plan(str(reset_type))
        if plan is None:
            # e.g. On while on, ForceRestart while off.
            return _error(400, "iLO.2.14.InvalidOperationForSystemState")
        action, source = plan
        try:
            await self.machine.act(action, source=source)
        except Refused:
            # A graceful request reaches no running OS (it is booting or already
            # shutting down): iLO accepts it and nothing happens.
            log.info("iLO %s: %s had no OS to act on", self.machine.name, reset_type)
        self.resets.append(str(reset_type))
        return _error(200, "Base.1.4.Success")

    def _plan(self, reset_type: str) -> tuple[str, str] | None:
        machine = self.machine
        graceful = GRACEFUL_FAULT if GRACEFUL_FAULT in machine.faults.ignore_sources else "ilo"
        if reset_type == "On":
            return None if machine.powered else ("on", "ilo")
        if reset_type == "PushPowerButton":
            if not machine.powered:
                return ("on", "ilo")
            # A press reaches the OS as an ACPI event; during POST it powers off.
            return ("soft", graceful) if machine.phase is Phase.UP else ("off", "ilo")
        if not machine.powered:
            return None
        return {
            "ForceOff": ("off", "ilo"),
            "ForceRestart": ("reset", "ilo"),
            "GracefulShutdown": ("soft", graceful),
            "GracefulRestart": ("reboot", graceful),
            # Linux with kernel.unknown_nmi_panic panics on an NMI and restarts.
            "Nmi": ("reset", "ilo"),
        }[reset_type]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _default_address(spec: MachineSpec) -> str:
    # The host part of the machine's address, in 127.79.0.0/16 (machines live
    # in 127.78.0.0/16): the iLO has an address of its own, as on a real BMC LAN.
    packed = ipaddress.IPv4Address(spec.address).packed
    return str(ipaddress.IPv4Address(bytes([127, 79, packed[2], packed[3]])))


class IloPeer:
    """Starts an iLO for every machine (or the named ones) of the reboot lab.

    Args:
        password: The iLO password (every iLO of this peer).
        username: The iLO user.
        machines: Machine names to give an iLO (default: all).
        address_for: Picks an iLO's address from the machine's spec (default:
            same host part in 127.79.0.0/16).
        port: HTTPS port (0: a free one per iLO).

    After start: :attr:`endpoints` ``{machine: (address, port)}``,
    :attr:`ca_path` (the lab CA that signed the certificates), :meth:`bmc`.
    """

    def __init__(
        self,
        *,
        password: str,
        username: str = "Administrator",
        machines: list[str] | None = None,
        address_for: Callable[[MachineSpec], str] | None = None,
        port: int = 0,
    ) -> None:
        self._username = username
        self._password = password
        self._names = machines
        self._address_for = address_for or _default_address
        self._port = port
        self.bmcs: dict[str, IloBmc] = {}
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.ca_path: Path | None = None

    def __repr__(self) -> str:
        return f"IloPeer(username={self._username!r}, endpoints={self.endpoints!r})"

    def bmc(self, name: str) -> IloBmc:
        """The iLO of one machine (read its counters from tests)."""
        return self.bmcs[name]

    async def __call__(self, core: MachineCore) -> Callable[[], Awaitable[None]]:
        """Bind every iLO on the lab loop; return the stop coroutine function."""
        certs = LabCertificates(directory=core.state_dir / "tls")
        certs.ensure()
        self.ca_path = certs.ca_path
        names = self._names if self._names is not None else list(core.machines)
        try:
            for name in names:
                machine = core.machine(name)
                address = check_loopback(self._address_for(machine.spec))
                bmc = IloBmc(
                    machine=machine,
                    address=address,
                    username=self._username,
                    password=self._password,
                )
                bmc.runner = web.AppRunner(bmc.app(), access_log=None, shutdown_timeout=0.5)
                await bmc.runner.setup()
                self.bmcs[name] = bmc
                site = web.TCPSite(
                    bmc.runner, address, self._port, ssl_context=certs.server_context(address)
                )
                await site.start()
                bmc.port = bmc.runner.addresses[0][1]
                self.endpoints[name] = (address, bmc.port)
        except BaseException:
            await self._stop()
            raise
        return self._stop

    async def _stop(self) -> None:
        for bmc in self.bmcs.values():
            if bmc.runner is not None:
                runner, bmc.runner = bmc.runner, None
                await runner.cleanup()
