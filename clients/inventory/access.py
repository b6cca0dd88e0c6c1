"""How rackflow reaches a machine to reboot it: its reboot paths, per machine.

Each path names the Prefect block holding its credentials (never the secret
itself), so the inventory can be exported and reviewed safely. A machine has
any subset of the paths; the reboot chain skips the ones it lacks.

Example (one entry of an import file, see :mod:`clients.inventory.access_file`)::

    - name: web01.example.com          # FQDN; or service_tag; or both
      service_tag: 8CYCZ23
      address: 10.1.2.3                # what ping checks (default: name)
      ping: {method: tcp, port: 22}
      ssh: {host: 10.1.2.3, user: root, credentials: ops-ssh}
      ipmi: {address: 10.1.9.3, credentials: ops-ipmi}
      pdu: {host: pdu-r12.example.com, credentials: pdu-rw, model: sentry3, outlet: AA7}
      ilo: {address: 10.1.9.3, credentials: ops-ilo}
      xen: {vm_uuid: 3f0c..., credentials: xen-pool1}
      bugzilla: {product: Infrastructure, component: Hardware, cc: [ops@example.com],
                 credentials: bugzilla}
"""

from __future__ import annotations

import re
from typing import Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BugzillaDefaults",
    "IloAccess",
    "IpmiAccess",
    "MachineAccess",
    "MachineEntry",
    "PduAccess",
    "PingConfig",
    "SshAccess",
    "XenAccess",
    "parse_outlet",
]

_BLOCK_NAME = r"^[a-z0-9][a-z0-9-]*$"
_SENTRY3_OUTLET = re.compile(r"^([A-Z])([A-Z])(\d+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _host(value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ValueError(f"not a host name or address: {value!r}")
    return value


Port = Field(default=None, ge=1, le=65535)
BlockName = Field(
    pattern=_BLOCK_NAME,
    description="Name of the Prefect credentials block (lowercase letters, digits, dashes).",
)


class PingConfig(_Strict):
    """How to tell whether the machine answers.

    ``icmp`` pings; ``tcp`` connects to ``port`` (for networks that drop
    ICMP); ``auto`` uses ICMP when the worker may send it and no port is
    given, else TCP.
    """

    method: Literal["auto", "icmp", "tcp"] = "auto"
    port: int | None = Port

    @model_validator(mode="after")
    def _tcp_needs_port(self) -> Self:
        if self.method == "tcp" and self.port is None:
            raise ValueError("ping method tcp needs a port")
        return self


class SshAccess(_Strict):
    """SSH to the machine's OS (``SshCredentials`` block)."""

    host: str
    port: int | None = Port
    user: str | None = None
    credentials: str = BlockName
    # None: unknown; the Linux forms are tried first, then the Windows form.
    windows: bool | None = None

    _host = field_validator("host")(_host)


class IpmiAccess(_Strict):
    """The machine's BMC over IPMI (``IpmiCredentials`` block)."""

    address: str
    port: int | None = Port
    credentials: str = BlockName

    _host = field_validator("address")(_host)


def parse_outlet(model: str, outlet: str) -> tuple[int, ...]:
    """Parse a PDU outlet as written on the PDU.

    Args:
        model: ``apc`` (outlets ``1``, ``2``, ...) or ``sentry3`` (``AA1``:
            tower A, infeed A, outlet 1).

    Returns:
        The OID index: ``(outlet,)`` or ``(tower, infeed, outlet)``.

    Raises:
        ValueError: The outlet is not written the way this model numbers them.
    """
    text = str(outlet).strip().upper()
    if model == "apc":
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"APC outlet must be a number from 1, got {outlet!r}")
        return (int(text),)
    if model == "sentry3":
        match = _SENTRY3_OUTLET.match(text)
        if match is None or int(match.group(3)) < 1:
            raise ValueError(f"Sentry3 outlet must look like AA1 (tower infeed n), got {outlet!r}")
        tower, infeed, number = match.groups()
        return (ord(tower) - 64, ord(infeed) - 64, int(number))
    raise ValueError(f"unknown PDU model {model!r} (apc, sentry3)")


class PduAccess(_Strict):
    """The PDU outlet feeding the machine (``SnmpCredentials`` block)."""

    host: str
    port: int | None = Port
    credentials: str = BlockName
    model: Literal["apc", "sentry3"]
    outlet: str
    mode: Literal["single", "off_on"] = Field(
        default="single",
        description="single: one 'reboot' SET; off_on: off, wait off_delay_s, on "
        "(for PDUs or outlets without a reboot action).",
    )
    off_delay_s: float = Field(default=5.0, gt=0, le=300)

    _host = field_validator("host")(_host)

    @field_validator("outlet", mode="before")
    @classmethod
    def _outlet_text(cls, value: object) -> str:
        return str(value).strip().upper()

    @model_validator(mode="after")
    def _outlet_matches_model(self) -> Self:
        parse_outlet(self.model, self.outlet)
        return self


class IloAccess(_Strict):
    """HPE iLO over Redfish (``IloCredentials`` block)."""

    address: str
    port: int | None = Port
    credentials: str = BlockName

    _host = field_validator("address")(_host)


class XenAccess(_Strict):
    """A XenServer / XCP-ng VM (``XenCredentials`` block, which holds the pool URL)."""

    vm_uuid: str
    credentials: str = BlockName

    @field_validator("vm_uuid")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(UUID(value.strip()))


class BugzillaDefaults(_Strict):
    """Where a bug goes when every reboot path failed (``BugzillaCredentials`` block)."""

    product: str = Field(min_length=1)
    component: str = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    credentials: str = BlockName


class MachineAccess(_Strict):
    """Every reboot path of one machine (each optional)."""

    address: str | None = None
    ping: PingConfig | None = None
    ssh: SshAccess | None = None
    ipmi: IpmiAccess | None = None
    pdu: PduAccess | None = None
    ilo: IloAccess | None = None
    xen: XenAccess | None = None
    bugzilla: BugzillaDefaults | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _host(value)

    def paths(self) -> list[str]:
        """Names of the reboot paths configured, in the order the fields are declared."""
        names = ("ssh", "ipmi", "pdu", "ilo", "xen")
        return [name for name in names if getattr(self, name) is not None]


class MachineEntry(MachineAccess):
    """One machine of an import file: who it is plus its reboot paths.

    ``name`` is the machine's FQDN (stored lower-case); ``service_tag`` ties
    it to the server discovery finds through its BMC. At least one is needed.
    """

    name: str | None = None
    service_tag: str | None = None

    @field_validator("name")
    @classmethod
    def _fqdn(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _host(value).lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", value):
            raise ValueError(f"not a host name: {value!r}")
        return value

    @field_validator("service_tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        value = (value or "").strip().upper()
        if value and not value.isalnum():
            raise ValueError(f"a service tag is letters and digits, got {value!r}")
        return value or None

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.name is None and self.service_tag is None:
            raise ValueError("a machine needs a name (FQDN) or a service_tag")
        return self

    def access(self) -> MachineAccess:
        """The reboot paths alone (what the inventory stores per machine)."""
        return MachineAccess.model_validate(self.model_dump(exclude={"name", "service_tag"}))
