"""A reboot lab whose machines have real ipmi_sim BMCs, for tests of IPMI paths.

Reuse it from any test module::

    from tests.ipmi_lab import IpmiLab, start_ipmi_lab, ipmi_lab  # noqa: F401

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blocks.ipmi import IpmiCredentials
from clients.ipmi import IpmiClient
from lab.machines import Peer
from lab.machines.ipmi import IpmiSimPeer
from tests.helpers import MachinesLab, start_machines

DEFAULT_SUBNET = "127.78.30.0/24"
IPMI_USER = "rackadmin"

needs_ipmi_sim = pytest.mark.skipif(
    shutil.which("ipmi_sim") is None, reason="ipmi_sim not installed (apt package openipmi)"
)


def make_ipmi_password() -> str:
    """A fresh password that fits IPMI 2.0's 20 bytes and no other string of the run."""
    return "pw-" + secrets.token_hex(8)


@dataclass
class IpmiLab(MachinesLab[IpmiCredentials]):
    """A running reboot lab with an ipmi_sim BMC per machine."""

    bmcs: IpmiSimPeer
    user: str
    password: str

    def endpoint(self, name: str) -> tuple[str, int]:
        """The machine's BMC (address, UDP port)."""
        return self.bmcs.endpoints[name]

    def _login(self) -> dict[str, Any]:
        # What a client and a credentials block of the lab both carry.
        return {"user": self.user, "password": self.password, "timeout": 2.0}

    def client(self, name: str, **overrides: Any) -> IpmiClient:
        """An IPMI client for one machine's BMC (overrides: any constructor argument)."""
        address, port = self.endpoint(name)
        return IpmiClient(**{"address": address, "port": port, **self._login(), **overrides})

    def credentials(self, **overrides: Any) -> IpmiCredentials:
        """A credentials block for the lab (ports differ per machine: tasks pass ``port``)."""
        return IpmiCredentials(**{**self._login(), **overrides})

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
    bmcs = IpmiSimPeer(user=user, password=password)
    with start_machines(
        state_dir,
        peers=[*more_peers, bmcs],
        count=count,
        subnet=subnet,
        shutdown_s=shutdown_s,
        boot_s=boot_s,
        speed=speed,
        boot_overrides=boot_overrides,
    ) as lab:
        names = list(lab.core.machines)
        yield IpmiLab(lab=lab, names=names, bmcs=bmcs, user=user, password=password)


@pytest.fixture
def ipmi_lab(tmp_path: Path) -> Iterator[IpmiLab]:
    """Two lab machines with ipmi_sim BMCs."""
    if shutil.which("ipmi_sim") is None:
        pytest.skip("ipmi_sim not installed (apt package openipmi)")
    with start_ipmi_lab(tmp_path / "ipmi-lab", count=2) as lab:
        yield lab
