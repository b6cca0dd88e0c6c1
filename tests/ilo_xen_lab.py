"""A reboot lab with HPE iLOs and a fake XenAPI pool master, for tests (no tests here).

.. code-block:: python

    pytest_plugins = ["tests.ilo_xen_lab"]  # the ilo_xen fixture

    async def test_x(ilo_xen):
        name = ilo_xen.names[0]
        address, port = ilo_xen.ilo.endpoints[name]
        await ilo_xen.ilo_credentials().asave("ilo", overwrite=True)
        ...
        await ilo_xen.wait_cycle(name, before)

Machines boot in a fraction of a second (``speed``), so a whole reboot takes
well under a second of real time.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blocks.ilo import IloCredentials
from blocks.xen import XenCredentials
from lab.machines import MachineFaults, MachineLab
from lab.machines.ilo import IloPeer
from lab.machines.xen_fake import XenApiPeer
from tests.helpers import start_machines

ILO_USER = "Administrator"
XEN_USER = "root"
SPEED = 10.0  # shutdown 0.1 s, boot 0.2 s of real time


@dataclass
class IloXenLab:
    """A running lab: machines, their iLOs and one XenAPI pool master.

    Attributes:
        lab: The machine lab (act, snapshot, set_faults).
        ilo: The iLO peer (``endpoints``, ``ca_path``, ``bmc(name)``).
        xen: The XenAPI peer (``url``, ``vm_uuids``, ``open_sessions``).
        ilo_password: The iLOs' password.
        xen_password: The pool's root password.
    """

    lab: MachineLab
    ilo: IloPeer
    xen: XenApiPeer
    ilo_password: str
    xen_password: str
    ilo_user: str = ILO_USER
    xen_user: str = XEN_USER

    @property
    def names(self) -> list[str]:
        """Machine names, in order."""
        return list(self.lab.core.machines)

    def ilo_credentials(self, *, password: str | None = None) -> IloCredentials:
        """An ``IloCredentials`` block trusting the lab CA."""
        assert self.ilo.ca_path is not None
        return IloCredentials(
            username=ILO_USER,
            password=password or self.ilo_password,
            ca_bundle=str(self.ilo.ca_path),
            connect_timeout=2.0,
            read_timeout=5.0,
        )

    def xen_credentials(self, *, password: str | None = None) -> XenCredentials:
        """A ``XenCredentials`` block for the pool master (lab CA trusted when https)."""
        ca = str(self.xen.ca_path) if self.xen.ca_path is not None else None
        return XenCredentials(
            url=self.xen.url,
            username=XEN_USER,
            password=password or self.xen_password,
            ca_bundle=ca,
            timeout_s=5.0,
        )

    def snapshot(self, name: str) -> dict[str, Any]:
        """One machine's state."""
        return self.lab.snapshot(name)

    def set_faults(self, name: str, *ignore_sources: str) -> None:
        """Make a machine ignore commands from these sources (``ilo-graceful``, ``xen-clean``)."""
        self.lab.set_faults(name, MachineFaults(ignore_sources=set(ignore_sources)))

    def events(self, name: str, since: int = 0) -> list[tuple[str, str]]:
        """``(event, source)`` pairs of a machine, from index ``since``."""
        return [(e["event"], e["source"]) for e in self.snapshot(name)["events"][since:]]

    async def wait_cycle(self, name: str, cycles_before: int, *, timeout_s: float = 10.0) -> None:
        """Wait until the machine went down and answers again (``cycles`` grew)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            snap = self.snapshot(name)
            if snap["cycles"] > cycles_before and snap["answering"]:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{name} did not reboot within {timeout_s} s: {self.snapshot(name)}")


@contextmanager
def ilo_xen_lab(
    state_dir: Path,
    *,
    count: int = 2,
    speed: float = SPEED,
    xen_tls: bool = False,
    clean_shutdown_timeout_s: float = 1200.0,
) -> Iterator[IloXenLab]:
    """Start machines with an iLO each and one XenAPI pool master serving them as VMs.

    Args:
        state_dir: Lab state (certificates).
        count: Machines.
        speed: Lab seconds per real second.
        xen_tls: Serve XenAPI over HTTPS (lab CA) instead of HTTP.
        clean_shutdown_timeout_s: Lab seconds before an ignored clean shutdown
            fails with VM_SHUTDOWN_TIMEOUT.

    Yields:
        The running lab.
    """
    ilo_password = "ilo-" + secrets.token_hex(10)
    xen_password = "xen-" + secrets.token_hex(10)
    ilo = IloPeer(username=ILO_USER, password=ilo_password)
    xen = XenApiPeer(
        username=XEN_USER,
        password=xen_password,
        tls=xen_tls,
        clean_shutdown_timeout_s=clean_shutdown_timeout_s,
    )
    with start_machines(
        state_dir, peers=[ilo, xen], count=count, shutdown_s=1.0, boot_s=2.0, speed=speed
    ) as lab:
        yield IloXenLab(
            lab=lab, ilo=ilo, xen=xen, ilo_password=ilo_password, xen_password=xen_password
        )


@pytest.fixture()
def ilo_xen(tmp_path: Path) -> Iterator[IloXenLab]:
    """Two machines with iLOs and a plain-HTTP XenAPI pool master."""
    with ilo_xen_lab(tmp_path / "lab") as running:
        yield running


@pytest.fixture()
def ilo_xen_tls(tmp_path: Path) -> Iterator[IloXenLab]:
    """One machine with an iLO and an HTTPS XenAPI pool master (lab CA)."""
    with ilo_xen_lab(tmp_path / "lab-tls", count=1, xen_tls=True) as running:
        yield running
