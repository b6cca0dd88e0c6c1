"""A reboot lab whose machines run real sshd hosts, for tests of SSH paths.

Reuse it from any test module::

    from tests.ssh_lab import SshLab, ssh_lab_fixture, start_ssh_lab  # noqa: F401 (fixture)

    def test_something(ssh_lab: SshLab) -> None:
        name = ssh_lab.names[0]
        with ssh_lab.client(name) as ssh:
            ssh.run("echo hi")

    async def test_a_flow(prefect_harness, tmp_path) -> None:
        with start_ssh_lab(tmp_path, count=2, windows=[...]) as lab:
            await lab.save_credentials("ssh-lab")
            ...

Importing ``ssh_lab_fixture`` registers the fixture ``ssh_lab``. Machines boot
and shut down in a fraction of a second (``shutdown_s=0.3``, ``boot_s=0.5`` by
default). After a reboot a machine answers ping a moment before its sshd
listens (as real ones do): call ``lab.wait_ssh(name)`` before connecting again.
Faults: ``lab.sshd.set_faults(name, SshFaults(...))`` for the host's tools,
``lab.lab.set_faults(name, MachineFaults(...))`` for the machine itself.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blocks.ssh import SshCredentials
from clients.ssh import SshClient
from lab.machines import Peer
from lab.machines.sshd import SshdPeer, generate_key_pair
from tests.helpers import MachinesLab, start_machines, wait_until

DEFAULT_SUBNET = "127.78.22.0/24"


@dataclass(frozen=True)
class KeyPair:
    """A client key pair: private key text (OpenSSH) and public key line."""

    private: str
    public: str


def make_key_pair(comment: str = "rackflow-test") -> KeyPair:
    """A fresh ed25519 client key pair."""
    private, public = generate_key_pair(comment)
    return KeyPair(private=private, public=public)


@dataclass
class SshLab(MachinesLab[SshCredentials]):
    """A running reboot lab with an sshd per machine, and the key it trusts."""

    sshd: SshdPeer
    key: KeyPair
    user: str

    def ssh_port(self, name: str) -> int:
        """The machine's sshd port (on its address)."""
        return self.sshd.endpoints[name][1]

    def known_hosts(self, names: Sequence[str] | None = None) -> str:
        """known_hosts content for some machines (default: all)."""
        return "".join(self.sshd.host_key_line(n) + "\n" for n in names or self.names)

    def _login(self) -> dict[str, Any]:
        # What a client and a credentials block of the lab both carry.
        return {
            "user": self.user,
            "private_key": self.key.private,
            "known_hosts": self.known_hosts(),
            "connect_timeout_s": 5.0,
        }

    def client(self, name: str, **overrides: Any) -> SshClient:
        """An SSH client for one machine with the lab's key (overrides: any ctor argument)."""
        where = {"host": self.address(name), "port": self.ssh_port(name)}
        return SshClient(**{**where, **self._login(), **overrides})

    def credentials(self, **overrides: Any) -> SshCredentials:
        """A credentials block for the lab (ports differ per machine: tasks pass ``port``)."""
        return SshCredentials(**{**self._login(), **overrides})

    def wait_ssh(self, name: str, *, timeout_s: float = 5.0) -> None:
        """Block until the machine's sshd listens (it starts just after ping answers)."""
        if not wait_until(lambda: self.sshd.running(name), timeout_s=timeout_s, interval_s=0.01):
            raise TimeoutError(f"sshd of {name} not listening after {timeout_s} s")


@contextmanager
def start_ssh_lab(
    state_dir: Path,
    *,
    count: int = 1,
    subnet: str = DEFAULT_SUBNET,
    shutdown_s: float = 0.3,
    boot_s: float = 0.5,
    speed: float = 1.0,
    windows: Collection[str] = (),
    extra_tools: Mapping[str, str] | None = None,
    more_peers: Sequence[Peer] = (),
    key: KeyPair | None = None,
    authorized_keys: Sequence[str] = (),
) -> Iterator[SshLab]:
    """Start ``count`` lab machines, each with its own sshd, and stop them afterwards.

    Args:
        state_dir: Where the lab keeps configs, keys and logs.
        count: How many machines (``m1.lab.test``...).
        subnet: Loopback subnet of their addresses.
        shutdown_s: Lab seconds an OS shutdown takes.
        boot_s: Lab seconds a boot takes.
        speed: Lab speed factor.
        windows: Machine names whose fake tools behave like Windows.
        extra_tools: More fake tools for every host's PATH (name -> script text).
        more_peers: Other peers to run on the same machines (IPMI, PDU, ...).
        key: The client key pair to authorize (default: a fresh one).
        authorized_keys: More public key lines the hosts accept.

    Yields:
        The running lab.
    """
    key = key or make_key_pair()
    sshd = SshdPeer(
        authorized_keys=[key.public, *authorized_keys], windows=windows, extra_tools=extra_tools
    )
    with start_machines(
        state_dir,
        peers=[sshd, *more_peers],
        count=count,
        subnet=subnet,
        shutdown_s=shutdown_s,
        boot_s=boot_s,
        speed=speed,
    ) as lab:
        names = list(lab.core.machines)
        yield SshLab(lab=lab, names=names, sshd=sshd, key=key, user=getpass.getuser())


@pytest.fixture(name="ssh_lab")
def ssh_lab_fixture(tmp_path: Path) -> Iterator[SshLab]:
    """Two lab machines with sshd hosts (``m2.lab.test`` is a Windows host)."""
    with start_ssh_lab(tmp_path / "ssh-lab", count=2, windows=["m2.lab.test"]) as lab:
        yield lab


@pytest.fixture(name="captured")
def captured_fixture(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG, including Prefect's own loggers (they do not propagate)."""
    caplog.set_level(logging.DEBUG)
    prefect_logger = logging.getLogger("prefect")
    prefect_logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        prefect_logger.removeHandler(caplog.handler)
