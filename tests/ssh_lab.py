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
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from blocks.ssh import SshCredentials
from clients.ssh import SshClient
from lab.machines import MachineLab, Peer
from lab.machines.sshd import SshdPeer, generate_key_pair

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
class SshLab:
    """A running reboot lab with an sshd per machine, and the key it trusts."""

    lab: MachineLab
    sshd: SshdPeer
    key: KeyPair
    user: str
    names: list[str] = field(default_factory=list)

    def address(self, name: str) -> str:
        """The machine's address (sshd and ping listener bind it)."""
        return self.sshd.endpoints[name][0]

    def ssh_port(self, name: str) -> int:
        """The machine's sshd port."""
        return self.sshd.endpoints[name][1]

    def ping_port(self, name: str) -> int:
        """The machine's TCP ping port (open while it answers)."""
        return self.lab.ping_port(name)

    def known_hosts(self, names: Sequence[str] | None = None) -> str:
        """known_hosts content for some machines (default: all)."""
        return "".join(self.sshd.host_key_line(n) + "\n" for n in names or self.names)

    def client(self, name: str, **overrides: Any) -> SshClient:
        """An SSH client for one machine with the lab's key (overrides: any ctor argument)."""
        kwargs: dict[str, Any] = {
            "host": self.address(name),
            "port": self.ssh_port(name),
            "user": self.user,
            "private_key": self.key.private,
            "known_hosts": self.known_hosts(),
            "connect_timeout_s": 5.0,
        }
        kwargs.update(overrides)
        return SshClient(**kwargs)

    def credentials(self, **overrides: Any) -> SshCredentials:
        """A credentials block for the lab (ports differ per machine: tasks pass ``port``)."""
        fields: dict[str, Any] = {
            "user": self.user,
            "private_key": self.key.private,
            "known_hosts": self.known_hosts(),
            "connect_timeout_s": 5.0,
        }
        fields.update(overrides)
        return SshCredentials(**fields)

    async def save_credentials(self, block_name: str, **overrides: Any) -> SshCredentials:
        """Save :meth:`credentials` as a block (needs the Prefect harness)."""
        creds = self.credentials(**overrides)
        await creds.asave(block_name, overwrite=True)
        return creds

    def wait_ssh(self, name: str, *, timeout_s: float = 5.0) -> None:
        """Block until the machine's sshd listens (it starts just after ping answers)."""
        deadline = time.monotonic() + timeout_s
        while not self.sshd.running(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"sshd of {name} not listening after {timeout_s} s")
            time.sleep(0.01)

    def snapshot(self, name: str) -> dict[str, Any]:
        """The machine's state (phase, answering, cycles, events)."""
        return self.lab.snapshot(name)


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
    specs = MachineLab.generate(count, subnet=subnet, shutdown_s=shutdown_s, boot_s=boot_s)
    sshd = SshdPeer(
        authorized_keys=[key.public, *authorized_keys], windows=windows, extra_tools=extra_tools
    )
    lab = MachineLab(machines=specs, state_dir=state_dir, speed=speed, peers=[sshd, *more_peers])
    with lab:
        yield SshLab(
            lab=lab, sshd=sshd, key=key, user=getpass.getuser(), names=[s.name for s in specs]
        )


@pytest.fixture(name="ssh_lab")
def ssh_lab_fixture(tmp_path: Path) -> Iterator[SshLab]:
    """Two lab machines with sshd hosts (``m2.lab.test`` is a Windows host)."""
    with start_ssh_lab(tmp_path / "ssh-lab", count=2, windows=["m2.lab.test"]) as lab:
        yield lab
