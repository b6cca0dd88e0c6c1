"""A reboot lab whose machines have real ipmi_sim BMCs, for tests of IPMI paths.

Reuse it from any test module::

    from tests.ipmi_lab import IpmiLab, PingWatch, start_ipmi_lab, ipmi_lab  # noqa: F401

    def test_something(ipmi_lab: IpmiLab) -> None:
        name = ipmi_lab.names[0]
        with ipmi_lab.client(name) as bmc:
            assert bmc.power_status() == "on"

    async def test_a_flow(prefect_harness, tmp_path) -> None:
        with start_ipmi_lab(tmp_path, count=2) as lab:
            await lab.save_credentials("ipmi-lab")
            address, port = lab.endpoint(lab.names[0])   # pass port= to the tasks
            ...

Every BMC shares one user and password (``lab.user`` / ``lab.password``)
and listens on its machine's own address, on its own UDP port. Machines
shut down and boot in a fraction of a second by default.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from blocks.ipmi import IpmiCredentials
from clients.ipmi import IpmiClient
from lab.machines import MachineLab, Peer
from lab.machines.ipmi import IpmiSimPeer

DEFAULT_SUBNET = "127.78.30.0/24"
IPMI_USER = "rackadmin"

needs_ipmi_sim = pytest.mark.skipif(
    shutil.which("ipmi_sim") is None, reason="ipmi_sim not installed (apt package openipmi)"
)


def make_ipmi_password() -> str:
    """A fresh password that fits IPMI 2.0's 20 bytes and no other string of the run."""
    return "pw-" + secrets.token_hex(8)


@dataclass
class IpmiLab:
    """A running reboot lab with an ipmi_sim BMC per machine."""

    lab: MachineLab
    bmcs: IpmiSimPeer
    user: str
    password: str
    names: list[str] = field(default_factory=list)

    def endpoint(self, name: str) -> tuple[str, int]:
        """The machine's BMC (address, UDP port)."""
        return self.bmcs.endpoints[name]

    def address(self, name: str) -> str:
        """The machine's address (its BMC and its ping listener bind it)."""
        return self.lab.machine(name).spec.address

    def ping_port(self, name: str) -> int:
        """The machine's TCP ping port (open while it answers)."""
        return self.lab.ping_port(name)

    def client(self, name: str, **overrides: Any) -> IpmiClient:
        """An IPMI client for one machine's BMC (overrides: any constructor argument)."""
        address, port = self.endpoint(name)
        kwargs: dict[str, Any] = {
            "address": address,
            "port": port,
            "user": self.user,
            "password": self.password,
            "timeout": 2.0,
        }
        kwargs.update(overrides)
        return IpmiClient(**kwargs)

    def credentials(self, **overrides: Any) -> IpmiCredentials:
        """A credentials block for the lab (ports differ per machine: tasks pass ``port``)."""
        fields: dict[str, Any] = {"user": self.user, "password": self.password, "timeout": 2.0}
        fields.update(overrides)
        return IpmiCredentials(**fields)

    async def save_credentials(self, block_name: str, **overrides: Any) -> IpmiCredentials:
        """Save :meth:`credentials` as a block (needs the Prefect harness)."""
        creds = self.credentials(**overrides)
        await creds.asave(block_name, overwrite=True)
        return creds

    def snapshot(self, name: str) -> dict[str, Any]:
        """The machine's state (powered, phase, answering, cycles, events)."""
        return self.lab.snapshot(name)

    def set_calls(self, name: str) -> list[list[str]]:
        """The ``set ...`` requests the machine's BMC passed to chassis control."""
        return [c["request"] for c in self.bmcs.calls(name) if c["request"][0] == "set"]


@contextmanager
def start_ipmi_lab(
    state_dir: Path,
    *,
    count: int = 1,
    subnet: str = DEFAULT_SUBNET,
    shutdown_s: float = 0.3,
    boot_s: float = 0.5,
    speed: float = 1.0,
    boot_overrides: dict[str, float] | None = None,
    user: str = IPMI_USER,
    password: str | None = None,
    more_peers: Sequence[Peer] = (),
) -> Iterator[IpmiLab]:
    """Start ``count`` lab machines, each with its own ipmi_sim BMC; stop them afterwards.

    Args:
        state_dir: Where the lab keeps configs and logs.
        count: How many machines (``m1.lab.test``...).
        subnet: Loopback subnet of their addresses.
        shutdown_s: Lab seconds an OS shutdown takes.
        boot_s: Lab seconds a boot takes.
        speed: Lab speed factor.
        boot_overrides: Boot time per machine name, for machines that boot slower.
        user: The BMC user (administrator).
        password: Its password (default: a fresh one).
        more_peers: Other peers to run on the same machines (SSH, PDU, ...).

    Yields:
        The running lab.
    """
    password = password or make_ipmi_password()
    specs = MachineLab.generate(count, subnet=subnet, shutdown_s=shutdown_s, boot_s=boot_s)
    slow = boot_overrides or {}
    specs = [replace(s, boot_s=slow[s.name]) if s.name in slow else s for s in specs]
    bmcs = IpmiSimPeer(user=user, password=password)
    lab = MachineLab(machines=specs, state_dir=state_dir, speed=speed, peers=[*more_peers, bmcs])
    with lab:
        yield IpmiLab(
            lab=lab, bmcs=bmcs, user=user, password=password, names=[s.name for s in specs]
        )


@pytest.fixture
def ipmi_lab(tmp_path: Path) -> Iterator[IpmiLab]:
    """Two lab machines with ipmi_sim BMCs."""
    if shutil.which("ipmi_sim") is None:
        pytest.skip("ipmi_sim not installed (apt package openipmi)")
    with start_ipmi_lab(tmp_path / "ipmi-lab", count=2) as lab:
        yield lab


class PingWatch:
    """Watch a machine's TCP ping port from a thread and record every change.

    ``states`` starts with what the first probe saw and gets one entry per
    change: ``[True, False, True]`` is "was up, went down, came back".

    Args:
        address: The machine's address.
        port: Its ping port.
        interval_s: Pause between probes.
    """

    def __init__(self, address: str, port: int, *, interval_s: float = 0.02) -> None:
        self.address = address
        self.port = port
        self.interval_s = interval_s
        self.states: list[bool] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping-watch", daemon=True)

    def answers(self) -> bool:
        """One probe: does the port accept a TCP connection now?"""
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.answers()
            if not self.states or self.states[-1] != now:
                self.states.append(now)
            self._stop.wait(self.interval_s)

    def wait_for(self, states: list[bool], *, timeout_s: float = 10.0) -> list[bool]:
        """Wait until the recorded changes are ``states`` (or more); return what was seen."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.states) < len(states):
            time.sleep(0.02)
        return list(self.states)

    def __enter__(self) -> PingWatch:
        self._thread.start()
        while not self.states:  # the first probe is the baseline
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
