"""IPMI BMCs for the reboot lab: one real OpenIPMI ``ipmi_sim`` per machine.

Each BMC listens on UDP on its machine's own loopback address (a free port
per machine) and stays reachable while the host is down, as a real BMC on
standby power does. Its ``chassis_control`` program is
:mod:`lab.machines.ipmi_chassis`, which turns ipmi_sim's power requests into
actions on the shared :class:`~lab.machines.state.Machine` (source ``ipmi``)
through the control API, and logs every call to :attr:`IpmiSimPeer.log_path`.

.. code-block:: python

    peer = IpmiSimPeer(user="admin", password=pw)
    with MachineLab(machines=MachineLab.generate(2), state_dir=tmp, peers=[peer]) as lab:
        address, port = peer.endpoints["m1.lab.test"]
        peer.calls("m1.lab.test")      # [{"request": ["get", "power"], ...}, ...]
        peer.pause("m1.lab.test")      # the BMC stops answering (SIGSTOP)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clients.errors import RackflowError
from clients.ipmi import IpmiClient

if TYPE_CHECKING:
    from lab.machines.core import MachineCore

log = logging.getLogger(__name__)

__all__ = ["IpmiSimPeer"]

_REPO_ROOT = Path(__file__).resolve().parents[2]
_MC = "0x20"
_START_TRIES = 3  # a free port can be taken between probing it and ipmi_sim binding it
_STOP_WAIT_S = 5.0
_PROBE_TIMEOUT_S = 0.5
# ipmi_sim hands the chassis_control string to /bin/sh inside a quoted config value.
_SAFE_WORD = re.compile(r"^[\w@%+=:,./-]+$")
_EMU = """\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


@dataclass
class _Bmc:
    machine: str
    address: str
    directory: Path
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    paused: bool = False


