"""Tests for clients.redfish.models: classification and parsing of Redfish bodies."""

from __future__ import annotations

import pydantic
import pytest

from clients.errors import ProtocolError
from clients.redfish import (
    ComponentKind,
    FirmwareComponent,
    Manager,
    ServiceRoot,
    System,
    classify_component,
)
from clients.redfish.models import dedupe_inventory

T = "https://127.10.0.1:8443/redfish/v1"

IDRAC_ROOT = {
    "@odata.id": "/redfish/v1",
    "Id": "RootService",
    "Product": "Integrated Dell Remote Access Controller",
    "Vendor": "Dell",
    "RedfishVersion": "1.11.0",
    "UUID": "3256444f-c0b7-3880-5210-00484c4c4544",
    "Oem": {"Dell": {"ServiceTag": "8CYCZ23", "ManagerMACAddress": "d0:94:66:2a:11:01"}},
    "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
    "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
    "Systems": {"@odata.id": "/redfish/v1/Systems"},
    "Managers": {"@odata.id": "/redfish/v1/Managers"},
    "UpdateService": {"@odata.id": "/redfish/v1/UpdateService"},
}


# -- classify_component: every FQDD example of IDRAC.md --------------------------------


@pytest.mark.parametrize(
    ("fqdd", "component_id", "kind"),
    [
        ("iDRAC.Embedded.1-1", "25227", ComponentKind.IDRAC),
        ("BIOS.Setup.1-1", "159", ComponentKind.BIOS),
        ("CPLD.Embedded.1", "27763", ComponentKind.CPLD),
        ("RAID.Integrated.1-1", "101548", ComponentKind.RAID),
        ("RAID.Slot.3-1", None, ComponentKind.RAID),
        ("RAID.SL.1", None, ComponentKind.RAID),
        ("NIC.Integrated.1-1-1", "104684", ComponentKind.NIC),
        ("NIC.Slot.2-1-1", None, ComponentKind.NIC),
        ("NIC.Embedded.1", None, ComponentKind.NIC),
        ("NIC.Embedded.2-1-1", None, ComponentKind.NIC),
        # Backplane and disk FQDDs contain "RAID": they must not be classified as RAID.
        ("RAID.Backplane.Firmware.1", None, ComponentKind.BACKPLANE),
        ("Enclosure.Internal.0-1:RAID.Integrated.1-1", "2022", ComponentKind.BACKPLANE),
        ("Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1", None, ComponentKind.DISK),
        ("Disk.Bay.5:Enclosure.Internal.0-1:RAID.Slot.6-1", None, ComponentKind.DISK),
        ("PSU.Slot.1", None, ComponentKind.PSU),
        ("PSU.Slot.2", None, ComponentKind.PSU),
        ("LC.Embedded.1", "28897", ComponentKind.OTHER),
        ("Diagnostics.Embedded.1", None, ComponentKind.OTHER),
        ("DriverPack.Embedded.1:LC.Embedded.1", "18981", ComponentKind.OTHER),
    ],
)
def test_classify_idrac_examples(fqdd: str, component_id: str | None, kind: ComponentKind) -> None:
    assert classify_component(fqdd, component_id) is kind
    assert classify_component(fqdd) is kind  # the FQDD alone decides


def test_classify_is_case_insensitive() -> None:
    assert classify_component("IDRAC.EMBEDDED.1-1") is ComponentKind.IDRAC
    assert classify_component("disk.bay.1:enclosure.internal.0-1:raid.integrated.1-1") is (
        ComponentKind.DISK
    )


def test_classify_falls_back_to_component_id() -> None:
    assert classify_component("Unknown.Thing.1", "25227") is ComponentKind.IDRAC
    assert classify_component("Unknown.Thing.1", "159") is ComponentKind.BIOS
    assert classify_component("Unknown.Thing.1", "27763") is ComponentKind.CPLD
    assert classify_component("Unknown.Thing.1", "1") is ComponentKind.OTHER
    assert classify_component("") is ComponentKind.OTHER


def test_component_kind_values_are_strings() -> None:
    assert str(ComponentKind.BACKPLANE) == "backplane"
    assert [k.value for k in ComponentKind] == [
        "idrac", "bios", "cpld", "raid", "nic", "backplane", "disk", "psu", "other",
    ]  # fmt: skip


# -- ServiceRoot -----------------------------------------------------------------------


