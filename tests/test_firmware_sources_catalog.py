"""Dell catalog parsing, package choice by model and component, and mirror rewriting."""

from __future__ import annotations

import gzip

import pytest

from clients.errors import PreconditionError, ProtocolError
from clients.firmware import dup_version, parse_catalog, rewrite_base_location, version_key
from clients.redfish.models import ComponentKind
from tests.firmware_fixtures import CATALOG_BYTES, CATALOG_UTF16


def test_catalog_entries_fields_and_kinds() -> None:
    catalog = parse_catalog(CATALOG_BYTES)
    assert catalog.base_location == "downloads.dell.com"
    assert catalog.access_protocols == ("HTTP", "HTTPS")
    assert catalog.version == "24.01.00"
    # InventoryComponent and SoftwareBundle are not packages.
    assert len(catalog.entries) == 9
    bios = catalog.entries[0]
    assert bios.path == "FOLDER10911204M/1/BIOS_8R8XJ_WN64_2.19.1.EXE"
    assert bios.file == "BIOS_8R8XJ_WN64_2.19.1.EXE"
    assert (bios.vendor_version, bios.dell_version, bios.package_id) == ("2.19.1", "A00", "8R8XJ")
    assert bios.name == "Dell Server BIOS PowerEdge R640/R740 Version 2.19.1"  # English Display
    assert (bios.component_type, bios.category, bios.criticality) == ("BIOS", "BI", "2")
    assert bios.component_ids == ("159",) and bios.reboot_required is True
    assert [(m.name, m.system_id, m.brand) for m in bios.models] == [
        ("R640", "0716", "PowerEdge"),
        ("R740", "0715", "PowerEdge"),
    ]
    assert [e.kind for e in catalog.entries] == [
        ComponentKind.BIOS,
        ComponentKind.BIOS,
        ComponentKind.BIOS,
        ComponentKind.IDRAC,
        ComponentKind.CPLD,
        ComponentKind.RAID,
        ComponentKind.NIC,
        ComponentKind.BACKPLANE,
        ComponentKind.OTHER,  # a Windows driver is not firmware
    ]


def test_gzip_and_utf16_catalogs_parse_the_same() -> None:
    plain = parse_catalog(CATALOG_BYTES)
    assert parse_catalog(gzip.compress(CATALOG_BYTES)) == plain
    assert parse_catalog(CATALOG_UTF16) == plain
    assert parse_catalog(gzip.compress(CATALOG_UTF16)) == plain


def test_candidates_by_model_newest_first() -> None:
    catalog = parse_catalog(CATALOG_BYTES)
    r640 = catalog.candidates(component=ComponentKind.BIOS, model="PowerEdge R640")
    assert [e.vendor_version for e in r640] == ["2.19.1", "2.18.1"]
    assert [
        e.vendor_version for e in catalog.candidates(component=ComponentKind.BIOS, model="r740")
    ] == ["2.19.1"]
    by_system_id = catalog.candidates(component=ComponentKind.BIOS, model="0A38")
    assert [e.vendor_version for e in by_system_id] == ["1.10.2"]
    assert catalog.candidates(component=ComponentKind.CPLD, model="PowerEdge R750") == []


def test_candidates_by_component_id_tell_raid_controllers_apart() -> None:
    catalog = parse_catalog(CATALOG_BYTES)
    h740 = catalog.candidates(
        component=ComponentKind.RAID, model="PowerEdge R640", component_id="101548"
    )
    assert [e.vendor_version for e in h740] == ["51.16.0-4076"]
    h330 = catalog.candidates(
        component=ComponentKind.RAID, model="PowerEdge R640", component_id="101522"
    )
    assert h330 == []


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"<Manifest><SoftwareComponent vendorVersion='1'/></Manifest>", "no path"),
        (b"<Catalog/>", "not a Dell catalog"),
        (b"<Manifest>", "malformed XML"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Manifest/>', "DTD"),
        ('<!DOCTYPE x [<!ENTITY a "a">]><Manifest/>'.encode("utf-16"), "DTD"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    ],
)
def test_bad_catalogs_are_protocol_errors(data: bytes, detail: str) -> None:
    with pytest.raises(ProtocolError, match=detail):
        parse_catalog(data, target="http://127.0.0.1/Catalog.xml")


def test_rewrite_base_location_changes_only_the_manifest_tag() -> None:
    out = rewrite_base_location(CATALOG_BYTES, "127.0.0.1:8099/mirror/")
    assert parse_catalog(out).base_location == "127.0.0.1:8099/mirror"
    assert out.replace(
        b'baseLocation="127.0.0.1:8099/mirror"', b'baseLocation="downloads.dell.com"'
    ) == (CATALOG_BYTES)


def test_rewrite_with_scheme_sets_protocols_and_keeps_gzip_and_utf16() -> None:
    packed = gzip.compress(CATALOG_UTF16)
    out = rewrite_base_location(packed, "https://127.0.0.1:8443/repo")
    assert out.startswith(b"\x1f\x8b")
    unpacked = gzip.decompress(out)
    assert unpacked.startswith(b"\xff\xfe")  # still UTF-16 with its BOM
    catalog = parse_catalog(out)
    assert (catalog.base_location, catalog.access_protocols) == ("127.0.0.1:8443/repo", ("HTTPS",))
    assert len(catalog.entries) == 9


def test_rewrite_adds_a_missing_base_location() -> None:
    out = rewrite_base_location(
        b'<?xml version="1.0"?>\n<Manifest version="1"></Manifest>', "mirror.lab"
    )
    assert (
        out == b'<?xml version="1.0"?>\n<Manifest version="1" baseLocation="mirror.lab"></Manifest>'
    )


@pytest.mark.parametrize("base", ["", "   ", "ftp://127.0.0.1/x", "a b"])
def test_rewrite_refuses_bad_bases(base: str) -> None:
    with pytest.raises(PreconditionError):
        rewrite_base_location(CATALOG_BYTES, base)


def test_rewrite_needs_a_manifest() -> None:
    with pytest.raises(ProtocolError, match="no Manifest"):
        rewrite_base_location(b"<Other/>", "127.0.0.1")


@pytest.mark.parametrize(
    ("file", "version"),
    [
        ("BIOS_8R8XJ_WN64_2.19.1.EXE", "2.19.1"),
        ("iDRAC-with-Lifecycle-Controller_Firmware_Y0CWW_WN64_7.10.30.00_A00.EXE", "7.10.30.00"),
        ("FOLDER1/2/BIOS_YNJ0T_WN64_1.10.2_02.EXE", "1.10.2"),
        ("Network_Firmware_3VFTR_LN64_20.36.10.10.BIN", "20.36.10.10"),
        ("SAS-RAID_Firmware_F0PH7_WN64_51.16.0-4076_A16.EXE", "51.16.0-4076"),
        ("firmware.bin", None),
    ],
)
def test_dup_version_from_file_names(file: str, version: str | None) -> None:
    assert dup_version(file) == version


def test_version_key_orders_dell_versions() -> None:
    versions = ["2.9.0", "2.19.1", "2.18.1", "2.19.1.1", "00.1D.6E", "00.1D.70"]
    assert sorted(versions, key=version_key) == [
        "00.1D.6E",
        "00.1D.70",
        "2.9.0",
        "2.18.1",
        "2.19.1",
        "2.19.1.1",
    ]