class IpmiSimPeer:
    """A reboot-lab peer running one ``ipmi_sim`` BMC per machine.

    Args:
        user: BMC user name (at most 16 bytes), administrator privilege.
        password: Its password (at most 20 bytes). Written only to the
            BMC's config file (mode 0600), never to a command line or log.
        machines: Names of the machines that get a BMC (default: all).
        ipmi_sim: The ipmi_sim program.
        ready_timeout_s: How long each BMC may take to answer after start.

    Raises:
        ValueError: User or password unusable in an ipmi_sim config or too long.
    """

    def __init__(
        self,
        *,
        user: str,
        password: str,
        machines: Sequence[str] | None = None,
        ipmi_sim: str = "ipmi_sim",
        ready_timeout_s: float = 15.0,
    ) -> None:
        for what, value, limit in (("user", user, 16), ("password", password, 20)):
            if not value or len(value.encode()) > limit or any(c in value for c in '"\\\n\r'):
                raise ValueError(f"IPMI {what} must be 1-{limit} bytes without quotes or newlines")
        self.user = user
        self._password = password
        self._only = list(machines) if machines is not None else None
        self._program = ipmi_sim
        self._ready_timeout_s = ready_timeout_s
        self._bmcs: dict[str, _Bmc] = {}
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.log_path = Path()

    # -- what tests read ------------------------------------------------------

    def calls(self, machine: str | None = None) -> list[dict[str, Any]]:
        """Chassis-control calls ipmi_sim made so far, oldest first.

        Args:
            machine: Only this machine's calls (default: all).

        Returns:
            One dict per call: ``t``, ``machine``, ``request`` (e.g.
            ``["set", "reset", "1"]``), ``action`` (machine action or None),
            ``answer`` or ``error``.
        """
        if not self.log_path.is_file():
            return []
        entries = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
        return [e for e in entries if machine is None or e.get("machine") == machine]

    def actions(self, machine: str) -> list[str]:
        """The machine actions ipmi_sim asked for (``off``, ``on``, ``reset``, ``soft``...)."""
        return [e["action"] for e in self.calls(machine) if e.get("action")]

    def pause(self, machine: str) -> None:
        """Freeze a BMC (SIGSTOP): it stops answering, like a hung BMC."""
        os.kill(self._running(machine).pid, signal.SIGSTOP)
        self._bmcs[machine].paused = True

    def resume(self, machine: str) -> None:
        """Let a paused BMC run again (SIGCONT)."""
        os.kill(self._running(machine).pid, signal.SIGCONT)
        self._bmcs[machine].paused = False

    def _running(self, machine: str) -> asyncio.subprocess.Process:
        bmc = self._bmcs[machine]
        if bmc.process is None or bmc.process.returncode is not None:
            raise RuntimeError(f"the BMC of {machine} is not running")
        return bmc.process

    # -- peer protocol --------------------------------------------------------

    async def __call__(self, core: MachineCore) -> Callable[[], Awaitable[None]]:
        """Start every BMC; return once each one answers an IPMI session.

        Raises:
            RuntimeError: ipmi_sim is missing, exited, or did not answer in time.
        """
        program = shutil.which(self._program)
        if program is None:
            raise RuntimeError(f"{self._program} not found (apt package openipmi)")
        root = core.state_dir / "ipmi"
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "chassis-calls.jsonl"
        names = self._only if self._only is not None else list(core.machines)
        for name in names:
            machine = core.machine(name)
            self._bmcs[name] = _Bmc(name, machine.spec.address, root / name)
        try:
            await asyncio.gather(
                *(self._start(program, bmc, core.control_url) for bmc in self._bmcs.values())
            )
        except BaseException:
            await self._stop()
            raise
        return self._stop

    async def _start(self, program: str, bmc: _Bmc, control_url: str) -> None:
        bmc.directory.mkdir(parents=True, exist_ok=True)
        (bmc.directory / "state").mkdir(exist_ok=True)
        (bmc.directory / "bmc.emu").write_text(_EMU)
        for attempt in range(1, _START_TRIES + 1):
            bmc.port = _free_udp_port(bmc.address)
            self._write_lan_conf(bmc, control_url)
            bmc.process = await self._spawn(program, bmc)
            if await self._wait_ready(bmc):
                self.endpoints[bmc.machine] = (bmc.address, bmc.port)
                log.info("ipmi_sim for %s on %s:%d", bmc.machine, bmc.address, bmc.port)
                return
            log.warning("ipmi_sim for %s exited (try %d): %s", bmc.machine, attempt, _tail(bmc))
        raise RuntimeError(f"ipmi_sim for {bmc.machine} did not start: {_tail(bmc)}")

    def _write_lan_conf(self, bmc: _Bmc, control_url: str) -> None:
        chassis = [sys.executable, "-m", "lab.machines.ipmi_chassis", control_url, bmc.machine]
        chassis += [str(self.log_path), _MC]
        unsafe = [w for w in chassis if not _SAFE_WORD.match(w)]
        if unsafe:
            raise RuntimeError(f"cannot pass {unsafe} through ipmi_sim's chassis_control")
        conf = bmc.directory / "lan.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            f'name "bmc-{bmc.machine}"\n'
            f"set_working_mc {_MC}\n"
            "  startlan 1\n"
            f"    addr {bmc.address} {bmc.port}\n"
            "    priv_limit admin\n"
            "    allowed_auths_callback none md2 md5 straight\n"
            "    allowed_auths_user none md2 md5 straight\n"
            "    allowed_auths_operator none md2 md5 straight\n"
            "    allowed_auths_admin none md2 md5 straight\n"
            f"    guid {secrets.token_hex(16)}\n"
            "  endlan\n"
            f'  chassis_control "{" ".join(chassis)}"\n'
            f'user 2 true "{self.user}" "{self._password}" admin 10 none md2 md5 straight\n'
        )

    async def _spawn(self, program: str, bmc: _Bmc) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        # The chassis script runs `python -m lab.machines...`: it needs the repo on its path.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        with (bmc.directory / "ipmi_sim.out").open("ab") as out:
            return await asyncio.create_subprocess_exec(
                program, "-c", "lan.conf", "-f", "bmc.emu", "-s", "state", "-n",
                cwd=bmc.directory, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def _wait_ready(self, bmc: _Bmc) -> bool:
        """True once the BMC answers a session and a power read; False if it exited."""
        assert bmc.process is not None
        client = IpmiClient(
            address=bmc.address, port=bmc.port, user=self.user, password=self._password,
            timeout=_PROBE_TIMEOUT_S,
        )  # fmt: skip
        deadline = time.monotonic() + self._ready_timeout_s
        while bmc.process.returncode is None:
            try:
                await asyncio.to_thread(_read_power, client)
                return True
            except RackflowError as exc:
                if time.monotonic() > deadline:
                    await self._kill(bmc)
                    raise RuntimeError(
                        f"ipmi_sim for {bmc.machine} does not answer: {exc}"
                    ) from exc
            await asyncio.sleep(0.05)
        return False

    async def _stop(self) -> None:
        await asyncio.gather(*(self._kill(bmc) for bmc in self._bmcs.values()))
        self.endpoints.clear()

    async def _kill(self, bmc: _Bmc) -> None:
        proc = bmc.process
        if proc is None or proc.returncode is not None:
            return
        if bmc.paused:  # a stopped process would not act on SIGTERM
            proc.send_signal(signal.SIGCONT)
            bmc.paused = False
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), _STOP_WAIT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _read_power(client: IpmiClient) -> str:
    with client:
        return client.power_status()


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def _tail(bmc: _Bmc) -> str:
    out = bmc.directory / "ipmi_sim.out"
    text = out.read_text(errors="replace").strip() if out.is_file() else ""
    return text[-500:] or "(no output)"
