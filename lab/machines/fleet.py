"""A whole reboot lab: machines with every reboot path, and the files to use them.

Used by ``rackflow lab up`` and by the flow tests (tests/reboot_lab.py), so
the composition exists once. Every machine ``m1.lab.test``... gets:

- a real OpenSSH ``sshd`` whose ``reboot`` takes the machine down
  (:class:`~lab.machines.sshd.SshdPeer`), trusting one client key;
- an ``ipmi_sim`` BMC (:class:`~lab.machines.ipmi.IpmiSimPeer`);
- an outlet on one APC PDU served by ``snmpd`` (:class:`~lab.machines.pdu.PduPeer`);
- an HPE iLO (Redfish over HTTPS, lab CA; :class:`~lab.machines.ilo.IloPeer`);
- a VM on one XenAPI pool master (:class:`~lab.machines.xen_fake.XenApiPeer`);

plus one fake Bugzilla (:class:`~lab.machines.bugzilla.BugzillaFake`).

.. code-block:: python

    with start_reboot_lab(RebootLabSpec(machines=2), state_dir) as fleet:
        files = fleet.write_files(state_dir / "access")   # machines.yaml, SSH key, known_hosts
        fleet.entry("m1.lab.test").ipmi                    # address, port, credentials block

Secrets are fresh per start and live in :attr:`RebootFleet.secrets`; the
machine-access file names only blocks (:data:`BLOCKS`), never a secret.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.inventory import access_file
from clients.inventory.access import MachineEntry
from lab.machines.bugzilla import BugzillaFake
from lab.machines.ilo import IloPeer
from lab.machines.ipmi import IpmiSimPeer
from lab.machines.lab import MachineLab
from lab.machines.pdu import PduPeer
from lab.machines.sshd import SSHD, SshdPeer, generate_key_pair
from lab.machines.xen_fake import XenApiPeer

__all__ = [
    "BLOCKS",
    "RebootLabError",
    "BUG_COMPONENT",
    "BUG_PRODUCT",
    "BUG_PRODUCTS",
    "ILO_USER",
    "IPMI_USER",
    "XEN_USER",
    "RebootFleet",
    "RebootLabFiles",
    "RebootLabSecrets",
    "RebootLabSpec",
    "missing_tools",
    "start_reboot_lab",
]

IPMI_USER = "rackadmin"
ILO_USER = "Administrator"
XEN_USER = "root"
BUG_PRODUCT = "Datacenter"
BUG_COMPONENT = "Reboots"
BUG_PRODUCTS = {BUG_PRODUCT: [BUG_COMPONENT, "Hardware"]}

BLOCKS = {
    "ssh": "lab-ssh",
    "ipmi": "lab-ipmi",
    "pdu": "lab-pdu",
    "ilo": "lab-ilo",
    "xen": "lab-xen",
    "bugzilla": "lab-bugs",
}
"""Credentials block the machine-access file names for each path."""


class RebootLabError(RuntimeError):
    """The reboot lab did not start (a peer failed); the message says which and why."""


# Program -> apt package, for the message when one is missing.
_TOOLS = {"ipmi_sim": "openipmi", "snmpd": "snmpd", SSHD: "openssh-server"}


def missing_tools() -> list[str]:
    """Programs the reboot lab needs that are not installed, as ``program (apt package)``.

    Returns:
        Empty when ipmi_sim, snmpd and sshd are all there.
    """
    found = {
        "ipmi_sim": shutil.which("ipmi_sim"),
        "snmpd": shutil.which("snmpd", path="/usr/sbin:/usr/bin:/sbin"),
        SSHD: SSHD if os.access(SSHD, os.X_OK) else None,
    }
    return [f"{tool} (apt package {_TOOLS[tool]})" for tool, path in found.items() if not path]


@dataclass(frozen=True)
class RebootLabSpec:
    """What to start.

    Attributes:
        machines: How many machines (``m1.lab.test``...).
        subnet: Loopback subnet of the machines (their iLOs get the same host
            part in 127.79.0.0/16).
        shutdown_s: Lab seconds an OS shutdown takes.
        boot_s: Lab seconds from power on to answering. The default outlasts
            the reboot chain's 5 s ping interval, so a reboot is always seen.
        speed: Lab seconds per real second.
        xen_tls: Serve XenAPI over HTTPS (lab CA) rather than plain HTTP.
    """

    machines: int = 3
    subnet: str = "127.78.100.0/24"
    shutdown_s: float = 3.0
    boot_s: float = 15.0
    speed: float = 1.0
    xen_tls: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.machines <= 250:
            raise ValueError(f"machines must be 1-250, got {self.machines}")
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed}")


@dataclass(frozen=True, repr=False)
class RebootLabSecrets:
    """The lab's secrets, fresh per start (repr shows none of them)."""

    private_key: str
    public_key: str
    ipmi_password: str
    ro_community: str
    rw_community: str
    ilo_password: str
    xen_password: str

    @classmethod
    def generate(cls) -> RebootLabSecrets:
        """Fresh random secrets (the IPMI password fits IPMI 2.0's 20 bytes)."""
        private, public = generate_key_pair("rackflow-lab")
        token = secrets.token_hex
        return cls(
            private_key=private, public_key=public, ipmi_password="pw-" + token(8),
            ro_community="ro-" + token(6), rw_community="rw-" + token(6),
            ilo_password="ilo-" + token(10), xen_password="xen-" + token(10),
        )  # fmt: skip

    def __repr__(self) -> str:
        return "RebootLabSecrets(...)"


@dataclass(frozen=True)
class RebootLabFiles:
    """What :meth:`RebootFleet.write_files` wrote."""

    access_file: Path
    key_file: Path
    known_hosts_file: Path