def test_service_root_from_idrac() -> None:
    root = ServiceRoot.from_redfish(IDRAC_ROOT, target=T)
    assert root.product == "Integrated Dell Remote Access Controller"
    assert root.vendor == "Dell"
    assert root.redfish_version == "1.11.0"
    assert root.service_tag == "8CYCZ23"
    assert root.manager_mac == "d0:94:66:2a:11:01"
    assert root.uuid == "3256444f-c0b7-3880-5210-00484c4c4544"
    assert root.sessions_path == "/redfish/v1/SessionService/Sessions"
    assert root.systems_path == "/redfish/v1/Systems"
    assert root.managers_path == "/redfish/v1/Managers"
    assert root.update_service_path == "/redfish/v1/UpdateService"
    assert root.is_idrac


def test_service_root_sessions_from_session_service_only() -> None:
    service = {"@odata.id": "/redfish/v1/SessionService/"}  # trailing slash tolerated
    data = {"RedfishVersion": "1.0.2", "SessionService": service}
    root = ServiceRoot.from_redfish(data, target=T)
    assert root.sessions_path == "/redfish/v1/SessionService/Sessions"
    assert not root.is_idrac


def test_service_root_without_sessions_and_not_dell() -> None:
    data = {
        "@odata.id": "/redfish/v1/",
        "RedfishVersion": "1.6.0",
        "Vendor": "Contoso",
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
    }
    root = ServiceRoot.from_redfish(data, target=T)
    assert root.sessions_path is None
    assert root.service_tag is None
    assert root.systems_path == "/redfish/v1/Systems"
    assert not root.is_idrac


def test_old_idrac_without_vendor_is_idrac() -> None:
    root = ServiceRoot.from_redfish(
        {"RedfishVersion": "1.0.0", "Product": "Integrated Dell Remote Access Controller"},
        target=T,
    )
    assert root.is_idrac


