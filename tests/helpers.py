"""Small helpers for tests: free ports, waiting, throwaway certificates, reboot-lab pieces.

Reboot labs of one protocol (tests/ipmi_lab.py, tests/ssh_lab.py, ...) start
their machines with :func:`start_machines` and describe them with a
:class:`MachinesLab` subclass; :class:`PingWatch` records a machine going
down and coming back.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prefect.blocks.core import Block

from lab.machines import MachineLab, Peer

B = TypeVar("B", bound=Block)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(
    check: Callable[[], bool], *, timeout_s: float = 3.0, interval_s: float = 0.02
) -> bool:
    """Poll ``check`` until it is true; False when ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def wait_for_tls(host: str, port: int, *, timeout: float, proc: subprocess.Popen | None = None):
    """Wait until something accepts TCP on host:port (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} not listening after {timeout} s")


def self_signed_cert(directory: Path, ip: str) -> tuple[Path, Path]:
    """Write a throwaway self-signed certificate for ``ip``; return (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def start_machines(
    state_dir: Path,
    *,
    peers: Sequence[Peer],
    count: int = 1,
    subnet: str = "127.78.0.0/24",
    shutdown_s: float = 0.3,
    boot_s: float = 0.5,
    speed: float = 1.0,
    boot_overrides: Mapping[str, float] | None = None,
) -> Iterator[MachineLab]:
    """Start machines ``m1.lab.test``... with their peers; stop everything afterwards.

    Args:
        state_dir: Where the lab keeps configs, keys and logs.
        peers: The peers to run on the machines (BMCs, sshd hosts, ...).
        count: How many machines.
        subnet: Loopback subnet of their addresses.
        shutdown_s: Lab seconds an OS shutdown takes.
        boot_s: Lab seconds a boot takes.
        speed: Lab speed factor.
        boot_overrides: Boot time per machine name, for machines that boot slower.

    Yields:
        The running lab.
    """
    specs = MachineLab.generate(count, subnet=subnet, shutdown_s=shutdown_s, boot_s=boot_s)
    slow = boot_overrides or {}
    specs = [replace(s, boot_s=slow[s.name]) if s.name in slow else s for s in specs]
    with MachineLab(machines=specs, state_dir=state_dir, speed=speed, peers=list(peers)) as lab:
        yield lab


@dataclass
class MachinesLab(Generic[B]):
    """A running reboot lab and its machines' names; subclasses add a protocol's peer.

    Subclasses build their credentials block in :meth:`credentials`.
    """

    lab: MachineLab
    names: list[str]

    def address(self, name: str) -> str:
        """The machine's address (its peers and its ping listener bind it)."""
        return self.lab.machine(name).spec.address

    def ping_port(self, name: str) -> int:
        """The machine's TCP ping port (open while it answers)."""
        return self.lab.ping_port(name)

    def snapshot(self, name: str) -> dict[str, Any]:
        """The machine's state (powered, phase, answering, cycles, events)."""
        return self.lab.snapshot(name)

    def credentials(self, **overrides: Any) -> B:
        """A credentials block for the lab's peers (overrides: any block field)."""
        raise NotImplementedError

    async def save_credentials(self, block_name: str, **overrides: Any) -> B:
        """Save :meth:`credentials` as a block (needs the Prefect harness)."""
        creds = self.credentials(**overrides)
        await creds.asave(block_name, overwrite=True)
        return creds


class PingWatch:
    """Watch a machine's TCP "ping" port from a thread and record every change.

    Use as a context manager. :attr:`changes` starts with what the first probe
    saw and gets one entry per change: ``[True, False, True]`` is "was up,
    went down, came back". :meth:`answers` probes once (no thread needed).

    Args:
        address: The machine's address.
        port: Its ping port.
        interval_s: Pause between probes.
    """

    def __init__(self, address: str, port: int, *, interval_s: float = 0.01) -> None:
        self.address = address
        self.port = port
        self.interval_s = interval_s
        self._changes: list[bool] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping-watch", daemon=True)

    @property
    def changes(self) -> list[bool]:
        """What the probes saw, repeats collapsed (a copy)."""
        return list(self._changes)

    def answers(self) -> bool:
        """One probe: does the port accept a TCP connection now?"""
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def wait_for(self, pattern: list[bool], *, timeout_s: float = 10.0) -> bool:
        """Wait until :attr:`changes` ends with ``pattern``; False after ``timeout_s``."""
        return wait_until(lambda: self.changes[-len(pattern) :] == pattern, timeout_s=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.answers()
            if not self._changes or self._changes[-1] != now:
                self._changes.append(now)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PingWatch:
        self._thread.start()
        wait_until(lambda: bool(self._changes), timeout_s=5.0, interval_s=0.005)  # the baseline
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
