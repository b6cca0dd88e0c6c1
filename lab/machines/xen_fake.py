"""A fake XenAPI (XAPI) pool master for the reboot lab: XML-RPC over HTTP(S).

One peer serves several VMs, each a lab machine (``{vm_uuid: machine_name}``).
It implements the calls the ``XenAPI`` Python package makes for a reboot, with
XAPI's result envelope (``{"Status": "Success", "Value": ...}`` or
``{"Status": "Failure", "ErrorDescription": [code, ...]}``) and its real error
codes::

    session.login_with_password(user, password[, version, originator])
    session.logout(session)
    VM.get_by_uuid  VM.get_power_state  VM.get_record  VM.get_uuid  VM.get_name_label
    VM.clean_shutdown  VM.hard_shutdown  VM.start(vm, paused, force)
    VM.clean_reboot  VM.hard_reboot

Like XAPI, ``clean_shutdown`` returns only once the VM is halted (the
machine's ``soft`` action, source ``xen``), or fails with
``VM_SHUTDOWN_TIMEOUT`` after ``clean_shutdown_timeout_s`` lab seconds. With
``xen-clean`` in the machine's ``ignore_sources`` the guest ignores clean
shutdown/reboot requests (no PV tools), so callers must fall back to
``hard_shutdown`` (``off``). ``start`` is ``on``; ``hard_reboot`` is ``reset``.
Sessions are counted (:attr:`XenApiPeer.open_sessions`) so tests can check
that every login was matched by a logout.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
import xmlrpc.client
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from aiohttp import web

from lab.fleet import check_loopback
from lab.machines.core import MachineCore
from lab.machines.state import Machine, Refused
from lab.tls import LabCertificates

log = logging.getLogger(__name__)

__all__ = ["CLEAN_FAULT", "XenApiPeer", "XenFailure", "vm_uuid_for"]

CLEAN_FAULT = "xen-clean"
"""Put this in ``MachineFaults.ignore_sources`` to make the guest ignore clean requests."""

_VM_UUID_NAMESPACE = uuid.UUID("6f1c3c8e-4a43-4c8e-9a55-3f0d1f7e2b10")
_POLL_S = 0.02  # real seconds between looks at a VM that is shutting down


def vm_uuid_for(machine_name: str) -> str:
    """The stable VM uuid the peer gives a machine by default."""
    return str(uuid.uuid5(_VM_UUID_NAMESPACE, machine_name))


class XenFailure(Exception):
    """A XAPI failure: becomes ``{"Status": "Failure", "ErrorDescription": details}``."""

    def __init__(self, *details: str) -> None:
        self.details = [str(d) for d in details]
        super().__init__(*self.details)


def _power_state(machine: Machine) -> str:
    # The hypervisor's view: a domain exists (Running) whether or not the guest
    # OS is up yet.
    return "Running" if machine.powered else "Halted"


class XenApiPeer:
    """The fake XAPI of the reboot lab (an aiohttp app on the lab loop).

    Args:
        password: The pool's root password.
        username: The XAPI user.
        vms: ``{vm_uuid: machine_name}``; default: every machine, with
            :func:`vm_uuid_for` uuids.
        address: Loopback address to bind.
        port: Port (0: a free one).
        tls: Serve HTTPS with a lab-CA certificate instead of HTTP.
        clean_shutdown_timeout_s: Lab seconds before a clean shutdown that the
            guest ignores fails with ``VM_SHUTDOWN_TIMEOUT``.

    After start: :attr:`url`, :attr:`vm_uuids` ``{machine: vm_uuid}``,
    :attr:`ca_path` (with ``tls``), :attr:`open_sessions`, :attr:`logins`,
    :attr:`logouts`, :attr:`calls` (method names only: never parameters,
    which hold the password).
    """

    def __init__(
        self,
        *,
        password: str,
        username: str = "root",
        vms: dict[str, str] | None = None,
        address: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        clean_shutdown_timeout_s: float = 1200.0,
    ) -> None:
        self._username = username
        self._password = password
        self._vms_arg = vms
        self._address = check_loopback(address)
        self._port = port
        self._tls = tls
        self.clean_shutdown_timeout_s = clean_shutdown_timeout_s
        self._core: MachineCore | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._sessions: dict[str, str] = {}
        self._refs: dict[str, str] = {}  # OpaqueRef -> vm uuid
        self.vms: dict[str, str] = {}
        self.url = ""
        self.ca_path: Path | None = None
        self.logins = 0
        self.logouts = 0
        self.calls: list[str] = []

    def __repr__(self) -> str:
        return f"XenApiPeer(url={self.url!r}, username={self._username!r})"

    @property
    def open_sessions(self) -> int:
        """Sessions logged in and not logged out."""
        return len(self._sessions)

    @property
    def vm_uuids(self) -> dict[str, str]:
        """``{machine_name: vm_uuid}``."""
        return {name: vm for vm, name in self.vms.items()}

    async def __call__(self, core: MachineCore) -> Callable[[], Awaitable[None]]:
        """Bind the XML-RPC endpoint on the lab loop; return the stop coroutine function."""
        self._core = core
        self._closing.clear()
        names = list(core.machines)
        self.vms = dict(self._vms_arg or {vm_uuid_for(n): n for n in names})
        for vm, name in self.vms.items():
            core.machine(name)  # KeyError now rather than at the first call
            self._refs[f"OpaqueRef:{uuid.uuid4()}"] = vm
        app = web.Application(client_max_size=1 << 20)
        app.add_routes([web.post("/{tail:.*}", self._rpc)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        ssl_context = None
        if self._tls:
            certs = LabCertificates(directory=core.state_dir / "tls")
            certs.ensure()
            self.ca_path = certs.ca_path
            ssl_context = certs.server_context(self._address)
        try:
            site = web.TCPSite(self._runner, self._address, self._port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await self._stop()
            raise
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if self._tls else 'http'}://{self._address}:{port}/"
        return self._stop

    async def _stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- XML-RPC plumbing -------------------------------------------------------------

    async def _rpc(self, request: web.Request) -> web.Response:
        try:
            params, method = xmlrpc.client.loads(await request.read())
        except (ExpatError, ValueError) as exc:
            fault = xmlrpc.client.Fault(-32700, f"parse error: {exc}")
            return self._xml(xmlrpc.client.dumps(fault, methodresponse=True))
        self.calls.append(str(method))
        try:
            value = await self._dispatch(str(method), list(params))
            result: dict[str, Any] = {"Status": "Success", "Value": value}
        except XenFailure as failure:
            result = {"Status": "Failure", "ErrorDescription": failure.details}
        except Exception as exc:  # XAPI reports its own bugs as INTERNAL_ERROR
            log.exception("fake XAPI: %s failed", method)
            result = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", repr(exc)]}
        body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        return self._xml(body)

    @staticmethod
    def _xml(body: str) -> web.Response:
        return web.Response(text=body, content_type="text/xml")

    async def _dispatch(self, method: str, params: list[Any]) -> Any:
        if method == "session.login_with_password":
            return self._login(params)
        handlers: dict[str, tuple[int, Callable[..., Awaitable[Any]]]] = {
            "session.logout": (0, self._logout),
            "VM.get_by_uuid": (1, self._get_by_uuid),
            "VM.get_power_state": (1, self._get_power_state),
            "VM.get_record": (1, self._get_record),
            "VM.get_uuid": (1, self._get_uuid),
            "VM.get_name_label": (1, self._get_name_label),
            "VM.clean_shutdown": (1, self._clean_shutdown),
            "VM.hard_shutdown": (1, self._hard_shutdown),
            "VM.start": (3, self._start),
            "VM.clean_reboot": (1, self._clean_reboot),
            "VM.hard_reboot": (1, self._hard_reboot),
        }
        if method not in handlers:
            raise XenFailure("MESSAGE_METHOD_UNKNOWN", method)
        count, handler = handlers[method]
        if len(params) != count + 1:  # every call but login starts with the session
            raise XenFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, count + 1, len(params))
        session = params[0]
        if session not in self._sessions:
            raise XenFailure("SESSION_INVALID", str(session))
        if method == "session.logout":
            return await handler(session)
        return await handler(*params[1:])

    # -- session ----------------------------------------------------------------------

    def _login(self, params: list[Any]) -> str:
        if not 2 <= len(params) <= 4:
            raise XenFailure(
                "MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", 4, len(params)
            )
        user, password = str(params[0]), str(params[1])
        ok_user = hmac.compare_digest(user.encode(), self._username.encode())
        ok_pass = hmac.compare_digest(password.encode(), self._password.encode())
        if not (ok_user and ok_pass):
            raise XenFailure("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
        ref = f"OpaqueRef:{uuid.uuid4()}"
        self._sessions[ref] = user
        self.logins += 1
        return ref

    async def _logout(self, session: str) -> str:
        self._sessions.pop(session, None)
        self.logouts += 1
        return ""

    # -- VM reads ---------------------------------------------------------------------

    def _machine(self, ref: Any) -> Machine:
        vm = self._refs.get(str(ref))
        if vm is None:
            raise XenFailure("HANDLE_INVALID", "VM", str(ref))
        assert self._core is not None
        return self._core.machine(self.vms[vm])

    async def _get_by_uuid(self, vm_uuid: Any) -> str:
        for ref, vm in self._refs.items():
            if vm == str(vm_uuid):
                return ref
        raise XenFailure("UUID_INVALID", "VM", str(vm_uuid))

    async def _get_power_state(self, ref: Any) -> str:
        return _power_state(self._machine(ref))

    async def _get_uuid(self, ref: Any) -> str:
        self._machine(ref)
        return self._refs[str(ref)]

    async def _get_name_label(self, ref: Any) -> str:
        return self._machine(ref).name

    async def _get_record(self, ref: Any) -> dict[str, Any]:
        machine = self._machine(ref)
        return {
            "uuid": self._refs[str(ref)],
            "name_label": machine.name,
            "name_description": "",
            "power_state": _power_state(machine),
            "is_a_template": False,
            "is_control_domain": False,
            "is_a_snapshot": False,
            "other_config": {},
        }

    # -- VM power ---------------------------------------------------------------------

    def _require(self, ref: Any, machine: Machine, expected: str) -> None:
        actual = _power_state(machine)
        if actual != expected:
            # XAPI names power states in lower case in this error.
            raise XenFailure("VM_BAD_POWER_STATE", str(ref), expected.lower(), actual.lower())

    async def _clean_shutdown(self, ref: Any) -> str:
        machine = self._machine(ref)
        self._require(ref, machine, "Running")
        await self._guest_request(ref, machine, "soft")
        deadline = machine.clock.now() + self.clean_shutdown_timeout_s
        while machine.powered:
            if self._closing.is_set():
                raise XenFailure("INTERNAL_ERROR", "xapi is shutting down")
            if machine.clock.now() >= deadline:
                timeout = str(self.clean_shutdown_timeout_s)
                raise XenFailure("VM_SHUTDOWN_TIMEOUT", str(ref), timeout)
            await asyncio.sleep(_POLL_S)
        return ""

    async def _clean_reboot(self, ref: Any) -> str:
        machine = self._machine(ref)
        self._require(ref, machine, "Running")
        await self._guest_request(ref, machine, "reboot")
        return ""

    async def _guest_request(self, ref: Any, machine: Machine, action: str) -> None:
        source = CLEAN_FAULT if CLEAN_FAULT in machine.faults.ignore_sources else "xen"
        try:
            await machine.act(action, source=source)
        except Refused as exc:
            # The guest is booting or already going down: nobody acks the request.
            raise XenFailure("VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT", str(ref)) from exc

    async def _hard_shutdown(self, ref: Any) -> str:
        machine = self._machine(ref)
        self._require(ref, machine, "Running")
        await machine.act("off", source="xen")
        return ""

    async def _hard_reboot(self, ref: Any) -> str:
        machine = self._machine(ref)
        self._require(ref, machine, "Running")
        await machine.act("reset", source="xen")
        return ""

    async def _start(self, ref: Any, start_paused: Any, force: Any) -> str:
        machine = self._machine(ref)
        self._require(ref, machine, "Halted")
        await machine.act("on", source="xen")
        return ""
