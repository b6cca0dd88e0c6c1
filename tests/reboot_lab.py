"""A whole reboot lab for flow tests: machines with sshd, IPMI BMCs, an APC PDU, a Bugzilla.

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

from blocks.inventory import InventoryStore
from blocks.ipmi import IpmiCredentials
from blocks.snmp import SnmpCredentials
from clients.inventory import Inventory, MachineEntry
from lab.machines.bugzilla import BugzillaFake
from lab.machines.ipmi import IpmiSimPeer
from lab.machines.pdu import PduPeer
from tests.bugzilla_lab import COMPONENT, PRODUCT, PRODUCTS, save_bugzilla_block
from tests.helpers import free_port
from tests.ipmi_lab import IPMI_USER, make_ipmi_password
from tests.ssh_lab import SshLab, make_key_pair, start_ssh_lab

__all__ = ["RebootLab", "save_blocks", "save_ipmi_block", "start_reboot_lab", "unreachable_pdu"]


@dataclass
class RebootLab:
    """The running lab and the names of everything saved for it."""

    ssh: SshLab
    ipmi: IpmiSimPeer
    pdu: PduPeer
    bugzilla: BugzillaFake
    inventory_block: str
    inventory_url: str
    ipmi_password: str
    rw_community: str
    secrets: list[str]  # every secret, to check logs for leaks

    @property
    def names(self) -> list[str]:
        """Machine FQDNs."""
        return self.ssh.names

    def snapshot(self, name: str) -> dict[str, Any]:
        """A machine's state (answering, cycles, events)."""
        return self.ssh.lab.snapshot(name)

    def entry(self, name: str, **paths: Any) -> MachineEntry:
        """The inventory entry of one machine: every path, ``paths`` overriding (None drops)."""
        address = self.ssh.address(name)
        index = self.names.index(name) + 1
        ipmi_address, ipmi_port = self.ipmi.endpoints[name]
        pdu_host, pdu_port = self.pdu.endpoint
        data: dict[str, Any] = {
            "name": name,
            "address": address,
            "ping": {"method": "tcp", "port": self.ssh.ping_port(name)},
            "ssh": {"host": address, "port": self.ssh.ssh_port(name), "credentials": "lab-ssh"},
            "ipmi": {"address": ipmi_address, "port": ipmi_port, "credentials": "lab-ipmi"},
            "pdu": {
                "host": pdu_host, "port": pdu_port, "credentials": "lab-pdu", "model": "apc",
                "outlet": str(index),
            },
            "bugzilla": {"product": PRODUCT, "component": COMPONENT, "credentials": "lab-bugs"},
        }  # fmt: skip
        data.update(paths)
        return MachineEntry.model_validate({k: v for k, v in data.items() if v is not None})

    def register(self, *entries: MachineEntry) -> None:
        """Write entries to the lab's inventory (replacing those machines' paths)."""
        with Inventory(url=self.inventory_url) as inventory:
            inventory.register(entries)


async def save_blocks(lab: RebootLab, state_dir: Path) -> None:
    """Save every block the lab's machines name, with the right credentials."""
    await lab.ssh.save_credentials("lab-ssh")
    await save_ipmi_block(lab, "lab-ipmi")
    await SnmpCredentials(
        version="2c", community=SecretStr(lab.rw_community), timeout=1.0, retries=0
    ).asave("lab-pdu", overwrite=True)
    await save_bugzilla_block(url=lab.bugzilla.url, api_key=lab.bugzilla.api_key, name="lab-bugs")
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

    Call ``await save_blocks(lab, state_dir)`` (needs ``prefect_harness``) after entering.
    """
    ipmi_password = make_ipmi_password()
    ro, rw = "ro-" + secrets.token_hex(6), "rw-" + secrets.token_hex(6)
    ipmi = IpmiSimPeer(user=IPMI_USER, password=ipmi_password)
    names = [f"m{i}.lab.test" for i in range(1, count + 1)]
    pdu = PduPeer(
        model="apc", outlets={i: n for i, n in enumerate(names, 1)}, rocommunity=ro,
        rwcommunity=rw,
    )  # fmt: skip
    key = make_key_pair()
    with (
        start_ssh_lab(
            state_dir / "machines", count=count, subnet="127.78.60.0/24", shutdown_s=0.3,
            boot_s=0.6, more_peers=[pdu, ipmi], key=key,
        ) as ssh,
        BugzillaFake(products=PRODUCTS) as bugzilla,
    ):  # fmt: skip
        lab = RebootLab(
            ssh=ssh, ipmi=ipmi, pdu=pdu, bugzilla=bugzilla,
            inventory_block=f"reboot-inv-{secrets.token_hex(3)}",
            inventory_url=f"sqlite:///{state_dir / 'inventory.db'}",
            ipmi_password=ipmi_password, rw_community=rw,
            secrets=[ipmi_password, ro, rw, bugzilla.api_key, key.private.splitlines()[1]],
        )  # fmt: skip
        lab.register(*(lab.entry(n) for n in names))
        yield lab


def unreachable_pdu(lab: RebootLab, name: str) -> dict[str, Any]:
    """A PDU path for ``name`` pointing at a UDP port nothing answers on."""
    entry = lab.entry(name).pdu
    assert entry is not None
    return {**entry.model_dump(), "host": "127.0.0.1", "port": free_port()}
