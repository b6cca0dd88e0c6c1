"""Dell catalogs (``Catalog.xml`` / ``.xml.gz``): read them, pick packages, mirror them.

The parts of Dell's schema rackflow uses::

    <Manifest baseLocation="downloads.dell.com" baseLocationAccessProtocols="HTTPS" version=...>
      <SoftwareComponent path="FOLDER.../BIOS_8R8XJ_WN64_2.19.1.EXE" vendorVersion="2.19.1"
                         dellVersion="A00" packageID="8R8XJ" rebootRequired="true" size=...>
        <Name><Display lang="en">Dell Server BIOS PowerEdge R640 ...</Display></Name>
        <ComponentType value="BIOS"/>            (BIOS, FRMW, DRVR, APAC)
        <Category value="BI"/>                   (BI BIOS, NI network, SF storage, SM ...)
        <Criticality value="2"/>
        <SupportedDevices><Device componentID="159"/></SupportedDevices>
        <SupportedSystems><Brand prefix="PE"><Display>PowerEdge</Display>
          <Model systemID="0716"><Display>R640</Display></Model></Brand></SupportedSystems>
      </SoftwareComponent>
    </Manifest>
"""

from __future__ import annotations

import gzip
import posixpath
import re
from collections.abc import Iterable
from xml.etree import ElementTree as ET  # noqa: S405 - parsing goes through _xml

from pydantic import BaseModel, ConfigDict

from clients.errors import PreconditionError, ProtocolError
from clients.firmware._xml import (
    decode_xml,
    encode_like,
    local_name,
    maybe_gunzip,
    parse_untrusted_xml,
)
from clients.redfish.models import ComponentKind

__all__ = [
    "Catalog",
    "CatalogEntry",
    "CatalogModel",
    "entry_kind",
    "model_key",
    "parse_catalog",
    "rewrite_base_location",
    "version_key",
]

