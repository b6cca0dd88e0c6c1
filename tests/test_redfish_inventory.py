"""RedfishClient resource reads: system, manager, firmware inventory."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from clients.errors import ProtocolError
from clients.redfish import ComponentKind
from tests.redfish_fake import (
    FW,
    INVENTORY,
    FakeIdrac,
    client_for,
    error_response,
)

# -- resources -------------------------------------------------------------------------


async def test_system_prefers_embedded_member_from_the_collection() -> None:
    fake = FakeIdrac(vendor_root=False)
    fake.routes[("GET", "/redfish/v1/Systems")] = httpx.Response(
        200,
        json={
            "Members": [
                {"@odata.id": "/redfish/v1/Systems/Other.1"},
                {"@odata.id": "/redfish/v1/Systems/System.Embedded.1"},
            ]
        },
    )
    async with client_for(fake) as bmc:
        system = await bmc.system()
    assert system.id == "System.Embedded.1"
    assert fake.count("GET", "/redfish/v1/Systems/Other.1") == 0


async def test_system_takes_first_member_when_no_embedded_one() -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1/Systems")] = httpx.Response(
        200, json={"Members": [{"@odata.id": "/redfish/v1/Systems/437XR1138R2"}]}
    )
    fake.routes[("GET", "/redfish/v1/Systems/437XR1138R2")] = httpx.Response(
        200, json={"@odata.id": "/redfish/v1/Systems/437XR1138R2", "Id": "437XR1138R2"}
    )
    async with client_for(fake) as bmc:
        system = await bmc.system()
    assert system.id == "437XR1138R2"


async def test_empty_systems_collection_is_protocol_error() -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1/Systems")] = httpx.Response(200, json={"Members": []})
    async with client_for(fake) as bmc:
        with pytest.raises(ProtocolError):
            await bmc.system()


def _inventory_summary(components: list[Any]) -> list[tuple[str, str, str]]:
    return [(c.fqdd, c.version, c.state) for c in components]


async def test_firmware_inventory_expanded_in_one_request_and_deduped() -> None:
    fake = FakeIdrac()
    async with client_for(fake) as bmc:
        components = await bmc.firmware_inventory()
    assert fake.count("GET", FW) == 1
    assert fake.log[1][1] == FW + "?$expand=*($levels=1)"
    ids = [c.id for c in components]
    assert "Current-25227-7.00.00.174__iDRAC.Embedded.1-1" not in ids
    assert "Current-159-2.19.1__BIOS.Setup.1-1" not in ids
    assert "Previous-25227-6.10.30.00__iDRAC.Embedded.1-1" in ids
    assert len(components) == len(INVENTORY) - 2
    kinds = Counter(c.kind for c in components if c.state == "Installed")
    assert kinds == {
        ComponentKind.IDRAC: 1,
        ComponentKind.BIOS: 1,
        ComponentKind.CPLD: 1,
        ComponentKind.RAID: 1,
        ComponentKind.NIC: 1,
        ComponentKind.BACKPLANE: 1,
        ComponentKind.DISK: 1,
        ComponentKind.PSU: 1,
        ComponentKind.OTHER: 1,
    }
    idrac = next(c for c in components if c.kind is ComponentKind.IDRAC and c.state == "Installed")
    assert (idrac.component_id, idrac.version, idrac.updateable) == ("25227", "7.00.00.174", True)


@pytest.mark.parametrize("mode", ["refused", "ignored"])
async def test_firmware_inventory_falls_back_to_member_reads(mode: str) -> None:
    expanded = FakeIdrac()
    fallback = FakeIdrac(expand=mode)
    async with client_for(expanded) as a, client_for(fallback) as b:
        want = await a.firmware_inventory()
        got = await b.firmware_inventory()
    assert _inventory_summary(got) == _inventory_summary(want)
    member_reads = [p for m, p, _ in fallback.log if m == "GET" and p.startswith(FW + "/")]
    assert len(member_reads) == len(INVENTORY)
    collection_reads = [p for m, p, _ in fallback.log if m == "GET" and p.split("?")[0] == FW]
    if mode == "refused":  # 400 to $expand: the plain collection is read once more
        assert collection_reads == [FW + "?$expand=*($levels=1)", FW]
    else:  # $expand ignored: the answer already was the plain collection
        assert collection_reads == [FW + "?$expand=*($levels=1)"]


async def test_firmware_inventory_missing_is_empty_list() -> None:
    fake = FakeIdrac(inventory=False)
    async with client_for(fake) as bmc:
        assert await bmc.firmware_inventory() == []


async def test_firmware_member_vanishing_mid_read_is_skipped() -> None:
    fake = FakeIdrac(expand="ignored")
    gone = f"{FW}/{INVENTORY[0][0]}"
    fake.routes[("GET", gone)] = error_response(404, "Base.1.12.ResourceMissingAtURI", "gone")
    async with client_for(fake) as bmc:
        components = await bmc.firmware_inventory()
    assert INVENTORY[0][0] not in [c.id for c in components]
    # The Current- twin is kept now that its Installed- member is gone.
    assert "Current-25227-7.00.00.174__iDRAC.Embedded.1-1" in [c.id for c in components]
