"""Range and port validation: every bad input names the bad value."""

import pytest

from clients.errors import PreconditionError
from clients.targets import parse_ports, parse_targets


def test_cidr_excludes_network_and_broadcast():
    t = parse_targets("127.10.1.0/29")
    assert t.addresses == tuple(f"127.10.1.{i}" for i in range(1, 7))
    assert t.ports == (443,)


def test_slash_31_and_32_keep_their_addresses():
    assert parse_targets("127.10.1.4/31").addresses == ("127.10.1.4", "127.10.1.5")
    assert parse_targets("127.10.1.9/32").addresses == ("127.10.1.9",)


def test_dash_ranges_single_addresses_and_duplicates_mixed():
    t = parse_targets(["127.10.0.1-3", "127.10.0.2-127.10.0.5, 127.10.0.9", "127.10.0.1"])
    assert t.addresses == (
        "127.10.0.1",
        "127.10.0.2",
        "127.10.0.3",
        "127.10.0.4",
        "127.10.0.5",
        "127.10.0.9",
    )


def test_dash_range_crossing_octets():
    t = parse_targets("127.10.0.254-127.10.1.1")
    assert t.addresses == ("127.10.0.254", "127.10.0.255", "127.10.1.0", "127.10.1.1")


def test_ports_ranges_and_endpoints():
    t = parse_targets("127.0.0.1", ["8443-8445", 8443, "9000"])
    assert t.ports == (8443, 8444, 8445, 9000)
    assert t.endpoints()[:2] == [("127.0.0.1", 8443), ("127.0.0.1", 8444)]
    assert len(t) == 4


@pytest.mark.parametrize(
    ("ranges", "fragment"),
    [
        ("127.10.0.300", "'127.10.0.300' is not an IPv4 address"),
        ("127.10.0.9-127.10.0.2", "'127.10.0.9-127.10.0.2' is reversed"),
        ("127.10.0.9-2", "'127.10.0.9-2' is reversed"),
        ("127.10.0.1-256", "last octet 256 is above 255"),
        ("fd00::1", "IPv6 is not supported yet"),
        ("fd00::/64", "IPv6 is not supported yet"),
        ("127.10.0.5/24", "did you mean 127.10.0.0/24"),
        ("127.10.0.0/33", "'127.10.0.0/33' is not a valid CIDR"),
        ("banana", "'banana' is not an IPv4 address"),
        ("", "no address range given"),
        ([], "no address range given"),
    ],
)
def test_bad_ranges_name_the_value(ranges, fragment):
    with pytest.raises(PreconditionError) as err:
        parse_targets(ranges)
    assert fragment in str(err.value)
    assert err.value.subject == "ranges"


def test_more_than_65536_needs_allow_large():
    with pytest.raises(PreconditionError, match="131,070 addresses is more than 65,536"):
        parse_targets("127.20.0.0/15")
    assert len(parse_targets("127.20.0.0/16").addresses) == 65_534
    assert len(parse_targets("127.20.0.0/15", allow_large=True).addresses) == 131_070


@pytest.mark.parametrize(
    ("ports", "fragment"),
    [
        (0, "outside 1-65535"),
        ("70000", "outside"),
        ("x", "is not a port"),
        ("9-3", "reversed"),
        ([], "no port given"),
    ],
)
def test_bad_ports(ports, fragment):
    with pytest.raises(PreconditionError) as err:
        parse_ports(ports)
    assert fragment in str(err.value)
    assert err.value.subject == "ports"
