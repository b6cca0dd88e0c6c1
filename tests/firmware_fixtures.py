"""A small, hand-written Dell catalog following Dell's Catalog.xml schema, and a repo index.

Shaped like Dell's enterprise catalog (Manifest with baseLocation, an
InventoryComponent, a SoftwareBundle, SoftwareComponent entries with
Name/ComponentType/Category/SupportedDevices/SupportedSystems). No tests here.
"""

from __future__ import annotations

from typing import Any


def component(
    *,
    path: str,
    version: str,
    name: str,
    ctype: str = "FRMW",
    category: str = "SM",
    ids: tuple[str, ...] = (),
    models: tuple[tuple[str, str], ...] = (),
    reboot: bool = True,
) -> str:
    devices = "".join(
        f'<Device componentID="{i}" embedded="1"><Display lang="en"><![CDATA[{name}]]></Display>'
        "</Device>"
        for i in ids
    )
    systems = "".join(
        f'<Model systemID="{sid}" systemIDType="BIOS"><Display lang="en"><![CDATA[{m}]]></Display>'
        "</Model>"
        for sid, m in models
    )
    supported = (
        f'<SupportedSystems><Brand key="3" prefix="PE"><Display lang="en"><![CDATA[PowerEdge]]>'
        f"</Display>{systems}</Brand></SupportedSystems>"
        if models
        else ""
    )
    package_id = path.rsplit("_", 3)[-3] if path.count("_") >= 3 else "XXXXX"
    return f"""
  <SoftwareComponent schemaVersion="3.0" releaseID="{package_id}" packageID="{package_id}"
      releaseDate="January 10, 2024" dateTime="2024-01-10T06:40:07+05:30"
      vendorVersion="{version}" dellVersion="A00" packageType="LWXP" path="{path}"
      rebootRequired="{str(reboot).lower()}" size="33445566"
      hashMD5="0123456789abcdef0123456789abcdef">
    <Name>
      <Display lang="ja"><![CDATA[{name} (ja)]]></Display>
      <Display lang="en"><![CDATA[{name}]]></Display>
    </Name>
    <ComponentType value="{ctype}"><Display lang="en"><![CDATA[Firmware]]></Display></ComponentType>
    <Description><Display lang="en"><![CDATA[This package updates {name}.]]></Display></Description>
    <LUCategory value="NA"><Display lang="en"><![CDATA[Not Applicable]]></Display></LUCategory>
    <Category value="{category}"><Display lang="en"><![CDATA[Category]]></Display></Category>
    <SupportedDevices>{devices}</SupportedDevices>
    {supported}
    <ImportantInfo URL="https://www.dell.com/support/home/drivers/DriversDetails?driverId={package_id}"/>
    <Criticality value="2"><Display lang="en"><![CDATA[Urgent-Dell highly recommends.]]></Display>
    </Criticality>
  </SoftwareComponent>"""


R640 = ("0716", "R640")
R740 = ("0715", "R740")
R650 = ("0A38", "R650")
IDRAC_DUP = "iDRAC-with-Lifecycle-Controller_Firmware_Y0CWW_WN64_7.10.30.00_A00.EXE"

COMPONENTS = [
    component(
        path="FOLDER10911204M/1/BIOS_8R8XJ_WN64_2.19.1.EXE",
        version="2.19.1",
        name="Dell Server BIOS PowerEdge R640/R740 Version 2.19.1",
        ctype="BIOS",
        category="BI",
        ids=("159",),
        models=(R640, R740),
    ),
    component(
        path="FOLDER10011204M/1/BIOS_7N9D3_WN64_2.18.1.EXE",
        version="2.18.1",
        name="Dell Server BIOS PowerEdge R640 Version 2.18.1",
        ctype="BIOS",
        category="BI",
        ids=("159",),
        models=(R640,),
    ),
    component(
        path="FOLDER10900001M/1/BIOS_YNJ0T_WN64_1.10.2_02.EXE",
        version="1.10.2",
        name="Dell Server BIOS PowerEdge R650 Version 1.10.2",
        ctype="BIOS",
        category="BI",
        ids=("159",),
        models=(R650,),
    ),
    component(
        path=f"FOLDER10032207M/1/{IDRAC_DUP}",
        version="7.10.30.00",
        name="iDRAC with Lifecycle Controller",
        ids=("25227",),
        models=(R640, R740, R650),
    ),
    component(
        path="FOLDER09100123M/1/CPLD_Firmware_X2T7H_WN64_1.0.8_A00.EXE",
        version="1.0.8",
        name="Dell EMC Server PowerEdge R640 CPLD Firmware",
        ids=("27763",),
        models=(R640,),
        category="SY",
    ),
    component(
        path="FOLDER10400011M/1/SAS-RAID_Firmware_F0PH7_WN64_51.16.0-4076_A16.EXE",
        version="51.16.0-4076",
        name="PERC H740P Mini/Adapter RAID Controllers firmware version 51.16.0-4076",
        ids=("101548",),
        models=(R640, R740),
        category="SF",
    ),
    component(
        path="FOLDER10500022M/1/Network_Firmware_9NPPG_WN64_22.31.6_A00.EXE",
        version="22.31.6",
        name="Intel(R) Ethernet 10G 2P X710 OCP Firmware",
        ids=("104684",),
        models=(R640, R740, R650),
        category="NI",
    ),
    component(
        path="FOLDER10600033M/1/Firmware_60K1J_WN64_4.35_A00.EXE",
        version="4.35",
        name="Dell 12Gbps SAS Backplane Expander Firmware",
        ids=("2022",),
        models=(R640, R740),
        category="SF",
    ),
    component(
        path="FOLDER10700044M/1/Network_Driver_1R7TM_WN64_28.2_A00.EXE",
        version="28.2",
        name="Intel NIC Family Version 28.2 Drivers for Windows Server",
        ctype="DRVR",
        category="NI",
        models=(R640,),
        reboot=False,
    ),
]