@pytest.mark.parametrize(
    "data",
    [
        {"hello": "world"},
        {"RedfishVersion": "1.11.0", "Product": ["not", "a", "string"]},
        {"RedfishVersion": "1.11.0", "Systems": {"@odata.id": {"nested": 1}}},
    ],
)
def test_service_root_rejects_non_redfish(data: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as info:
        ServiceRoot.from_redfish(data, target=T)
    assert info.value.target == T


# -- System / Manager ------------------------------------------------------------------

SYSTEM = {
    "@odata.id": "/redfish/v1/Systems/System.Embedded.1",
    "Id": "System.Embedded.1",
    "Manufacturer": "Dell Inc.",
    "Model": "PowerEdge R640",
    "SKU": "8CYCZ23",
    "SerialNumber": "CNIVC0097M0123",
    "BiosVersion": "2.19.1",
    "PowerState": "On",
    "Status": {"Health": "OK", "HealthRollup": "Warning", "State": "Enabled"},
    "UUID": "4c4c4544-0043-5910-8043-b8c04f5a3233",
    "ProcessorSummary": {"Count": 2},
    "MemorySummary": {"TotalSystemMemoryGiB": 383.5},
    "HostName": "esx-01.lab",
}


def test_system_from_idrac() -> None:
    system = System.from_redfish(SYSTEM, target=T)
    assert system.odata_id == "/redfish/v1/Systems/System.Embedded.1"
    assert system.id == "System.Embedded.1"
    assert system.model == "PowerEdge R640"
    assert system.service_tag == "8CYCZ23"  # SKU, not SerialNumber
    assert system.serial_number == "CNIVC0097M0123"
    assert system.bios_version == "2.19.1"
    assert system.power_state == "On"
    assert (system.health, system.health_rollup) == ("OK", "Warning")
    assert system.cpu_count == 2
    assert system.memory_gib == 383.5
    assert system.host_name == "esx-01.lab"
    assert system.manufacturer == "Dell Inc."


def test_system_with_only_required_fields() -> None:
    system = System.from_redfish({"@odata.id": "/redfish/v1/Systems/1", "Id": "1"}, target=T)
    assert system.service_tag is None
    assert system.memory_gib is None
    assert system.cpu_count is None


def test_system_empty_strings_become_none() -> None:
    system = System.from_redfish({**SYSTEM, "SKU": "", "HostName": ""}, target=T)
    assert system.service_tag is None
    assert system.host_name is None


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"Id": None}, "Id"),
        ({"@odata.id": None}, "@odata.id"),
        ({"ProcessorSummary": {"Count": "two"}}, "ProcessorSummary.Count"),
        ({"MemorySummary": {"TotalSystemMemoryGiB": True}}, "MemorySummary"),
        ({"Model": {"Name": "R640"}}, "Model"),
    ],
)
def test_system_malformed_fields(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        System.from_redfish({**SYSTEM, **patch}, target=T)
    assert field in info.value.detail


def test_manager_from_idrac() -> None:
    manager = Manager.from_redfish(
        {
            "@odata.id": "/redfish/v1/Managers/iDRAC.Embedded.1",
            "Id": "iDRAC.Embedded.1",
            "FirmwareVersion": "7.00.00.174",
            "Model": "14G Monolithic",
        },
        target=T,
    )
    assert manager.firmware_version == "7.00.00.174"
    assert manager.model == "14G Monolithic"
    assert manager.id == "iDRAC.Embedded.1"


def test_models_are_frozen_and_serialize() -> None:
    system = System.from_redfish(SYSTEM, target=T)
    with pytest.raises(pydantic.ValidationError):
        system.model = "PowerEdge R750"
    assert System.model_validate_json(system.model_dump_json()) == system
    root = ServiceRoot.from_redfish(IDRAC_ROOT, target=T)
    assert ServiceRoot.model_validate(root.model_dump()) == root


# -- FirmwareComponent -----------------------------------------------------------------


def _member(member_id: str, version: str | None, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "@odata.id": f"/redfish/v1/UpdateService/FirmwareInventory/{member_id}",
        "Id": member_id,
        "Name": "Integrated Dell Remote Access Controller",
        "Updateable": True,
        **extra,
    }
    if version is not None:
        body["Version"] = version
    return body


def test_firmware_component_from_dell_id() -> None:
    comp = FirmwareComponent.from_redfish(
        _member("Installed-25227-7.00.00.174__iDRAC.Embedded.1-1", "7.00.00.174"), target=T
    )
    assert comp.fqdd == "iDRAC.Embedded.1-1"
    assert comp.component_id == "25227"
    assert comp.version == "7.00.00.174"
    assert comp.state == "Installed"
    assert comp.kind is ComponentKind.IDRAC
    assert comp.updateable is True
    assert comp.name == "Integrated Dell Remote Access Controller"


def test_firmware_component_backplane_and_disk_ids() -> None:
    bp = FirmwareComponent.from_redfish(
        _member("Installed-2022-4.35__Enclosure.Internal.0-1:RAID.Integrated.1-1", "4.35"),
        target=T,
    )
    disk = FirmwareComponent.from_redfish(
        _member(
            "Previous-103160-DL64__Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1", "DL64"
        ),
        target=T,
    )
    raid = FirmwareComponent.from_redfish(
        _member("Current-101548-25.5.9.0001__RAID.Integrated.1-1", "25.5.9.0001"), target=T
    )
    assert (bp.kind, bp.fqdd) == (
        ComponentKind.BACKPLANE,
        "Enclosure.Internal.0-1:RAID.Integrated.1-1",
    )
    assert (disk.kind, disk.state) == (ComponentKind.DISK, "Previous")
    assert (raid.kind, raid.state, raid.component_id) == (ComponentKind.RAID, "Current", "101548")


def test_firmware_component_version_from_id_and_oem_fqdd() -> None:
    comp = FirmwareComponent.from_redfish(
        _member(
            "Available-159-2.19.1__BIOS.Setup.1-1",
            None,
            Oem={"Dell": {"DellSoftwareInventory": {"FQDD": "BIOS.Setup.1-1"}}},
        ),
        target=T,
    )
    assert (comp.version, comp.state, comp.kind) == ("2.19.1", "Available", ComponentKind.BIOS)


def test_firmware_component_generic_vendor() -> None:
    comp = FirmwareComponent.from_redfish(
        {"Id": "BMC", "Name": "BMC firmware", "Version": "1.2.3", "SoftwareId": "bmc-fw"},
        target=T,
    )
    assert (comp.fqdd, comp.component_id, comp.state) == ("BMC", "bmc-fw", "Installed")
    assert comp.kind is ComponentKind.OTHER
    assert comp.updateable is False


def test_firmware_component_without_version_is_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        FirmwareComponent.from_redfish({"Id": "BMC"}, target=T)
    assert "Version" in info.value.detail


def test_dedupe_drops_current_duplicates_of_installed_only() -> None:
    ids = [
        ("Installed-25227-7.00.00.174__iDRAC.Embedded.1-1", "7.00.00.174"),
        ("Current-25227-7.00.00.174__iDRAC.Embedded.1-1", "7.00.00.174"),
        ("Previous-25227-6.10.30.00__iDRAC.Embedded.1-1", "6.10.30.00"),
        ("Current-159-2.19.1__BIOS.Setup.1-1", "2.19.1"),  # no Installed twin: kept
    ]
    comps = [FirmwareComponent.from_redfish(_member(i, v), target=T) for i, v in ids]
    kept = dedupe_inventory(comps)
    assert [c.id for c in kept] == [ids[0][0], ids[2][0], ids[3][0]]
