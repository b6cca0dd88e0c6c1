"""Parse and validate the address ranges and ports an operator asks to scan.

Everything here is checked before a single packet is sent: a malformed,
reversed, IPv6 or oversized range raises :class:`PreconditionError` naming
the bad value.

Accepted forms (any mix, as a list or separated by commas/whitespace):

- ``10.0.0.0/24``: CIDR; network and broadcast addresses are left out
  (except for /31 and /32, which have none).
- ``10.0.0.10-10.0.1.20``: a dash range of full addresses, inclusive.
- ``10.0.0.10-20``: a dash range in the last octet, inclusive.
- ``10.0.0.7``: a single address.

Ports: integers 1-65535 or ``"8443-8450"`` ranges (the macOS lab puts one BMC
on each port of 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clients.errors import PreconditionError

MAX_ADDRESSES = 65_536
_SPLIT = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Targets:
    """A validated scan: unique addresses (in the order given) times ports."""

    addresses: tuple[str, ...]
    ports: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.addresses) * len(self.ports)

    def endpoints(self) -> list[tuple[str, int]]:
        """Every (address, port) pair, addresses major."""
        return [(a, p) for a in self.addresses for p in self.ports]


def _split(ranges: str | Sequence[str]) -> list[str]:
    items = [ranges] if isinstance(ranges, str) else list(ranges)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise PreconditionError(subject="ranges", reason=f"{item!r} is not a string")
        out.extend(part for part in _SPLIT.split(item.strip()) if part)
    if not out:
        raise PreconditionError(subject="ranges", reason="no address range given")
    return out


def _ipv4(text: str, whole: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise PreconditionError(
            subject="ranges", reason=f"{whole!r}: {text!r} is not an IPv4 address"
        ) from None
    if addr.version != 4:
        raise PreconditionError(
            subject="ranges", reason=f"{whole!r}: IPv6 is not supported yet (IPv4 only)"
        )
    assert isinstance(addr, ipaddress.IPv4Address)
    return addr


def _count_range(item: str) -> tuple[int, int]:
    """Return the first and last address (as ints) of one range item."""
    if ":" in item:
        raise PreconditionError(
            subject="ranges", reason=f"{item!r}: IPv6 is not supported yet (IPv4 only)"
        )
    if "/" in item:
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            hint = ""
            try:
                hint = f" (did you mean {ipaddress.ip_network(item, strict=False)}?)"
            except ValueError:
                pass
            raise PreconditionError(
                subject="ranges", reason=f"{item!r} is not a valid CIDR: {exc}{hint}"
            ) from None
        first, last = int(net.network_address), int(net.broadcast_address)
        if net.prefixlen < 31:
            first, last = first + 1, last - 1
        return first, last
    if "-" in item:
        left, _, right = item.partition("-")
        start = _ipv4(left, item)
        if right.isdigit() and "." not in right:
            octet = int(right)
            if octet > 255:
                raise PreconditionError(
                    subject="ranges", reason=f"{item!r}: last octet {octet} is above 255"
                )
            end = ipaddress.IPv4Address((int(start) & 0xFFFFFF00) | octet)
        else:
            end = _ipv4(right, item)
        if int(end) < int(start):
            raise PreconditionError(
                subject="ranges", reason=f"{item!r} is reversed: {end} comes before {start}"
            )
        return int(start), int(end)
    addr = _ipv4(item, item)
    return int(addr), int(addr)


def parse_ports(ports: int | str | Sequence[int | str]) -> tuple[int, ...]:
    """Validate ports; expand ``"a-b"`` ranges; drop duplicates.

    Args:
        ports: One port, or a list of ports and ``"first-last"`` ranges.

    Returns:
        The unique ports in the order given.

    Raises:
        PreconditionError: A port is not an integer in 1-65535 or a range is reversed.
    """
    items: Iterable[int | str] = [ports] if isinstance(ports, int | str) else ports
    out: dict[int, None] = {}
    for item in items:
        text = str(item).strip()
        first_s, dash, last_s = text.partition("-")
        try:
            first = int(first_s)
            last = int(last_s) if dash else first
        except ValueError:
            raise PreconditionError(subject="ports", reason=f"{item!r} is not a port") from None
        if not (1 <= first <= 65535 and 1 <= last <= 65535):
            raise PreconditionError(subject="ports", reason=f"{item!r} is outside 1-65535")
        if last < first:
            raise PreconditionError(subject="ports", reason=f"{item!r} is reversed")
        out.update(dict.fromkeys(range(first, last + 1)))
    if not out:
        raise PreconditionError(subject="ports", reason="no port given")
    return tuple(out)


def parse_targets(
    ranges: str | Sequence[str],
    ports: int | str | Sequence[int | str] = 443,
    *,
    allow_large: bool = False,
    max_addresses: int = MAX_ADDRESSES,
) -> Targets:
    """Validate and expand the ranges to scan.

    Args:
        ranges: Ranges in any accepted form (see the module docstring).
        ports: Ports to probe on every address.
        allow_large: Permit more than ``max_addresses`` addresses.
        max_addresses: The limit without ``allow_large``.

    Returns:
        The unique addresses and ports.

    Raises:
        PreconditionError: Naming the bad value, for any malformed, reversed,
            IPv6 or too large input.
    """
    spans = [(_count_range(item), item) for item in _split(ranges)]
    port_list = parse_ports(ports)
    total = sum(last - first + 1 for (first, last), _ in spans)
    if total > max_addresses and not allow_large:
        raise PreconditionError(
            subject="ranges",
            reason=(
                f"{total:,} addresses is more than {max_addresses:,}; "
                "pass allow_large=True to scan that many"
            ),
        )
    seen: dict[int, None] = {}
    for (first, last), _ in spans:
        seen.update(dict.fromkeys(range(first, last + 1)))
    if not seen:
        raise PreconditionError(subject="ranges", reason="the ranges contain no host address")
    addresses = tuple(str(ipaddress.IPv4Address(n)) for n in seen)
    return Targets(addresses=addresses, ports=port_list)