@dataclass
class RebootFleet:
    """A running reboot lab: the machine lab, every peer, and its secrets."""

    spec: RebootLabSpec
    lab: MachineLab
    sshd: SshdPeer
    ipmi: IpmiSimPeer
    pdu: PduPeer
    ilo: IloPeer
    xen: XenApiPeer
    bugzilla: BugzillaFake
    secrets: RebootLabSecrets
    ssh_user: str
    names: list[str] = field(default_factory=list)

    @property
    def ca_path(self) -> Path:
        """The lab CA that signed the iLO (and HTTPS XenAPI) certificates."""
        assert self.ilo.ca_path is not None  # set when the peer started
        return self.ilo.ca_path

    def secret_values(self) -> list[str]:
        """Every secret of the lab (to check logs and output for leaks)."""
        s = self.secrets
        key_body = s.private_key.splitlines()[1]
        return [
            s.ipmi_password, s.ro_community, s.rw_community, s.ilo_password, s.xen_password,
            self.bugzilla.api_key, key_body,
        ]  # fmt: skip

    def known_hosts(self) -> str:
        """known_hosts content listing every machine's sshd host key."""
        return self.sshd.known_hosts()

    def entry(self, name: str) -> MachineEntry:
        """One machine with every reboot path, naming the :data:`BLOCKS`."""
        address, ssh_port = self.sshd.endpoints[name]
        ipmi_address, ipmi_port = self.ipmi.endpoints[name]
        pdu_host, pdu_port = self.pdu.endpoint
        ilo_address, ilo_port = self.ilo.endpoints[name]
        data: dict[str, Any] = {
            "name": name,
            "address": address,
            "ping": {"method": "tcp", "port": self.lab.ping_port(name)},
            "ssh": {"host": address, "port": ssh_port, "credentials": BLOCKS["ssh"]},
            "ipmi": {"address": ipmi_address, "port": ipmi_port, "credentials": BLOCKS["ipmi"]},
            "pdu": {
                "host": pdu_host, "port": pdu_port, "credentials": BLOCKS["pdu"], "model": "apc",
                "outlet": str(self.names.index(name) + 1),
            },
            "ilo": {"address": ilo_address, "port": ilo_port, "credentials": BLOCKS["ilo"]},
            "xen": {"vm_uuid": self.xen.vm_uuids[name], "credentials": BLOCKS["xen"]},
            "bugzilla": {
                "product": BUG_PRODUCT, "component": BUG_COMPONENT,
                "credentials": BLOCKS["bugzilla"],
            },
        }  # fmt: skip
        return MachineEntry.model_validate(data)

    def entries(self) -> list[MachineEntry]:
        """Every machine's entry, in order."""
        return [self.entry(name) for name in self.names]

    def write_files(self, directory: Path) -> RebootLabFiles:
        """Write the machine-access YAML, the SSH client key and known_hosts.

        Args:
            directory: Where (created; files replaced). The key file is mode 0600.

        Returns:
            The paths written.
        """
        directory.mkdir(parents=True, exist_ok=True)
        files = RebootLabFiles(
            access_file=directory / "machines.yaml",
            key_file=directory / "id_ed25519",
            known_hosts_file=directory / "known_hosts",
        )
        files.access_file.write_text(access_file.dump(self.entries()))
        files.known_hosts_file.write_text(self.known_hosts())
        files.key_file.unlink(missing_ok=True)
        # Created 0600 from the start: never readable by others, not even briefly.
        fd = os.open(files.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.secrets.private_key)
        return files


@contextmanager
def start_reboot_lab(spec: RebootLabSpec, state_dir: Path) -> Iterator[RebootFleet]:
    """Start the machines, their peers and the Bugzilla; stop them all on exit.

    Args:
        spec: What to start.
        state_dir: Where the peers keep configs, keys, certificates and logs
            (no blanks: snmpd's pass_persist splits on them).

    Yields:
        The running lab.

    Raises:
        RebootLabError: A peer did not start (e.g. ipmi_sim, snmpd or sshd missing,
            a state directory with blanks); everything started is stopped again.
    """
    lab_secrets = RebootLabSecrets.generate()
    specs = MachineLab.generate(
        spec.machines, subnet=spec.subnet, shutdown_s=spec.shutdown_s, boot_s=spec.boot_s
    )
    names = [s.name for s in specs]
    sshd = SshdPeer(authorized_keys=[lab_secrets.public_key])
    pdu = PduPeer(
        model="apc", outlets={i: n for i, n in enumerate(names, 1)},
        rocommunity=lab_secrets.ro_community, rwcommunity=lab_secrets.rw_community,
    )  # fmt: skip
    ipmi = IpmiSimPeer(user=IPMI_USER, password=lab_secrets.ipmi_password)
    ilo = IloPeer(username=ILO_USER, password=lab_secrets.ilo_password)
    xen = XenApiPeer(username=XEN_USER, password=lab_secrets.xen_password, tls=spec.xen_tls)
    lab = MachineLab(
        machines=specs, state_dir=Path(state_dir), speed=spec.speed,
        peers=[sshd, pdu, ipmi, ilo, xen],
    )  # fmt: skip
    with ExitStack() as stack:
        try:
            stack.enter_context(lab)
            bugzilla = stack.enter_context(BugzillaFake(products=BUG_PRODUCTS))
        except (RuntimeError, ValueError, OSError) as exc:
            raise RebootLabError(f"reboot lab did not start: {exc}") from exc
        yield RebootFleet(
            spec=spec, lab=lab, sshd=sshd, ipmi=ipmi, pdu=pdu, ilo=ilo, xen=xen,
            bugzilla=bugzilla, secrets=lab_secrets, ssh_user=getpass.getuser(), names=names,
        )  # fmt: skip
