"""Typed views of the Redfish resources rackflow reads.

Frozen pydantic models, so they serialize as Prefect task results. Each has a
``from_redfish`` constructor that turns a decoded JSON body into the model and
raises :class:`~clients.errors.ProtocolError` when a required field is
missing or has the wrong type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from clients.errors import ProtocolError

__all__ = [
    "ComponentKind",
    "FirmwareComponent",
    "Manager",
    "ServiceRoot",
    "System",
    "classify_component",
]


class ComponentKind(StrEnum):
    """What a firmware component is, decided from its Dell FQDD."""

    IDRAC = "idrac"
    BIOS = "bios"
    CPLD = "cpld"
    RAID = "raid"
    NIC = "nic"
    BACKPLANE = "backplane"
    DISK = "disk"
    PSU = "psu"
    OTHER = "other"


# Dell component ids that identify a kind even without a usable FQDD.
_KIND_BY_COMPONENT_ID = {
    "25227": ComponentKind.IDRAC,
    "159": ComponentKind.BIOS,
    "27763": ComponentKind.CPLD,
}

# First dotted token of the (first part of the) FQDD -> kind. Lower case.
_KIND_BY_PREFIX = {
    "idrac": ComponentKind.IDRAC,
    "bios": ComponentKind.BIOS,
    "cpld": ComponentKind.CPLD,
    "raid": ComponentKind.RAID,
    "nic": ComponentKind.NIC,
    "psu": ComponentKind.PSU,
    "disk": ComponentKind.DISK,
    "enclosure": ComponentKind.BACKPLANE,
}


def classify_component(fqdd: str, component_id: str | None = None) -> ComponentKind:
    """Classify a firmware component by its Dell FQDD (and component id).

    Backplane and disk FQDDs contain "RAID" (``Enclosure.Internal.0-1:RAID.Integrated.1-1``,
    ``Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1``,
    ``RAID.Backplane.Firmware.1``), so they are tested before RAID.

    Args:
        fqdd: Fully qualified device descriptor, e.g. ``NIC.Integrated.1-1-1``.
        component_id: Dell component id, e.g. ``"25227"`` for the iDRAC.

    Returns:
        The component kind; ``OTHER`` for LC, diagnostics, driver packs and unknowns.
    """
    text = fqdd.strip().lower()
    # Disks first: "Disk.Bay.N:Enclosure...:RAID..." also names an enclosure.
    if text.startswith("disk.") or text.startswith("pciessd."):
        return ComponentKind.DISK
    if "backplane" in text or text.startswith("enclosure."):
        return ComponentKind.BACKPLANE
    head = text.split(":", 1)[0].split(".", 1)[0]
    kind = _KIND_BY_PREFIX.get(head)
    if kind is not None:
        return kind
    if component_id is not None:
        return _KIND_BY_COMPONENT_ID.get(component_id.strip(), ComponentKind.OTHER)
    return ComponentKind.OTHER


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    """Walk nested objects; None when any step is missing or not an object."""
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _opt_str(data: Mapping[str, Any], *keys: str, target: str) -> str | None:
    value = _get(data, *keys)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError(target=target, detail=f"{'.'.join(keys)} is not a string")


def _req_str(data: Mapping[str, Any], *keys: str, target: str) -> str:
    value = _opt_str(data, *keys, target=target)
    if not value:
        raise ProtocolError(target=target, detail=f"missing {'.'.join(keys)}")
    return value


def _opt_link(data: Mapping[str, Any], *keys: str, target: str) -> str | None:
    """A navigation link ``{"@odata.id": "/redfish/v1/..."}``; None when absent."""
    if _get(data, *keys) is None:
        return None
    return _opt_str(data, *keys, "@odata.id", target=target)


def _opt_int(data: Mapping[str, Any], *keys: str, target: str) -> int | None:
    value = _get(data, *keys)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(target=target, detail=f"{'.'.join(keys)} is not a number")
    return int(value)


def _opt_float(data: Mapping[str, Any], *keys: str, target: str) -> float | None:
    value = _get(data, *keys)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(target=target, detail=f"{'.'.join(keys)} is not a number")
    return float(value)


class ServiceRoot(_Frozen):
    """``GET /redfish/v1``: what a BMC says about itself without credentials."""

    product: str | None = None
    vendor: str | None = None
    redfish_version: str | None = None
    uuid: str | None = None
    service_tag: str | None = None
    manager_mac: str | None = None
    sessions_path: str | None = None
    systems_path: str | None = None
    managers_path: str | None = None
    update_service_path: str | None = None

    @property
    def is_idrac(self) -> bool:
        """Whether this is a Dell iDRAC (from Vendor / Product; no I/O)."""
        vendor = (self.vendor or "").lower()
        product = (self.product or "").lower()
        # iDRAC8 firmware predating Redfish 1.5 sends no Vendor, only Product.
        return (
            "remote access controller" in product
            or "idrac" in product
            or (vendor == "dell" and self.service_tag is not None)
        )

    @classmethod
    def from_redfish(cls, data: Mapping[str, Any], *, target: str) -> ServiceRoot:
        """Build from a decoded service root.

        Args:
            data: The JSON object of ``GET /redfish/v1``.
            target: URL it came from (for error messages).

        Returns:
            The service root.

        Raises:
            ProtocolError: Not a Redfish service root, or a field has the wrong type.
        """
        if "RedfishVersion" not in data and "@odata.id" not in data:
            raise ProtocolError(target=target, detail="not a Redfish service root")
        sessions = _opt_link(data, "Links", "Sessions", target=target)
        if sessions is None:
            service = _opt_link(data, "SessionService", target=target)
            sessions = f"{service.rstrip('/')}/Sessions" if service else None
        return cls(
            product=_opt_str(data, "Product", target=target),
            vendor=_opt_str(data, "Vendor", target=target),
            redfish_version=_opt_str(data, "RedfishVersion", target=target),
            uuid=_opt_str(data, "UUID", target=target),
            service_tag=_opt_str(data, "Oem", "Dell", "ServiceTag", target=target),
            manager_mac=_opt_str(data, "Oem", "Dell", "ManagerMACAddress", target=target),
            sessions_path=sessions,
            systems_path=_opt_link(data, "Systems", target=target),
            managers_path=_opt_link(data, "Managers", target=target),
            update_service_path=_opt_link(data, "UpdateService", target=target),
        )


class System(_Frozen):
    """A ComputerSystem (``/redfish/v1/Systems/System.Embedded.1`` on an iDRAC).

    ``service_tag`` comes from ``SKU`` (Dell puts the service tag there);
    ``serial_number`` is the board serial (CN...), not the service tag.
    """

    odata_id: str
    id: str
    manufacturer: str | None = None
    model: str | None = None
    service_tag: str | None = None
    serial_number: str | None = None
    bios_version: str | None = None
    power_state: str | None = None
    health: str | None = None
    health_rollup: str | None = None
    uuid: str | None = None
    cpu_count: int | None = None
    memory_gib: float | None = None
    host_name: str | None = None

    @classmethod
    def from_redfish(cls, data: Mapping[str, Any], *, target: str) -> System:
        """Build from a decoded ComputerSystem.

        Args:
            data: The JSON object of one system.
            target: URL it came from (for error messages).

        Returns:
            The system.

        Raises:
            ProtocolError: ``@odata.id`` or ``Id`` missing, or a field has the wrong type.
        """
        return cls(
            odata_id=_req_str(data, "@odata.id", target=target),
            id=_req_str(data, "Id", target=target),
            manufacturer=_opt_str(data, "Manufacturer", target=target),
            model=_opt_str(data, "Model", target=target),
            service_tag=_opt_str(data, "SKU", target=target) or None,
            serial_number=_opt_str(data, "SerialNumber", target=target) or None,
            bios_version=_opt_str(data, "BiosVersion", target=target),
            power_state=_opt_str(data, "PowerState", target=target),
            health=_opt_str(data, "Status", "Health", target=target),
            health_rollup=_opt_str(data, "Status", "HealthRollup", target=target),
            uuid=_opt_str(data, "UUID", target=target),
            cpu_count=_opt_int(data, "ProcessorSummary", "Count", target=target),
            memory_gib=_opt_float(data, "MemorySummary", "TotalSystemMemoryGiB", target=target),
            host_name=_opt_str(data, "HostName", target=target) or None,
        )


class Manager(_Frozen):
    """A Manager (the BMC itself, ``/redfish/v1/Managers/iDRAC.Embedded.1``)."""

    odata_id: str
    id: str
    firmware_version: str | None = None
    model: str | None = None

    @classmethod
    def from_redfish(cls, data: Mapping[str, Any], *, target: str) -> Manager:
        """Build from a decoded Manager.

        Args:
            data: The JSON object of one manager.
            target: URL it came from (for error messages).

        Returns:
            The manager.

        Raises:
            ProtocolError: ``@odata.id`` or ``Id`` missing, or a field has the wrong type.
        """
        return cls(
            odata_id=_req_str(data, "@odata.id", target=target),
            id=_req_str(data, "Id", target=target),
            firmware_version=_opt_str(data, "FirmwareVersion", target=target),
            model=_opt_str(data, "Model", target=target),
        )


# Dell inventory member ids: "<State>-<ComponentID>-<Version>__<FQDD>".
_DELL_ID = re.compile(
    r"^(?P<state>Installed|Current|Previous|Available)-(?P<cid>[^-_]*)-(?P<ver>.*?)__(?P<fqdd>.+)$"
)


class FirmwareComponent(_Frozen):
    """One member of ``UpdateService/FirmwareInventory``.

    Match components by ``component_id`` / ``fqdd``, never by ``id``: Dell
    ids embed the version and change with every update.
    """

    id: str
    fqdd: str
    component_id: str | None = None
    name: str | None = None
    version: str
    kind: ComponentKind
    updateable: bool = False
    state: str = "Installed"

    @classmethod
    def from_redfish(cls, data: Mapping[str, Any], *, target: str) -> FirmwareComponent:
        """Build from a decoded SoftwareInventory member.

        Dell members carry state, component id, version and FQDD in their
        ``Id``; other vendors' members fall back to ``SoftwareId`` and ``Id``
        (state ``Installed``: a non-Dell inventory lists what runs).

        Args:
            data: The JSON object of one inventory member.
            target: URL it came from (for error messages).

        Returns:
            The component.

        Raises:
            ProtocolError: ``Id`` or a version missing, or a field has the wrong type.
        """
        member_id = _req_str(data, "Id", target=target)
        dell = _get(data, "Oem", "Dell", "DellSoftwareInventory")
        dell = dell if isinstance(dell, Mapping) else {}
        match = _DELL_ID.match(member_id)
        fqdd = _opt_str(dell, "FQDD", target=target)
        component_id = _opt_str(dell, "ComponentID", target=target)
        component_id = component_id or _opt_str(data, "SoftwareId", target=target)
        version = _opt_str(data, "Version", target=target)
        state = "Installed"
        if match:
            state = match["state"]
            fqdd = fqdd or match["fqdd"]
            component_id = component_id or match["cid"] or None
            version = version or match["ver"]
        if not version:
            raise ProtocolError(target=target, detail=f"inventory member {member_id}: no Version")
        fqdd = fqdd or member_id
        updateable = _get(data, "Updateable")
        return cls(
            id=member_id,
            fqdd=fqdd,
            component_id=component_id or None,
            name=_opt_str(data, "Name", target=target),
            version=version,
            kind=classify_component(fqdd, component_id),
            updateable=updateable is True,
            state=state,
        )


def dedupe_inventory(components: list[FirmwareComponent]) -> list[FirmwareComponent]:
    """Drop ``Current-`` members that duplicate an ``Installed-`` member.

    Args:
        components: Inventory members in service order.

    Returns:
        The members, order kept, without Current- duplicates of Installed- ones.
    """
    installed = {(c.component_id, c.fqdd, c.version) for c in components if c.state == "Installed"}
    return [
        c
        for c in components
        if not (c.state == "Current" and (c.component_id, c.fqdd, c.version) in installed)
    ]
