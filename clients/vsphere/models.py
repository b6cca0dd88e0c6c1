"""What vCenter tells about an ESXi host, and where a Dell service tag hides in it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["EsxiHost", "clean", "service_tag_of"]

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
