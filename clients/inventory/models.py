"""Plain data the inventory takes and gives: observations in, records out.

Frozen pydantic models, so they travel as Prefect task results and export
cleanly to YAML/JSON. Every timestamp is timezone-aware UTC: naive datetimes
are refused rather than guessed at.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from clients.inventory.access import MachineAccess

__all__ = [
    "FirmwareObservation",
    "ServerObservation",
    "ServerRecord",
    "ServerStatus",
    "UpsertResult",
    "OBSERVED_FIELDS",
]


class ServerStatus(StrEnum):
    """What the last discovery made of a server."""

    ONLINE = "online"
    OFFLINE = "offline"
    AUTH_FAILED = "auth-failed"
    # Known from an import (its reboot paths), not seen by discovery yet.
    REGISTERED = "registered"


class UpsertResult(StrEnum):
    """What :meth:`Inventory.upsert` did with an observation."""

    CREATED = "created"
    UPDATED = "updated"
    MOVED = "moved"


class FirmwareObservation(BaseModel):
    """One installed firmware component as read from a BMC."""

    model_config = ConfigDict(frozen=True)

    fqdd: str
    component_id: str | None = None
    kind: str = "other"
    name: str | None = None
    version: str | None = None
    updateable: bool = False


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Fields an observation reports about the hardware; the store copies each one
# that is not None onto the server's row (None means "not read this time").
OBSERVED_FIELDS: tuple[str, ...] = (
    "vendor",
    "product",
    "redfish_version",
    "model",
    "serial",
    "uuid",
    "bios_version",
    "bmc_firmware_version",
    "bmc_model",
    "power_state",
    "health",
    "host_name",
    "cpu_count",
    "memory_gib",
)


class ServerObservation(BaseModel):
    """What discovery saw at one BMC address at one moment.

    ``firmware`` empty means "not read": the store keeps what it had. Fields
    left ``None`` likewise keep the stored value.
    """

    model_config = ConfigDict(frozen=True)

    bmc_address: str
    bmc_port: int = Field(ge=1, le=65535)
    status: ServerStatus
    seen_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    service_tag: str | None = None
    vendor: str | None = None
    product: str | None = None
    redfish_version: str | None = None
    model: str | None = None
    serial: str | None = None
    uuid: str | None = None
    bios_version: str | None = None
    bmc_firmware_version: str | None = None
    bmc_model: str | None = None
    power_state: str | None = None
    health: str | None = None
    host_name: str | None = None
    cpu_count: int | None = None
    memory_gib: float | None = None
    firmware: list[FirmwareObservation] = Field(default_factory=list)

    _utc = field_validator("seen_at")(_to_utc)


class ServerRecord(BaseModel):
    """A server as the inventory knows it (the source of truth for machines).

    ``identity`` is the service tag when known, else ``uuid:<UUID>``, else
    ``bmc:<address>:<port>`` (a placeholder merged away once the tag is read).
    ``bmc_address``/``bmc_port`` are ``None`` when another server took the address.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    identity: str
    service_tag: str | None = None
    bmc_address: str | None = None
    bmc_port: int | None = None
    status: ServerStatus
    vendor: str | None = None
    product: str | None = None
    redfish_version: str | None = None
    model: str | None = None
    serial: str | None = None
    uuid: str | None = None
    bios_version: str | None = None
    bmc_firmware_version: str | None = None
    bmc_model: str | None = None
    power_state: str | None = None
    health: str | None = None
    host_name: str | None = None
    cpu_count: int | None = None
    memory_gib: float | None = None
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    discovery_run_id: str | None = None
    vcenter_host: str | None = None
    maas_system_id: str | None = None
    fqdn: str | None = None
    access: MachineAccess = Field(default_factory=MachineAccess)
    attributes: dict[str, Any] = Field(default_factory=dict)
    firmware: list[FirmwareObservation] = Field(default_factory=list)

    _utc = field_validator("first_seen", "last_seen")(_to_utc)

    @property
    def bmc_endpoint(self) -> str | None:
        """``address:port`` of the BMC (``[v6]:port`` for IPv6), or None when unknown."""
        if self.bmc_address is None or self.bmc_port is None:
            return None
        host = f"[{self.bmc_address}]" if ":" in self.bmc_address else self.bmc_address
        return f"{host}:{self.bmc_port}"
