"""One lab SSH host on disk and as a process: its files, its sshd, killing its tree.

A host is a directory under the lab's state dir: an ed25519 host key, the
authorized keys, ``faults.json``, ``calls.jsonl`` and ``stalls.jsonl`` (read
and written by the fake power tools), a ``bin/`` of fake tools first on PATH,
the session wrapper and the ``sshd_config``. :func:`start_sshd` runs
``/usr/sbin/sshd -D -e -f <config>`` on it; :func:`kill_tree` takes down the
listener and every session, like a machine losing power.

Every session process carries the host's marker in its environment
(``RACKFLOW_LAB_SSH_HOST=<directory>``, set by ``SetEnv``). sshd does not kill
a command whose channel or connection closed: the command lives on, orphaned
to init once its connection ends, outside the listener's process tree. The
marker is how :func:`host_processes` and :func:`kill_tree` still find it, so a
machine going down leaves none of its processes behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "SSHD",
    "SshHost",
    "generate_key_pair",
    "host_processes",
    "kill_tree",
    "prepare_host",
    "start_sshd",
    "write_file",
]

SSHD = "/usr/sbin/sshd"  # sshd refuses to run unless started by absolute path
REPO_ROOT = Path(__file__).resolve().parents[2]
POWER_TOOLS = ("reboot", "shutdown", "poweroff")
SFTP_SERVER = "/usr/lib/openssh/sftp-server"  # external: the session wrapper execs it
_READY_TIMEOUT_S = 10.0
_MARKER = "RACKFLOW_LAB_SSH_HOST"
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
class SshHost:
    """One machine's sshd: where it listens, its files, its process."""

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
        """The host's ``sshd_config``."""
        return self.directory / "sshd_config"

    @property
    def log_path(self) -> Path:
        """Everything its sshd said (``-e``)."""
        return self.directory / "sshd.log"

    @property
    def marker(self) -> str:
        """The environment entry every process of its sessions carries."""
        return f"{_MARKER}={self.directory}"


def prepare_host(
    directory: Path,
    *,
    machine: str,
    address: str,
    port: int | None,
    authorized_keys: Collection[str],
    extra_tools: Mapping[str, str],
    windows: bool,
    control_url: str,
) -> SshHost:
    """Write a host's files (a fresh host key, no calls yet, no faults).

    Args:
        directory: The host's directory (created).
        machine: The machine's name.
        address: Where its sshd listens.
        port: Its port (None: a free port on ``address``).
        authorized_keys: Public key lines accepted for any user.
        extra_tools: More fake tools for its PATH: name -> script text.
        windows: Its fake tools behave like Windows.
        control_url: The lab's control API, for the fake tools.

    Returns:
        The host, not started.
    """
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    private, public = generate_key_pair(f"root@{machine}")
    write_file(directory / "ssh_host_ed25519_key", private, mode=0o600)
    write_file(directory / "authorized_keys", "".join(k + "\n" for k in authorized_keys))
    write_file(
        directory / "faults.json",
        json.dumps({"fail": {}, "hang": False, "silent": False, "stall": []}),
    )
    write_file(directory / "calls.jsonl", "")  # a reused state dir starts with no calls
    write_file(directory / "stalls.jsonl", "")
    python = shlex.quote(sys.executable)
    for tool in POWER_TOOLS:
        script = f'#!/bin/sh\nexec {python} -m lab.machines.sshd_tools.power {tool} "$@"\n'
        write_file(bin_dir / tool, script, mode=0o755)
    for tool, script in extra_tools.items():
        write_file(bin_dir / tool, script, mode=0o755)
    session = _SESSION.format(path=shlex.quote(_path(bin_dir)))
    write_file(directory / "session", session, mode=0o755)
    host = SshHost(
        machine=machine,
        address=address,
        port=port or _free_port(address),
        directory=directory,
        windows=windows,
        host_public=public,
    )
    env = {
        "PATH": _path(bin_dir),
        "PYTHONPATH": str(REPO_ROOT),
        "RACKFLOW_LAB_PYTHON": sys.executable,  # for extra tools written in Python
        "RACKFLOW_LAB_CONTROL_URL": control_url,
        "RACKFLOW_LAB_MACHINE": machine,
        "RACKFLOW_LAB_SSH_FAULTS": str(directory / "faults.json"),
        "RACKFLOW_LAB_SSH_CALLS": str(directory / "calls.jsonl"),
        "RACKFLOW_LAB_SSH_STALLS": str(directory / "stalls.jsonl"),
        _MARKER: str(directory),
        "RACKFLOW_LAB_OS": "windows" if windows else "linux",
    }
    write_file(host.config, _sshd_config(host, env))
    return host


async def start_sshd(host: SshHost) -> None:
    """Start the host's sshd and wait until it listens.

    Raises:
        RuntimeError: sshd exited or did not listen within 10 s (it is killed).
    """
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


def _sshd_config(host: SshHost, env: Mapping[str, str]) -> str:
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


async def _wait_listening(host: SshHost, offset: int) -> None:
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
            kill_tree(proc.pid, marker=host.marker)
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


def host_processes(marker: str) -> list[int]:
    """Pids of the processes whose environment holds ``marker`` (a host's sessions).

    Args:
        marker: An environment entry, ``NAME=value`` (see :attr:`SshHost.marker`).

    Returns:
        The pids, in no particular order.
    """
    wanted = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # exited while we looked, or not ours to read
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry))
    return found


def kill_tree(root: int | None, *, marker: str | None = None) -> None:
    """SIGKILL a process, all its descendants and every process carrying ``marker``.

    sshd sessions call setsid, so no killpg; commands whose connection already
    ended were reparented to init, so only ``marker`` finds them.

    Args:
        root: The process (sshd's listener); None when none runs.
        marker: The host's environment marker (:attr:`SshHost.marker`).
    """
    frozen: set[int] = set()
    pending = ([root] if root is not None else []) + (host_processes(marker) if marker else [])
    # Freeze first, so nothing forks or reparents while we collect the tree.
    while pending:
        for pid in pending:
            _signal(pid, signal.SIGSTOP)
            frozen.add(pid)
        tree = _children()
        marked = host_processes(marker) if marker else []
        pending = [c for p in frozen for c in tree.get(p, []) if c not in frozen]
        pending += [pid for pid in marked if pid not in frozen and pid not in pending]
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


def write_file(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write a text file created with its final mode.

    A host key must never be readable by others, even briefly: the file is
    opened with ``mode`` rather than chmod-ed after writing.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    out: IO[str]
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, mode)
