"""The reboot lab's loop-side core: machines, their ping listeners, the control API.

Out-of-process peers (ipmi_sim's chassis-control script, snmpd's
pass_persist script, the ``reboot`` tool on an sshd host) reach the shared
machine state through the control API, a small HTTP server on 127.0.0.1::

    GET  /machines                      -> [snapshot, ...]
    GET  /machines/{name}               -> snapshot (power, phase, answering, cycles, events)
    POST /machines/{name}/action        {"action": "reboot|soft|off|on|reset|cycle",
                                         "source": "ssh|ipmi|pdu|ilo|xen"} -> snapshot
                                        (409 {"error": ...} when refused)

:mod:`lab.machines.ctl` is the stdlib client those scripts use. In-process
peers (iLO, XenAPI, Bugzilla fakes) are aiohttp apps on the same loop and call
:meth:`Machine.act` directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.clock import LabClock
from lab.fleet import check_loopback
from lab.machines.state import Machine, MachineSpec, Refused

log = logging.getLogger(__name__)

__all__ = ["MachineCore", "Peer"]

Peer = Callable[["MachineCore"], Awaitable[Callable[[], Awaitable[None]]]]
"""A peer starter: ``await peer(core)`` starts it and returns its async stop function."""


class _PingListener:
    """A TCP listener on the machine's address that exists only while it is up."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.port = machine.spec.ping_port
        self._server: asyncio.Server | None = None

    async def sync(self, machine: Machine) -> None:
        if machine.answering and self._server is None:
            self._server = await asyncio.start_server(
                _answer, machine.spec.address, self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]
        elif not machine.answering and self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Accept and close: all a TCP "ping" needs.
    writer.close()


class MachineCore:
    """Every machine of the reboot lab plus its peers, on the running loop.

    Args:
        machines: The machines to simulate.
        speed: Lab seconds per real second.
        state_dir: Where peers keep their files (configs, keys, logs).
        peers: Peer starters run after the machines are up, in order
            (stopped in reverse order).
    """

    def __init__(
        self,
        *,
        machines: list[MachineSpec],
        state_dir: Path,
        speed: float = 1.0,
        peers: list[Peer] | None = None,
    ) -> None:
        names = [m.name for m in machines]
        if len(set(names)) != len(names):
            raise ValueError(f"machine names must be unique: {names}")
        self.state_dir = Path(state_dir)
        self.clock = LabClock(speed=speed)
        self.machines = {
            spec.name: Machine(spec=_checked(spec), clock=self.clock) for spec in machines
        }
        self._listeners = {name: _PingListener(m) for name, m in self.machines.items()}
        self._peers = list(peers or [])
        self._peer_stops: list[Callable[[], Awaitable[None]]] = []
        self._runner: web.AppRunner | None = None
        self.control_url = ""

    def ping_port(self, name: str) -> int:
        """The TCP port the machine answers on while up (known once started)."""
        return self._listeners[name].port

    def machine(self, name: str) -> Machine:
        """One machine by name.

        Raises:
            KeyError: No such machine.
        """
        return self.machines[name]

    async def start(self) -> None:
        """Bind the ping listeners and the control API, then start every peer."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for name, machine in self.machines.items():
            listener = self._listeners[name]
            await listener.sync(machine)
            machine.on_change(listener.sync)
        app = web.Application()
        app.add_routes(
            [
                web.get("/machines", self._list),
                web.get("/machines/{name}", self._get),
                web.post("/machines/{name}/action", self._act),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.control_url = f"http://127.0.0.1:{port}"
        for peer in self._peers:
            self._peer_stops.append(await peer(self))

    async def stop(self) -> None:
        """Stop peers (reverse order), listeners, pending transitions and the control API."""
        for stop in reversed(self._peer_stops):
            try:
                await stop()
            except Exception:
                log.exception("reboot lab: stopping a peer failed")
        self._peer_stops.clear()
        for machine in self.machines.values():
            await machine.close()
        for listener in self._listeners.values():
            await listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _find(self, request: web.Request) -> Machine:
        name = request.match_info["name"]
        machine = self.machines.get(name)
        if machine is None:
            raise web.HTTPNotFound(text=f"no machine {name!r}")
        return machine

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([m.snapshot() for m in self.machines.values()])

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._find(request).snapshot())

    async def _act(self, request: web.Request) -> web.Response:
        machine = self._find(request)
        body: dict[str, Any] = await request.json()
        try:
            snap = await machine.act(str(body["action"]), source=str(body.get("source", "?")))
        except Refused as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"bad action: {exc}"}, status=400)
        return web.json_response(snap)


def _checked(spec: MachineSpec) -> MachineSpec:
    check_loopback(spec.address)
    return spec
