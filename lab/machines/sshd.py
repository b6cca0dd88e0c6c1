"""SSH hosts for the reboot lab: one real OpenSSH ``sshd`` per machine.

Each machine gets its own ``/usr/sbin/sshd -D -e -f <config>`` listening on
the machine's own loopback address, with its own ed25519 host key and the
public keys the peer was given as ``AuthorizedKeysFile``. The host's PATH
starts with fake ``reboot`` / ``shutdown`` / ``poweroff`` tools
(:mod:`lab.machines.sshd_tools.power`) that act on the shared machine through
the control API, so ``ssh host reboot`` really takes the machine down.

While a machine does not answer, its sshd does not either: the peer kills the
whole sshd process tree (listener and every session, so open connections
drop like on a real reboot) when the machine stops answering, and starts it
again on the same port with the same host key when it answers again. Commands
left running by closed sessions (sshd does not kill them: a client that gives
up on a hung command only closes its channel) die then too, as they would on
a real machine: :meth:`SshdPeer.session_processes` lists what still runs.

.. code-block:: python

    key, public = generate_key_pair()
    sshd = SshdPeer(authorized_keys=[public])
    with MachineLab(machines=specs, state_dir=tmp, peers=[sshd]) as lab:
        address, port = sshd.endpoints["m1.lab.test"]
        known_hosts = sshd.host_key_line("m1.lab.test")
        sshd.set_faults("m1.lab.test", SshFaults(fail={"reboot": "reboot: Permission denied"}))
        sshd.set_faults("m1.lab.test", SshFaults(stall={"reboot"}))  # `reboot` hangs, does nothing

A host's files and process live in :mod:`lab.machines.sshd_host`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.machines.core import MachineCore
from lab.machines.sshd_host import (
    SSHD,
    SshHost,
    generate_key_pair,
    host_processes,
    kill_tree,
    prepare_host,
    start_sshd,
    write_file,
)
from lab.machines.state import Machine

log = logging.getLogger(__name__)

__all__ = ["SSHD", "SshFaults", "SshdPeer", "generate_key_pair"]

PRIVSEP_DIR = Path("/run/sshd")


@dataclass
class SshFaults:
    """Faults of one SSH host (read by the fake tools on every call).

    Attributes:
        fail: Tool name, or a whole command line, -> message: the tool prints it
            and exits 1 without acting (e.g. ``{"reboot": "reboot: Permission
            denied"}``; ``{"shutdown -r now": ...}`` refuses only that form).
        hang: A tool that acted blocks until the machine's shutdown kills the
            session (a real ``reboot`` often never returns to the client).
        silent: With ``hang``: the tool also freezes the host's sshd (listener and
            its connection), so the client's session goes silent instead of
            closing until the machine goes down, like a reboot that takes the
            network down before sshd.
        stall: Tools that block forever WITHOUT acting (e.g. a ``reboot`` stuck
            on an unresponsive init): the client must time out and try another
            command. Closing the channel does not stop such a process (sshd
            never kills it); it runs until the machine goes down, and notes in
            :meth:`SshdPeer.stalls` when nobody reads its output any more.
    """

    fail: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    silent: bool = False
    stall: set[str] = field(default_factory=set)


class SshdPeer:
    """A reboot-lab peer running one real sshd per machine (see the module docstring).

    Args:
        authorized_keys: Public key lines accepted for any user.
        machines: Names of the machines that get an sshd (default: all).
        ports: Fixed ports per machine (default: a free port on its address).
        windows: Machines whose fake tools behave like Windows (``shutdown /r /t 0``).
        extra_tools: More fake tools for every host's PATH: name -> script text
            (made executable). They see the power tools' environment, plus
            ``RACKFLOW_LAB_PYTHON`` (this interpreter) and ``PYTHONPATH`` (the repo), so
            ``exec "$RACKFLOW_LAB_PYTHON" -m lab.machines.<module> "$@"`` works.
    """

    def __init__(
        self,
        *,
        authorized_keys: Sequence[str],
        machines: Collection[str] | None = None,
        ports: Mapping[str, int] | None = None,
        windows: Collection[str] = (),
        extra_tools: Mapping[str, str] | None = None,
    ) -> None:
        if not authorized_keys:
            raise ValueError("an SSH host needs at least one authorized key")
        self._authorized = [k.strip() for k in authorized_keys]
        self._only = set(machines) if machines is not None else None
        self._ports = dict(ports or {})
        self._windows = set(windows)
        self._extra_tools = dict(extra_tools or {})
        self._hosts: dict[str, SshHost] = {}
        self._stopped = False
        self.endpoints: dict[str, tuple[str, int]] = {}
        """Machine name -> (address, port) of its sshd, once started."""

    async def __call__(self, core: MachineCore) -> Callable[[], Awaitable[None]]:
        """Start an sshd for every chosen machine that answers; follow their state.

        Args:
            core: The running reboot lab.

        Returns:
            The async function that stops every sshd.
        """
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        names = [n for n in core.machines if self._only is None or n in self._only]
        try:
            for name in names:
                machine = core.machine(name)
                host = self._prepare(core, machine)
                self._hosts[name] = host
                self.endpoints[name] = (host.address, host.port)
                if machine.answering:
                    await self._start(host)
                machine.on_change(self._follow)
        except BaseException:
            await self._stop_all()
            raise
        return self._stop_all

    def host_key_line(self, name: str) -> str:
        """The machine's known_hosts line: ``[address]:port ssh-ed25519 AAAA...``."""
        host = self._hosts[name]
        # known_hosts names a host on port 22 by its bare address.
        where = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        return f"{where} {host.host_public}"

    def known_hosts(self) -> str:
        """known_hosts content listing every host of this peer."""
        return "".join(self.host_key_line(n) + "\n" for n in self._hosts)

    def set_faults(self, name: str, faults: SshFaults) -> None:
        """Replace a host's faults (safe from any thread: the tools read a file).

        Args:
            name: The machine.
            faults: Its new faults.
        """
        data = {
            "fail": dict(faults.fail),
            "hang": faults.hang,
            "silent": faults.silent,
            "stall": sorted(faults.stall),
        }
        write_file(self._hosts[name].directory / "faults.json", json.dumps(data))

    def calls(self, name: str) -> list[dict[str, Any]]:
        """Every fake-tool call on a host so far: ``{"tool", "args", "exit", "error", "t"}``."""
        path = self._hosts[name].directory / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def stalls(self, name: str) -> list[dict[str, Any]]:
        """What stalled tools did: ``{"tool", "pid", "event", "t"}``.

        ``event`` is ``stalled`` when the tool started hanging, then ``hung up``
        once sshd closed its end of the tool's output (the client closed the
        channel, or the connection ended); the process keeps hanging.
        """
        path = self._hosts[name].directory / "stalls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def session_processes(self, name: str) -> list[int]:
        """Pids of the processes the host's SSH sessions started that still run.

        Includes commands whose channel or connection closed (orphaned to
        init): sshd does not kill them; the machine going down does.
        """
        return host_processes(self._hosts[name].marker)

    def running(self, name: str) -> bool:
        """True while the machine's sshd listens.

        Like on real hardware, a booting machine answers ping a little before
        its sshd listens (the ping listener opens first): SSH after a reboot
        must tolerate (retry) a refused connection.
        """
        host = self._hosts[name]
        return host.listening and host.proc is not None and host.proc.poll() is None

    def log_path(self, name: str) -> Path:
        """The machine's sshd log (``-e``: everything sshd says)."""
        return self._hosts[name].log_path

    def _prepare(self, core: MachineCore, machine: Machine) -> SshHost:
        return prepare_host(
            core.state_dir / "sshd" / machine.name,
            machine=machine.name,
            address=machine.spec.address,
            port=self._ports.get(machine.name),
            authorized_keys=self._authorized,
            extra_tools=self._extra_tools,
            windows=machine.name in self._windows,
            control_url=core.control_url,
        )

    async def _follow(self, machine: Machine) -> None:
        host = self._hosts.get(machine.name)
        if host is None:
            return
        if machine.answering:
            await self._start(host)
        else:
            await self._stop(host)

    async def _start(self, host: SshHost) -> None:
        async with host.lock:
            # After the lab stopped us, a machine finishing its boot must not revive sshd.
            if self._stopped or (host.proc is not None and host.proc.poll() is None):
                return
            await start_sshd(host)
            log.info("sshd of %s listening on %s:%d", host.machine, host.address, host.port)

    async def _stop(self, host: SshHost) -> None:
        async with host.lock:
            proc, host.proc = host.proc, None
            host.listening = False
            # Orphaned session commands die with the machine even when sshd is not running.
            kill_tree(proc.pid if proc is not None else None, marker=host.marker)
            if proc is None:
                return
            # SIGKILLed: the wait is immediate; bounded anyway so the loop never hangs.
            await asyncio.to_thread(proc.wait, 10)
            log.info("sshd of %s stopped", host.machine)

    async def _stop_all(self) -> None:
        self._stopped = True
        for host in self._hosts.values():
            await self._stop(host)