# Component ids that name a component on every PowerEdge (IDRAC.md).
_KIND_BY_ID = {"25227": ComponentKind.IDRAC, "159": ComponentKind.BIOS, "27763": ComponentKind.CPLD}
# Words in a package name, tested in this order (backplane before RAID, disks before RAID).
_KIND_BY_WORDS: tuple[tuple[ComponentKind, tuple[str, ...]], ...] = (
    (ComponentKind.BACKPLANE, ("backplane",)),
    (ComponentKind.CPLD, ("cpld",)),
    (ComponentKind.IDRAC, ("idrac", "remote access controller")),
    (ComponentKind.PSU, ("power supply",)),
    (ComponentKind.DISK, (" hdd", " ssd", "drive", "nvme")),
    (ComponentKind.NIC, ("network", "ethernet", "nic ", "connectx", "converged")),
    (ComponentKind.RAID, ("raid", "perc", "hba", "boss")),
)
_MODEL_NOISE = frozenset({"dell", "poweredge", "pe", "emc"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for Dell versions (``2.19.1``, ``7.10.30.00``, ``25.5.9.0001``, ``00.1D.6E``).

    Numeric parts compare as numbers and sort after alphanumeric ones.

    Args:
        version: A version string.

    Returns:
        A tuple usable as a sort key.
    """
    parts = re.split(r"[.\-_ ]+", version.strip())
    return tuple((1, int(p)) if p.isdigit() else (0, p.lower()) for p in parts if p)


def model_key(model: str) -> str:
    """Normalise a model name: ``PowerEdge R740xd`` and ``R740XD`` both give ``r740xd``.

    Args:
        model: A model as Redfish (``Model``) or a catalog (``Display``) spells it.

    Returns:
        Lower case, brand words dropped, no spaces.
    """
    words = model.lower().split()
    while words and words[0] in _MODEL_NOISE:
        words.pop(0)
    return "".join(words)


class CatalogModel(_Frozen):
    """One ``SupportedSystems/Brand/Model`` of a catalog entry."""

    name: str
    system_id: str | None = None
    brand: str | None = None

    def matches(self, model: str) -> bool:
        """Whether this names ``model`` (``PowerEdge R640``, ``R640`` or a system id).

        Args:
            model: The server's model (Redfish ``Model``) or system id.

        Returns:
            True on a match.
        """
        if self.system_id and model.strip().lower() == self.system_id.lower():
            return True
        return bool(model_key(self.name)) and model_key(model) == model_key(self.name)


class CatalogEntry(_Frozen):
    """One ``SoftwareComponent`` (one Dell Update Package)."""

    path: str
    vendor_version: str
    dell_version: str | None = None
    package_id: str | None = None
    name: str | None = None
    component_type: str | None = None
    category: str | None = None
    criticality: str | None = None
    reboot_required: bool | None = None
    component_ids: tuple[str, ...] = ()
    models: tuple[CatalogModel, ...] = ()

    @property
    def file(self) -> str:
        """The package file name (last part of ``path``)."""
        return posixpath.basename(self.path)

    @property
    def kind(self) -> ComponentKind:
        """The component this package updates (see :func:`entry_kind`)."""
        return entry_kind(self)

    def supports(self, model: str) -> bool:
        """Whether the package lists ``model`` (packages listing no systems fit all).

        Args:
            model: The server's model or system id.

        Returns:
            True when it applies.
        """
        return not self.models or any(m.matches(model) for m in self.models)


def entry_kind(entry: CatalogEntry) -> ComponentKind:
    """Decide which component a catalog entry updates.

    Well-known component ids first (iDRAC 25227, BIOS 159, CPLD 27763), then
    ``ComponentType`` BIOS, the Network category, then words in the name.

    Args:
        entry: A catalog entry.

    Returns:
        The kind; OTHER for drivers, applications and unknown firmware.
    """
    for cid in entry.component_ids:
        if cid in _KIND_BY_ID:
            return _KIND_BY_ID[cid]
    if (entry.component_type or "").upper() == "BIOS":
        return ComponentKind.BIOS
    if (entry.component_type or "FRMW").upper() != "FRMW":
        return ComponentKind.OTHER  # drivers (DRVR) and applications (APAC)
    name = f" {(entry.name or '').lower()} "
    for kind, words in _KIND_BY_WORDS:
        if any(w in name for w in words):
            return kind
    if (entry.category or "").upper() == "NI":
        return ComponentKind.NIC
    return ComponentKind.OTHER


class Catalog(_Frozen):
    """A parsed Dell catalog."""

    base_location: str | None = None
    access_protocols: tuple[str, ...] = ()
    version: str | None = None
    entries: tuple[CatalogEntry, ...] = ()

    def candidates(
        self, *, component: ComponentKind, model: str | None, component_id: str | None = None
    ) -> list[CatalogEntry]:
        """Entries for a component (and model), newest version first.

        Args:
            component: The component kind.
            model: The server's model; None to skip the model check.
            component_id: The installed component's id; when given, only
                entries listing that id count (a PERC H740P package does not fit an H330).

        Returns:
            Matching entries, highest ``vendorVersion`` first.
        """
        if component_id:
            found = [e for e in self.entries if component_id in e.component_ids]
        else:
            found = [e for e in self.entries if e.kind == component]
        if model is not None:
            found = [e for e in found if e.supports(model)]
        return sorted(found, key=lambda e: version_key(e.vendor_version), reverse=True)


def _display(element: ET.Element | None) -> str | None:
    """Text of ``Display`` (English preferred) under ``element``."""
    if element is None:
        return None
    displays = [c for c in element if local_name(c.tag) == "Display"]
    english = [d for d in displays if d.get("lang", "en") == "en"]
    for node in english or displays:
        text = (node.text or "").strip()
        if text:
            return text
    return None


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if local_name(c.tag) == name), None)


def _children(element: ET.Element | None, name: str) -> Iterable[ET.Element]:
    return () if element is None else (c for c in element if local_name(c.tag) == name)


def _models(component: ET.Element) -> tuple[CatalogModel, ...]:
    models: list[CatalogModel] = []
    for brand in _children(_child(component, "SupportedSystems"), "Brand"):
        brand_name = _display(brand)
        for model in _children(brand, "Model"):
            name = _display(model) or (model.text or "").strip()
            if name or model.get("systemID"):
                models.append(
                    CatalogModel(name=name, system_id=model.get("systemID"), brand=brand_name)
                )
    return tuple(models)


def _entry(component: ET.Element, *, target: str) -> CatalogEntry:
    path = (component.get("path") or "").strip()
    version = (component.get("vendorVersion") or "").strip()
    if not path or not version:
        ident = component.get("packageID") or path or "?"
        raise ProtocolError(
            target=target, detail=f"SoftwareComponent {ident}: no path or vendorVersion"
        )
    devices = _children(_child(component, "SupportedDevices"), "Device")
    reboot = component.get("rebootRequired")
    value_of = {
        name: (node.get("value") if (node := _child(component, name)) is not None else None)
        for name in ("ComponentType", "Category", "Criticality")
    }
    return CatalogEntry(
        path=path.replace("\\", "/"),
        vendor_version=version,
        dell_version=component.get("dellVersion"),
        package_id=component.get("packageID") or component.get("releaseID"),
        name=_display(_child(component, "Name")),
        component_type=value_of["ComponentType"],
        category=value_of["Category"],
        criticality=value_of["Criticality"],
        reboot_required=None if reboot is None else reboot.strip().lower() == "true",
        component_ids=tuple(d.get("componentID", "") for d in devices if d.get("componentID")),
        models=_models(component),
    )


def parse_catalog(data: bytes, *, target: str = "catalog") -> Catalog:
    """Parse a Dell catalog.

    Args:
        data: ``Catalog.xml`` bytes, or gzip (``.xml.gz``) bytes.
        target: Where it came from, for error messages.

    Returns:
        The catalog's base location and its SoftwareComponent entries.

    Raises:
        ProtocolError: Not a catalog (bad gzip, bad XML, no ``Manifest``, entries without path).
    """
    root = parse_untrusted_xml(maybe_gunzip(data, target=target), target=target)
    if local_name(root.tag) != "Manifest":
        raise ProtocolError(target=target, detail=f"not a Dell catalog (root {root.tag!r})")
    protocols = (root.get("baseLocationAccessProtocols") or "").replace(";", ",")
    return Catalog(
        base_location=(root.get("baseLocation") or "").strip() or None,
        access_protocols=tuple(p.strip().upper() for p in protocols.split(",") if p.strip()),
        version=root.get("version"),
        entries=tuple(_entry(c, target=target) for c in _children(root, "SoftwareComponent")),
    )


_MANIFEST_TAG = re.compile(r"<(?:[\w.-]+:)?Manifest\b[^>]*>")
_BASE_ATTR = re.compile(r"""\sbaseLocation\s*=\s*(?:"[^"]*"|'[^']*')""")
_PROTO_ATTR = re.compile(r"""\sbaseLocationAccessProtocols\s*=\s*(?:"[^"]*"|'[^']*')""")


def _set_attr(tag: str, pattern: re.Pattern[str], name: str, value: str) -> str:
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    attr = f' {name}="{escaped}"'
    if pattern.search(tag):
        return pattern.sub(lambda _m: attr, tag, count=1)
    end = len(tag) - (2 if tag.endswith("/>") else 1)
    return tag[:end] + attr + tag[end:]


def rewrite_base_location(catalog_xml: bytes, new_base: str) -> bytes:
    """Point a mirrored catalog's ``Manifest/@baseLocation`` at the mirror.

    A mirrored catalog keeps ``baseLocation="downloads.dell.com"``, which
    makes the iDRAC fetch every package from Dell instead of the mirror
    (IDRAC.md). Only the ``Manifest`` start tag is edited, everything else
    stays as it was; the encoding (UTF-16 or UTF-8) and gzip are kept.

    Args:
        catalog_xml: The catalog, plain or gzip.
        new_base: The mirror, as ``host[:port]/path`` or ``http(s)://host[:port]/path``;
            a scheme also sets ``baseLocationAccessProtocols``.

    Returns:
        The rewritten catalog, compressed like the input.

    Raises:
        PreconditionError: ``new_base`` is empty or not http(s).
        ProtocolError: The input has no ``Manifest`` element (or is bad gzip).
    """
    base = new_base.strip()
    scheme, sep, rest = base.partition("://")
    protocol = None
    if sep:
        if scheme.lower() not in ("http", "https"):
            raise PreconditionError(subject="new_base", reason=f"scheme {scheme!r} is not http(s)")
        protocol, base = scheme.upper(), rest
    base = base.rstrip("/")
    if not base or any(c.isspace() for c in base):
        raise PreconditionError(subject="new_base", reason=f"not a host/path: {new_base!r}")
    packed = catalog_xml.startswith(b"\x1f\x8b")
    xml, encoding = decode_xml(maybe_gunzip(catalog_xml, target="catalog"), target="catalog")
    match = _MANIFEST_TAG.search(xml)
    if match is None:
        raise ProtocolError(target="catalog", detail="no Manifest element to rewrite")
    tag = _set_attr(match.group(0), _BASE_ATTR, "baseLocation", base)
    if protocol is not None:
        tag = _set_attr(tag, _PROTO_ATTR, "baseLocationAccessProtocols", protocol)
    out = encode_like(xml[: match.start()] + tag + xml[match.end() :], encoding)
    return gzip.compress(out, mtime=0) if packed else out
