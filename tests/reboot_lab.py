"""A whole reboot lab for flow tests: machines with sshd, IPMI BMCs, an APC PDU, iLOs,
a XenAPI pool, a Bugzilla (composed by :mod:`lab.machines.fleet`, as ``rackflow lab up``).

Every machine is registered in an inventory (an ``InventoryStore`` block on a
SQLite file) with all its reboot paths, and every credentials block is saved,
so flows run exactly as they would against a real datacenter. Tests break a
path by saving a block with wrong credentials under the name a machine uses.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from blocks.ilo import IloCredentials
from blocks.inventory import InventoryStore
from blocks.ipmi import IpmiCredentials
from blocks.snmp import SnmpCredentials
from blocks.xen import XenCredentials
from clients.inventory import Inventory, MachineEntry
from flows.reboot_chain import ChainDeadlines, RebootResult
from lab.machines.bugzilla import BugzillaFake
from lab.machines.fleet import BLOCKS, ILO_USER, XEN_USER, RebootFleet, RebootLabSpec
from lab.machines.fleet import start_reboot_lab as start_fleet
from lab.machines.ipmi import IpmiSimPeer
from lab.machines.pdu import PduPeer
from tests.bugzilla_lab import save_bugzilla_block
from tests.helpers import free_port
from tests.ipmi_lab import IPMI_USER
from tests.ssh_lab import KeyPair, SshLab

__all__ = [
    "FAST",
    "RebootLab",
    "result_of",
    "save_blocks",
    "save_ipmi_block",
    "start_reboot_lab",
    "unreachable_pdu",
]


# Deadlines sized for the lab: machines go down in a fraction of a second.
FAST = ChainDeadlines(down_s=3.0, up_s=8.0, poll_s=0.1, method_s=5.0)


def result_of(state: Any) -> RebootResult:
    """The RebootResult a reboot flow's final state carries (whatever the state)."""
    result = state.result(raise_on_failure=False, _sync=True)
    assert isinstance(result, RebootResult), result
    return result


@dataclass
class RebootLab:
    """The running lab and the names of everything saved for it."""

    fleet: RebootFleet
    ssh: SshLab
    inventory_block: str
    inventory_url: str

    @property
    def ipmi(self) -> IpmiSimPeer:
        """The machines' BMCs."""
        return self.fleet.ipmi

    @property
    def pdu(self) -> PduPeer:
        """The APC PDU powering every machine (outlet i: machine i)."""
        return self.fleet.pdu

    @property
    def bugzilla(self) -> BugzillaFake:
        """The fake Bugzilla."""
        return self.fleet.bugzilla

    @property
    def ipmi_password(self) -> str:
        """The BMCs' password."""
        return self.fleet.secrets.ipmi_password

    @property
    def rw_community(self) -> str:
        """The PDU's read-write community."""
        return self.fleet.secrets.rw_community

    @property
    def secrets(self) -> list[str]:
        """Every secret, to check logs for leaks."""
        return self.fleet.secret_values()

    @property
    def names(self) -> list[str]:
        """Machine FQDNs."""
        return self.fleet.names

    def snapshot(self, name: str) -> dict[str, Any]:
        """A machine's state (answering, cycles, events)."""
        return self.fleet.lab.snapshot(name)

    def entry(self, name: str, **paths: Any) -> MachineEntry:
        """The inventory entry of one machine: every path, ``paths`` overriding (None drops)."""
        data = self.fleet.entry(name).model_dump()
        data.update(paths)
        return MachineEntry.model_validate({k: v for k, v in data.items() if v is not None})

    def register(self, *entries: MachineEntry) -> None:
        """Write entries to the lab's inventory (replacing those machines' paths)."""
        with Inventory(url=self.inventory_url) as inventory:
            inventory.register(entries)


async def save_blocks(lab: RebootLab, state_dir: Path) -> None:
    """Save every block the lab's machines name, with the right credentials."""
    fleet, lab_secrets = lab.fleet, lab.fleet.secrets
    await lab.ssh.save_credentials(BLOCKS["ssh"])
    await save_ipmi_block(lab, BLOCKS["ipmi"])
    await SnmpCredentials(
        version="2c", community=SecretStr(lab.rw_community), timeout=1.0, retries=0
    ).asave(BLOCKS["pdu"], overwrite=True)
    await IloCredentials(
        username=ILO_USER, password=SecretStr(lab_secrets.ilo_password),
        ca_bundle=str(fleet.ca_path), connect_timeout=2.0, read_timeout=5.0,
    ).asave(BLOCKS["ilo"], overwrite=True)  # fmt: skip
    await XenCredentials(
        url=fleet.xen.url, username=XEN_USER, password=SecretStr(lab_secrets.xen_password),
        ca_bundle=str(fleet.ca_path), timeout_s=5.0,
    ).asave(BLOCKS["xen"], overwrite=True)  # fmt: skip
    await save_bugzilla_block(
        url=lab.bugzilla.url, api_key=lab.bugzilla.api_key, name=BLOCKS["bugzilla"]
    )
    await InventoryStore(url=SecretStr(lab.inventory_url)).asave(
        lab.inventory_block, overwrite=True
    )


async def save_ipmi_block(lab: RebootLab, name: str, *, password: str | None = None) -> None:
    """An IPMI block for the lab's BMCs (a wrong ``password`` to break the path)."""
    await IpmiCredentials(
        user=IPMI_USER, password=SecretStr(password or lab.ipmi_password), timeout=1.0
    ).asave(name, overwrite=True)


@contextmanager
def start_reboot_lab(state_dir: Path, *, count: int = 3) -> Iterator[RebootLab]:
    """Machines ``m1.lab.test``... with every reboot path, registered and with blocks.

    Machines shut down in 0.3 s and boot in 0.6 s. Call ``await save_blocks(lab,
    state_dir)`` (needs ``prefect_harness``) after entering.
    """
    spec = RebootLabSpec(machines=count, subnet="127.78.60.0/24", shutdown_s=0.3, boot_s=0.6)
    with start_fleet(spec, state_dir / "machines") as fleet:
        key = KeyPair(private=fleet.secrets.private_key, public=fleet.secrets.public_key)
        ssh = SshLab(
            lab=fleet.lab, sshd=fleet.sshd, key=key, user=fleet.ssh_user, names=fleet.names
        )
        lab = RebootLab(
            fleet=fleet, ssh=ssh,
            inventory_block=f"reboot-inv-{secrets.token_hex(3)}",
            inventory_url=f"sqlite:///{state_dir / 'inventory.db'}",
        )  # fmt: skip
        lab.register(*(lab.entry(n) for n in fleet.names))
        yield lab


def unreachable_pdu(lab: RebootLab, name: str) -> dict[str, Any]:
    """A PDU path for ``name`` pointing at a UDP port nothing answers on."""
    entry = lab.entry(name).pdu
    assert entry is not None
    return {**entry.model_dump(), "host": "127.0.0.1", "port": free_port()}
