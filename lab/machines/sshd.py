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
again on the same port with the same host key when it answers again.

.. code-block:: python

    key, public = generate_key_pair()
    sshd = SshdPeer(authorized_keys=[public])
    with MachineLab(machines=specs, state_dir=tmp, peers=[sshd]) as lab:
        address, port = sshd.endpoints["m1.lab.test"]
        known_hosts = sshd.host_key_line("m1.lab.test")
        sshd.set_faults("m1.lab.test", SshFaults(fail={"reboot": "reboot: Permission denied"}))
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.machines.core import MachineCore
from lab.machines.state import Machine

log = logging.getLogger(__name__)

__all__ = ["SshFaults", "SshdPeer", "generate_key_pair"]

SSHD = "/usr/sbin/sshd"  # sshd refuses to run unless started by absolute path
PRIVSEP_DIR = Path("/run/sshd")
REPO_ROOT = Path(__file__).resolve().parents[2]
POWER_TOOLS = ("reboot", "shutdown", "poweroff")
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # external: the session wrapper execs it
_READY_TIMEOUT_S = 10.0
# sshd runs commands through the user's login shell, and bash reads ~/.bashrc
# when started by sshd: root's may prepend to PATH. This ForceCommand puts the
# fake tools first again, then runs what the client asked for.
_SESSION = """#!/bin/sh
PATH={path}; export PATH
if [ -z "${{SSH_ORIGINAL_COMMAND:-}}" ]; then exec /bin/sh; fi
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


def generate_key_pair(comment: str = "") -> tuple[str, str]:
    """Make an ed25519 key pair in OpenSSH formats.

    Args:
        comment: Appended to the public key line.

    Returns:
        (private key as OpenSSH PEM text, public key line ``ssh-ed25519 AAAA... comment``).
    """
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}".strip()


@dataclass
class SshFaults:
    """Faults of one SSH host (read by the fake tools on every call).

    Attributes:
        fail: Tool name -> message: the tool prints it and exits 1 without acting
            (e.g. ``{"reboot": "reboot: Permission denied"}``).
        hang: A tool that acted blocks until the machine's shutdown kills the
            session (a real ``reboot`` often never returns to the client).
    """

    fail: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class _Host:
    machine: str
    address: str
    port: int
    directory: Path
    windows: bool
    host_public: str
    proc: subprocess.Popen[bytes] | None = None
    listening: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def config(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"


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
        self._hosts: dict[str, _Host] = {}
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
        data = {"fail": dict(faults.fail), "hang": faults.hang}
        _write(self._hosts[name].directory / "faults.json", json.dumps(data))

    def calls(self, name: str) -> list[dict[str, Any]]:
        """Every fake-tool call on a host so far: ``{"tool", "args", "exit", "error", "t"}``."""
        path = self._hosts[name].directory / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

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

    def _prepare(self, core: MachineCore, machine: Machine) -> _Host:
        directory = core.state_dir / "sshd" / machine.name
        bin_dir = directory / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        address = machine.spec.address
        port = self._ports.get(machine.name) or _free_port(address)
        private, public = generate_key_pair(f"root@{machine.name}")
        _write(directory / "ssh_host_ed25519_key", private, mode=0o600)
        _write(directory / "authorized_keys", "".join(k + "\n" for k in self._authorized))
        _write(directory / "faults.json", json.dumps({"fail": {}, "hang": False}))
        _write(directory / "calls.jsonl", "")  # a reused state dir starts with no calls
        python = shlex.quote(sys.executable)
        for tool in POWER_TOOLS:
            script = f'#!/bin/sh\nexec {python} -m lab.machines.sshd_tools.power {tool} "$@"\n'
            _write(bin_dir / tool, script, mode=0o755)
        for tool, script in self._extra_tools.items():
            _write(bin_dir / tool, script, mode=0o755)
        _write(directory / "session", _SESSION.format(path=shlex.quote(_path(bin_dir))), mode=0o755)
        host = _Host(
            machine=machine.name,
            address=address,
            port=port,
            directory=directory,
            windows=machine.name in self._windows,
            host_public=public,
        )
        env = {
            "PATH": _path(bin_dir),
            "PYTHONPATH": str(REPO_ROOT),
            "RACKFLOW_LAB_PYTHON": sys.executable,  # for extra tools written in Python
            "RACKFLOW_LAB_CONTROL_URL": core.control_url,
            "RACKFLOW_LAB_MACHINE": machine.name,
            "RACKFLOW_LAB_SSH_FAULTS": str(directory / "faults.json"),
            "RACKFLOW_LAB_SSH_CALLS": str(directory / "calls.jsonl"),
            "RACKFLOW_LAB_OS": "windows" if host.windows else "linux",
        }
        _write(host.config, _sshd_config(host, env))
        return host

    async def _follow(self, machine: Machine) -> None:
        host = self._hosts.get(machine.name)
        if host is None:
            return
        if machine.answering:
            await self._start(host)
        else:
            await self._stop(host)

    async def _start(self, host: _Host) -> None:
        async with host.lock:
            # After the lab stopped us, a machine finishing its boot must not revive sshd.
            if self._stopped or (host.proc is not None and host.proc.poll() is None):
                return
            offset = host.log_path.stat().st_size if host.log_path.exists() else 0
            with host.log_path.open("ab") as out:
                host.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own config
                    [SSHD, "-D", "-e", "-f", str(host.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                )
            await _wait_listening(host, offset)
            host.listening = True
            log.info("sshd of %s listening on %s:%d", host.machine, host.address, host.port)

    async def _stop(self, host: _Host) -> None:
        async with host.lock:
            proc, host.proc = host.proc, None
            host.listening = False
            if proc is None:
                return
            _kill_tree(proc.pid)
            # SIGKILLed: the wait is immediate; bounded anyway so the loop never hangs.
            await asyncio.to_thread(proc.wait, 10)
            log.info("sshd of %s stopped", host.machine)

    async def _stop_all(self) -> None:
        self._stopped = True
        for host in self._hosts.values():
            await self._stop(host)


def _sshd_config(host: _Host, env: Mapping[str, str]) -> str:
    set_env = " ".join(f'"{k}={v}"' for k, v in env.items())
    return "\n".join(
        [
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {host.directory / 'ssh_host_ed25519_key'}",
            f"PidFile {host.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {host.directory / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",  # the lab's files live in a temp dir of any mode
            "PrintMotd no",
            "MaxStartups 100",
            f"SetEnv {set_env}",
            f"ForceCommand {host.directory / 'session'}",
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]
    )


async def _wait_listening(host: _Host, offset: int) -> None:
    # sshd -e says "Server listening on <addr> port <port>." once bound: reading
    # its log avoids probe connections that would clutter it.
    deadline = time.monotonic() + _READY_TIMEOUT_S
    proc = host.proc
    assert proc is not None
    while True:
        with host.log_path.open("rb") as f:
            f.seek(offset)
            said = f.read().decode(errors="replace")
        if "Server listening on" in said:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill_tree(proc.pid)
            raise RuntimeError(f"sshd of {host.machine} did not start: {said[-2000:]}")
        await asyncio.sleep(0.01)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited while we looked
            continue
        # The command name may contain spaces and parentheses: ppid follows the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _kill_tree(root: int) -> None:
    """SIGKILL a process and all its descendants (sshd sessions call setsid, so no killpg)."""
    frozen: set[int] = set()
    pending = [root]
    # Freeze first, so nothing forks or reparents while we collect the tree.
    while pending:
        for pid in pending:
            _signal(pid, signal.SIGSTOP)
            frozen.add(pid)
        tree = _children()
        pending = [c for p in frozen for c in tree.get(p, []) if c not in frozen]
    for pid in frozen:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _path(bin_dir: Path) -> str:
    return f"{bin_dir}:/usr/bin:/bin"


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def _write(path: Path, text: str, *, mode: int = 0o644) -> None:
    # Open with the final mode: a host key must never be readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    out: IO[str]
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, mode)
