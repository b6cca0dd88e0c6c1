"""What vCenter tells about an ESXi host, and where a Dell service tag hides in it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EsxiHost", "MaintenanceOptions", "VsanMode", "clean", "service_tag_of"]

# vim.vsan.host.DecommissionMode.ObjectAction: what happens to the vSAN data a host holds.
VsanMode = Literal["ensureObjectAccessibility", "evacuateAllData", "noAction"]

# Values BIOSes put in identity fields when nobody filled them in.
_PLACEHOLDERS = {"", "0", "none", "not specified", "to be filled by o.e.m.", "default string"}


class EsxiHost(BaseModel):
    """One ESXi host as vCenter reports it."""

    model_config = ConfigDict(frozen=True)

    name: str
    moid: str
    cluster: str | None = None
    cluster_moid: str | None = None
    service_tag: str | None = None
    serial_number: str | None = None
    esxi_version: str | None = None
    build: str | None = None
    connection_state: str
    in_maintenance: bool
    vendor: str | None = None
    model: str | None = None

    @property
    def available(self) -> bool:
        """Connected and not in maintenance mode: it carries workloads."""
        return self.connection_state == "connected" and not self.in_maintenance


class MaintenanceOptions(BaseModel):
    """How vCenter evacuates a host entering maintenance mode.

    The defaults send what rackflow always sent: powered-off VMs stay, and no
    ``maintenanceSpec``, so vCenter applies its own vSAN default
    (``ensureObjectAccessibility`` on a vSAN cluster; nothing elsewhere).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    evacuate_powered_off_vms: bool = Field(
        default=False,
        description=(
            "Also move powered-off VMs away (DRS re-registers them on other hosts; "
            "without DRS vCenter waits until they are moved by hand)"
        ),
    )
    vsan_mode: VsanMode | None = Field(
        default=None,
        description=(
            "vSAN data of the host: ensureObjectAccessibility (keep every object "
            "reachable), evacuateAllData (full copy elsewhere; slow), noAction; "
            "None: vCenter's default"
        ),
    )


def clean(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return None if text.lower() in _PLACEHOLDERS else text


def service_tag_of(system_info: Any) -> str | None:
    """Find a Dell service tag in ``hardware.systemInfo``.

    ESXi lists it in ``otherIdentifyingInfo`` as ``ServiceTag`` (older
    releases only as ``EnclosureSerialNumberTag``); newer ones also fill
    ``serialNumber``.

    Args:
        system_info: A ``vim.host.SystemInfo`` (or None).

    Returns:
        The tag upper-cased, or None when the host reports none.
    """
    if system_info is None:
        return None
    found: dict[str, str] = {}
    for item in getattr(system_info, "otherIdentifyingInfo", None) or []:
        key = getattr(getattr(item, "identifierType", None), "key", None)
        value = clean(getattr(item, "identifierValue", None))
        if key and value:
            found.setdefault(str(key), value)
    tag = (
        found.get("ServiceTag")
        or clean(getattr(system_info, "serialNumber", None))
        or found.get("EnclosureSerialNumberTag")
    )
    return tag.upper() if tag else None