CATALOG_XML = (
    """<?xml version="1.0" encoding="utf-16"?>
<Manifest xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" baseLocation="downloads.dell.com"
    baseLocationAccessProtocols="HTTP,HTTPS" dateTime="2024-01-12T05:05:34+05:30"
    identifier="a0f6f1a0-3f8e-4a6d-9d6e-6ad6c5b7c0de" releaseID="K8T5N" version="24.01.00"
    predecessorID="b7e1c2d3-1111-2222-3333-444455556666">
  <InventoryComponent schemaVersion="2.0" releaseID="V4M9D" releaseDate="December 01, 2023"
      vendorVersion="23.12.00" dellVersion="A00" path="FOLDER10411002M/1/invcol_V4M9D_WIN64.exe"
      packageType="LWXP" size="20212344"/>
  <SoftwareBundle schemaVersion="2.0" bundleID="J1G8K" bundleType="BTW64" releaseID="J1G8K"
      vendorVersion="24.01.00" path="FOLDER10911111M/1/PER640_BIOS_WIN64_24.01.00.xml" size="5000">
    <Name><Display lang="en"><![CDATA[Update Bundle for PowerEdge R640]]></Display></Name>
    <Contents><Package path="BIOS_8R8XJ_WN64_2.19.1.EXE"/></Contents>
  </SoftwareBundle>"""
    + "".join(COMPONENTS)
    + "\n</Manifest>\n"
)
# Dell ships the catalog as UTF-16 with a BOM when unpacked; a mirror may re-encode it.
CATALOG_BYTES = CATALOG_XML.replace('encoding="utf-16"', 'encoding="utf-8"').encode("utf-8")
CATALOG_UTF16 = CATALOG_XML.encode("utf-16")

INDEX: dict[str, Any] = {
    "packages": [
        {
            "file": "R640/BIOS_8R8XJ_WN64_2.19.1.EXE",
            "component": "bios",
            "component_id": "159",
            "version": "2.19.1",
            "models": ["PowerEdge R640", "PowerEdge R740"],
            "name": "BIOS",
        },
        {
            "file": "R640/BIOS_7N9D3_WN64_2.18.1.EXE",
            "component": "bios",
            "component_id": "159",
            "version": "2.18.1",
            "models": ["PowerEdge R640"],
        },
        {
            "file": "R650/BIOS_YNJ0T_WN64_1.10.2.EXE",
            "component": "bios",
            "component_id": "159",
            "version": "1.10.2",
            "models": ["PowerEdge R650"],
        },
        {
            "file": IDRAC_DUP,
            "component": "idrac",
            "component_id": "25227",
            "version": "7.10.30.00",
            "models": ["PowerEdge R640", "PowerEdge R740", "PowerEdge R650", "PowerEdge R750"],
        },
        {
            "file": "RAID_H740P_WN64_51.16.0-4076.EXE",
            "component": "raid",
            "component_id": "101548",
            "version": "51.16.0-4076",
            "models": ["R640", "R740"],
        },
        {
            "file": "RAID_H330_WN64_25.5.9.0001.EXE",
            "component": "raid",
            "component_id": "101522",
            "version": "25.5.9.0001",
            "models": ["R640"],
        },
    ]
}
