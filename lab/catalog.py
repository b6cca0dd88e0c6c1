"""Dell catalog (``Catalog.xml``) and CIM ``PackageList`` documents of the lab.

The repository writes a catalog in Dell's schema (``Manifest`` with
``baseLocation``, ``SoftwareComponent`` entries with ``path``,
``vendorVersion``, ``ComponentType``, ``SupportedDevices/Device@componentID``,
``SupportedSystems/Brand/Model@systemID``), encoded UTF-16 with a BOM as
Dell's own catalog is. The lab iDRAC parses it back for
``InstallFromRepository`` and answers ``GetRepoBasedUpdateList`` with a CIM
XML ``PackageList``.
"""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET  # noqa: S405 - builds XML; parsing below is our own files

from lab.dup import SYSTEM_IDS, Package

_CATEGORY = {
    "idrac": ("IDRAC", "iDRAC with Lifecycle Controller"),
    "bios": ("BI", "BIOS"),
    "cpld": ("CS", "Chipset"),
    "raid": ("SF", "Storage Controllers"),
    "nic": ("NI", "Network"),
    "backplane": ("SF", "Storage Controllers"),
}


def build_catalog(packages: list[Package], *, base_location: str, protocols: str = "HTTP") -> bytes:
    """Render a Dell-style catalog.

    Args:
        packages: Packages to list (``path`` is the file name, relative to the base).
        base_location: ``Manifest@baseLocation`` (empty: relative to the share).
        protocols: ``Manifest@baseLocationAccessProtocols``.

    Returns:
        The catalog, UTF-16 with a BOM (as Dell publishes it).
    """
    now = dt.datetime(2026, 11, 1, 3, 0, 0)
    manifest = ET.Element(
        "Manifest",
        {
            "baseLocation": base_location,
            "baseLocationAccessProtocols": protocols,
            "dateTime": now.isoformat() + "-05:00",
            "identifier": "5d6ed2d3-6c5c-4a8e-9d8a-7f1d3d2f0a11",
            "releaseID": "RACKL",
            "version": "26.11.00",
        },
    )
    for pkg in packages:
        manifest.append(_software_component(pkg, now))
    ET.indent(manifest)
    text = '<?xml version="1.0" encoding="utf-16"?>\n' + ET.tostring(manifest, encoding="unicode")
    return text.encode("utf-16")


def _display(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    ET.SubElement(element, "Display", {"lang": "en"}).text = text
    return element


def _software_component(pkg: Package, now: dt.datetime) -> ET.Element:
    size = len(pkg.content())
    element = ET.Element(
        "SoftwareComponent",
        {
            "schemaVersion": "2.4",
            "packageID": pkg.package_id,
            "releaseID": pkg.package_id,
            "hashMD5": "0" * 32,
            "path": pkg.file,
            "dateTime": now.isoformat() + "-05:00",
            "releaseDate": now.strftime("%B %d, %Y"),
            "vendorVersion": pkg.version,
            "dellVersion": pkg.version,
            "packageType": "LWXP",
            "rebootRequired": "false" if pkg.component == "idrac" else "true",
            "size": str(size),
        },
    )
    _display(element, "Name", f"Dell {pkg.name} firmware {pkg.version}")
    _display(element, "ComponentType", pkg.component_type, value=pkg.component_type)
    _display(element, "Description", f"This package updates {pkg.name}.")
    category, label = _CATEGORY[pkg.component]
    _display(element, "Category", label, value=category)
    devices = ET.SubElement(element, "SupportedDevices")
    _display(devices, "Device", pkg.name, componentID=pkg.component_id, embedded="1")
    systems = ET.SubElement(element, "SupportedSystems")
    brand = _display(systems, "Brand", "PowerEdge", key="3", prefix="PE")
    for model in pkg.models:
        _display(brand, "Model", model, systemID=SYSTEM_IDS.get(model, "0000"), systemIDType="BIOS")
    _display(element, "Criticality", "Recommended", value="1")
    return element


@dataclass(frozen=True)
class CatalogEntry:
    """One SoftwareComponent as an iDRAC reads it."""

    path: str
    version: str
    component_type: str
    component_ids: tuple[str, ...]
    models: tuple[str, ...]
    system_ids: tuple[str, ...]
    name: str
    criticality: str
    reboot_required: bool


@dataclass
class Catalog:
    """A parsed catalog."""

    base_location: str
    protocols: str
    entries: list[CatalogEntry] = field(default_factory=list)


def parse_catalog(content: bytes) -> Catalog:
    """Parse a Dell catalog (plain or gzip; UTF-8 or UTF-16).

    Args:
        content: Catalog bytes.

    Returns:
        The catalog.

    Raises:
        ValueError: The bytes are not a Dell catalog.
    """
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    try:
        root = ET.fromstring(content)  # noqa: S314 - the lab parses catalogs it fetched from 127/8
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != "Manifest":
        raise ValueError(f"root element is {root.tag}, not Manifest")
    catalog = Catalog(
        base_location=root.get("baseLocation", ""),
        protocols=root.get("baseLocationAccessProtocols", "HTTP"),
    )
    for comp in root.iter("SoftwareComponent"):
        ctype = comp.find("ComponentType")
        crit = comp.find("Criticality")
        models = comp.findall("SupportedSystems/Brand/Model")
        catalog.entries.append(
            CatalogEntry(
                path=comp.get("path", ""),
                version=comp.get("vendorVersion", ""),
                component_type=ctype.get("value", "") if ctype is not None else "",
                component_ids=tuple(
                    d.get("componentID", "") for d in comp.findall("SupportedDevices/Device")
                ),
                models=tuple((m.findtext("Display") or "").strip() for m in models),
                system_ids=tuple(m.get("systemID", "") for m in models),
                name=(comp.findtext("Name/Display") or "").strip(),
                criticality=crit.get("value", "1") if crit is not None else "1",
                reboot_required=comp.get("rebootRequired", "true") == "true",
            )
        )
    return catalog


def package_list_xml(updates: list[dict[str, Any]]) -> str:
    """Render ``GetRepoBasedUpdateList``'s ``PackageList`` (CIM XML, DCIM_RepoUpdateSWID).

    Args:
        updates: One dict per update with keys DisplayName, PackageName, PackagePath,
            PackageVersion, ComponentID, ComponentType, Criticality, RebootType,
            Target, ComponentInstalledVersion, JobID.

    Returns:
        The CIM XML text.
    """
    cim = ET.Element("CIM", {"CIMVERSION": "2.0", "DTDVERSION": "2.0"})
    message = ET.SubElement(cim, "MESSAGE", {"ID": "0", "PROTOCOLVERSION": "1.0"})
    req = ET.SubElement(message, "SIMPLEREQ")
    for update in updates:
        named = ET.SubElement(req, "VALUE.NAMEDINSTANCE")
        name = ET.SubElement(named, "INSTANCENAME", {"CLASSNAME": "DCIM_RepoUpdateSWID"})
        key = ET.SubElement(name, "KEYBINDING", {"NAME": "InstanceID"})
        ET.SubElement(key, "KEYVALUE").text = f"DCIM:INSTALLED#{update['Target']}"
        instance = ET.SubElement(named, "INSTANCE", {"CLASSNAME": "DCIM_RepoUpdateSWID"})
        for prop, value in update.items():
            element = ET.SubElement(instance, "PROPERTY", {"NAME": prop, "TYPE": "string"})
            ET.SubElement(element, "VALUE").text = str(value)
    return ET.tostring(cim, encoding="unicode")
