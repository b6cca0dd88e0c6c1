"""The address layout and settings of the discovery benchmark (shared by parent and children).

Every address is loopback and lives only inside the benchmark's own network
namespace. The LAN range is ``8 * bmcs`` addresses starting at ``LAN_BASE``:

- first ``2 * bmcs`` block: lab iDRACs on its first ``bmcs`` hosts, the rest closed;
- second ``bmcs`` block: hung BMCs on ``base + 2n + 1 .. base + 3n``, the rest closed;
- the upper half (``4 * bmcs``): black-holed (SYNs dropped by iptables).

With 128 BMCs that is a /22: 128 iDRACs, 128 hung, 256 closed, 512 black-holed.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAN_BASE = "127.20.0.0"
WIDE_BASE = "127.30.0.0"
PORT = 443
BASELINE_THREADS = 20


@dataclass(frozen=True)
class Plan:
    """What one benchmark run scans, and with which scanner settings."""

    bmcs: int
    wide_prefix: int
    settings: dict[str, Any] = field(default_factory=dict)
    port: int = PORT
    lan_base: str = LAN_BASE
    wide_base: str = WIDE_BASE
    baseline_threads: int = BASELINE_THREADS

    @property
    def lan_size(self) -> int:
        """Addresses in the LAN range (8 per iDRAC)."""
        return 8 * self.bmcs

    @property
    def lan_cidr(self) -> ipaddress.IPv4Network:
        """The whole LAN range as a network."""
        return _net(self.lan_base, self.lan_size)

    @property
    def fleet_subnet(self) -> str:
        """Subnet the lab fleet takes its first ``bmcs`` hosts from (base+1 ...)."""
        return str(_net(self.lan_base, 2 * self.bmcs))

    @property
    def hung_addresses(self) -> list[str]:
        """Addresses of BMCs that accept TCP and never answer."""
        first = int(ipaddress.IPv4Address(self.lan_base)) + 2 * self.bmcs + 1
        return [str(ipaddress.IPv4Address(first + i)) for i in range(self.bmcs)]

    @property
    def blackhole_cidr(self) -> ipaddress.IPv4Network:
        """Upper half of the LAN range: SYNs dropped."""
        upper = int(ipaddress.IPv4Address(self.lan_base)) + 4 * self.bmcs
        return _net(str(ipaddress.IPv4Address(upper)), 4 * self.bmcs)

    @property
    def wide_cidr(self) -> ipaddress.IPv4Network:
        """The all-black-holed wide range."""
        return ipaddress.ip_network(f"{self.wide_base}/{self.wide_prefix}")

    @property
    def closed_count(self) -> int:
        """Addresses of the LAN range where nothing listens."""
        return self.lan_size // 2 - 2 * self.bmcs

    def category(self, address: str) -> str:
        """What the benchmark put at an address of the LAN or wide range.

        Args:
            address: An address the scan probed.

        Returns:
            ``idrac``, ``hung``, ``closed`` or ``black-holed``.
        """
        addr = ipaddress.IPv4Address(address)
        if addr in self.blackhole_cidr or addr in self.wide_cidr:
            return "black-holed"
        offset = int(addr) - int(ipaddress.IPv4Address(self.lan_base))
        if 1 <= offset <= self.bmcs:
            return "idrac"
        if 2 * self.bmcs + 1 <= offset <= 3 * self.bmcs:
            return "hung"
        return "closed"

    def lan_range(self) -> str:
        """The LAN range as an inclusive dash range (network and broadcast included)."""
        net = self.lan_cidr
        return f"{net.network_address}-{net.broadcast_address}"

    def wide_range(self) -> str:
        """The wide range as an inclusive dash range."""
        net = self.wide_cidr
        return f"{net.network_address}-{net.broadcast_address}"

    def save(self, path: Path) -> None:
        """Write the plan as JSON.

        Args:
            path: Destination file.
        """
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Plan:
        """Read a plan written by :meth:`save`.

        Args:
            path: The JSON file.

        Returns:
            The plan.
        """
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _net(base: str, size: int) -> ipaddress.IPv4Network:
    prefix = 32 - int(math.log2(size))
    if 2 ** (32 - prefix) != size:
        raise ValueError(f"{size} is not a power of two")
    return ipaddress.ip_network(f"{base}/{prefix}")


def make_plan(*, quick: bool, settings: dict[str, Any]) -> Plan:
    """The full (/22 + /16) or quick (/24 + /20) layout.

    Args:
        quick: The small sanity run.
        settings: Scanner settings (the discovery flow's defaults).

    Returns:
        The plan.
    """
    if quick:
        return Plan(bmcs=32, wide_prefix=20, settings=settings)
    return Plan(bmcs=128, wide_prefix=16, settings=settings)
