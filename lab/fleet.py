"""What the simulated fleet looks like: pydantic models and the YAML loader.

A fleet file gives fleet-wide settings and a list of entries. An entry with
``count`` is a generated group (``count`` servers of one ``model``, sharing
the entry's other fields such as ``faults``); any other entry is one server.
Entries without ``address`` get the next free host of ``subnet`` in order.

.. code-block:: yaml

    subnet: 127.10.0.0/24
    port: 8443
    bmcs:
      - {count: 6, model: R640}
      - {model: R750, password: not-the-fleet-password}   # wrong credentials
      - {model: R740, faults: {hang: true}}
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clients.errors import PreconditionError
from lab.models import default_components, profile_for
from lab.settings import Durations, Faults

__all__ = [
    "BmcSpec",
    "Component",
    "Durations",
    "Faults",
    "FleetSpec",
    "build_fleet",
    "check_loopback",
    "dell_uuid",
    "load_fleet",
]

# Dell service tags use digits and consonants (no vowels, which avoids words).
_TAG_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"
_MODEL_MIX = ("R640", "R740", "R650", "R750")
_DELL_OUI = (0xD0, 0x94, 0x66)


class Component(BaseModel):
    """One firmware component as the iDRAC inventories it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fqdd: str
    component_id: str
    name: str
    version: str
    updateable: bool = True
    previous_version: str | None = None


class BmcSpec(BaseModel):
    """One simulated server with its iDRAC. Missing fields take model defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    port: int = Field(ge=0, le=65535)
    service_tag: str = Field(min_length=7, max_length=7)
    model: str = "PowerEdge R640"
    board_serial: str
    uuid: str
    host_name: str = ""
    manager_mac: str
    bios_version: str = ""
    idrac_version: str = ""
    cpu_count: int = 2
    memory_gib: int = 0
    components: list[Component] = Field(default_factory=list)
    power_state: Literal["On", "Off"] = "On"
    health: Literal["OK", "Warning", "Critical"] = "OK"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    faults: Faults = Field(default_factory=lambda: Faults())

    @field_validator("address")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        return check_loopback(value)

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        profile = profile_for(str(data.get("model") or "R640"))
        data["model"] = profile.model
        data["bios_version"] = data.get("bios_version") or profile.bios_version
        data["idrac_version"] = data.get("idrac_version") or profile.idrac_version
        data["memory_gib"] = data.get("memory_gib") or profile.memory_gib
        if not data.get("components"):
            data["components"] = default_components(
                profile, bios_version=data["bios_version"], idrac_version=data["idrac_version"]
            )
        return data

    @property
    def key(self) -> str:
        """``address:port`` of this BMC as configured."""
        return f"{self.address}:{self.port}"


class FleetSpec(BaseModel):
    """The whole simulated fleet and its fleet-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subnet: str = "127.10.0.0/24"
    port: int = Field(
        default=8443, ge=0, le=65535, description="0: pick one free port for all BMCs"
    )
    username: str = "root"
    password: str = Field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    speed: float = Field(default=1.0, gt=0)
    max_sessions: int = Field(default=8, ge=1)
    single_host: bool = False
    tls: Literal["ca", "self-signed"] = "ca"
    durations: Durations = Field(default_factory=lambda: Durations())
    bmcs: list[BmcSpec] = Field(default_factory=list)

    @field_validator("subnet")
    @classmethod
    def _loopback_subnet(cls, value: str) -> str:
        net = ipaddress.IPv4Network(value, strict=False)
        if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError(f"{value} is not inside 127.0.0.0/8")
        return str(net)

    @model_validator(mode="after")
    def _unique(self) -> FleetSpec:
        seen: dict[str, int] = {}
        tags: dict[str, int] = {}
        for i, bmc in enumerate(self.bmcs):
            if bmc.key in seen and bmc.port != 0:
                raise ValueError(f"bmcs[{i}]: {bmc.key} already used by bmcs[{seen[bmc.key]}]")
            if bmc.service_tag in tags:
                raise ValueError(
                    f"bmcs[{i}]: service tag {bmc.service_tag} already used by "
                    f"bmcs[{tags[bmc.service_tag]}]"
                )
            seen[bmc.key] = i
            tags[bmc.service_tag] = i
        return self

    @classmethod
    def generate(
        cls,
        *,
        count: int,
        subnet: str = "127.10.0.0/24",
        port: int = 8443,
        seed: int = 0,
        models: tuple[str, ...] = _MODEL_MIX,
        faults: Faults | None = None,
        **settings: Any,
    ) -> FleetSpec:
        """Build a fleet of ``count`` healthy servers, deterministically.

        Args:
            count: Number of BMCs.
            subnet: Loopback subnet the BMCs get consecutive hosts of.
            port: HTTPS port of every BMC (first port in ``single_host`` mode).
            seed: Seed of service tags, serials and MACs.
            models: Models assigned round-robin.
            faults: Faults given to every generated BMC.
            **settings: Other :class:`FleetSpec` fields (``password``, ``speed``...).

        Returns:
            The fleet.
        """
        entries: list[dict[str, Any]] = [{"model": models[i % len(models)]} for i in range(count)]
        if faults is not None:
            for entry in entries:
                entry["faults"] = faults.model_dump()
        return build_fleet({"subnet": subnet, "port": port, "bmcs": entries, **settings}, seed=seed)


def build_fleet(data: dict[str, Any], *, seed: int = 0, source: str = "fleet") -> FleetSpec:
    """Expand groups, assign addresses and identities, and validate a fleet.

    Args:
        data: Fleet settings plus ``bmcs`` entries (groups with ``count`` or single servers).
        seed: Seed of generated identities (a ``seed`` key in ``data`` wins).
        source: Name of the input for error messages (e.g. the file path).

    Returns:
        The validated fleet.

    Raises:
        PreconditionError: If an entry or setting is invalid; names the entry.
    """
    data = dict(data)
    seed = int(data.pop("seed", seed))
    entries = data.pop("bmcs", None) or []
    if not isinstance(entries, list):
        raise PreconditionError(subject=f"{source}: bmcs", reason="must be a list of entries")
    try:
        settings = FleetSpec.model_validate({**data, "bmcs": []})
    except ValidationError as exc:
        raise PreconditionError(subject=f"{source}: settings", reason=_brief(exc)) from exc
    expanded = _expand(entries, source)
    hosts = _HostAllocator(settings, explicit=[e.get("address") for _, e in expanded])
    bmcs: list[BmcSpec] = []
    for index, (label, entry) in enumerate(expanded):
        try:
            bmcs.append(_make_bmc(entry, index=index, seed=seed, hosts=hosts, fleet=settings))
        except (ValidationError, ValueError) as exc:
            reason = _brief(exc) if isinstance(exc, ValidationError) else str(exc)
            raise PreconditionError(subject=f"{source}: {label}", reason=reason) from exc
    try:
        return FleetSpec.model_validate(
            {**settings.model_dump(), "bmcs": [b.model_dump() for b in bmcs]}
        )
    except ValidationError as exc:
        raise PreconditionError(subject=f"{source}: bmcs", reason=_brief(exc)) from exc


def load_fleet(path: Path) -> FleetSpec:
    """Read a fleet YAML file.

    Args:
        path: The YAML file.

    Returns:
        The validated fleet.

    Raises:
        PreconditionError: If the file is missing, not YAML, or an entry is invalid
            (the message names the entry, e.g. ``bmcs[3] (address 127.10.0.9)``).
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PreconditionError(subject=str(path), reason=f"cannot read fleet: {exc}") from exc
    if not isinstance(data, dict):
        raise PreconditionError(subject=str(path), reason="a fleet file must be a YAML mapping")
    return build_fleet(data, source=str(path))


def _expand(entries: list[Any], source: str) -> list[tuple[str, dict[str, Any]]]:
    expanded: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        label = _label(i, entry)
        if not isinstance(entry, dict):
            raise PreconditionError(subject=f"{source}: {label}", reason="must be a mapping")
        entry = dict(entry)
        entry.pop("name", None)
        count = entry.pop("count", None)
        if count is None:
            expanded.append((label, entry))
            continue
        if not isinstance(count, int) or count < 1:
            raise PreconditionError(
                subject=f"{source}: {label}", reason=f"count must be a positive integer: {count!r}"
            )
        for field in ("address", "service_tag", "board_serial", "uuid", "manager_mac"):
            if field in entry:
                raise PreconditionError(
                    subject=f"{source}: {label}", reason=f"a group (count) cannot set {field}"
                )
        expanded.extend((f"{label} #{n}", dict(entry)) for n in range(count))
    return expanded


def _label(index: int, entry: Any) -> str:
    if isinstance(entry, dict):
        for field in ("name", "address", "service_tag"):
            if entry.get(field):
                return f"bmcs[{index}] ({field} {entry[field]})"
        if entry.get("count"):
            return f"bmcs[{index}] (group of {entry['count']} {entry.get('model', 'R640')})"
    return f"bmcs[{index}]"


class _HostAllocator:
    """Hands out addresses (or single-host ports) in order, skipping explicit ones."""

    def __init__(self, fleet: FleetSpec, *, explicit: list[Any]) -> None:
        self._single = fleet.single_host
        self._port = fleet.port
        self._taken = {str(a) for a in explicit if a}
        self._hosts = ipaddress.ip_network(fleet.subnet).hosts()
        self._next_port = fleet.port

    def next(self) -> tuple[str, int]:
        if self._single:
            port = self._next_port
            self._next_port += 1 if port else 0
            return "127.0.0.1", port
        for host in self._hosts:
            if str(host) not in self._taken:
                self._taken.add(str(host))
                return str(host), self._port
        raise ValueError("subnet has no free address left")


def _make_bmc(
    entry: dict[str, Any], *, index: int, seed: int, hosts: _HostAllocator, fleet: FleetSpec
) -> BmcSpec:
    rng = random.Random(f"{seed}:{index}")
    tag = "".join(rng.choice(_TAG_ALPHABET) for _ in range(7))
    if fleet.single_host:
        # macOS has only 127.0.0.1 on lo0: every BMC there, one port each.
        address, port = hosts.next()
        entry["address"] = address
        entry.setdefault("port", port)
    elif "address" in entry:
        entry.setdefault("port", fleet.port)
    else:
        entry["address"], port = hosts.next()
        entry.setdefault("port", port)
    entry.setdefault("service_tag", tag)
    entry.setdefault("board_serial", f"CN{rng.randrange(10**12):012d}")
    entry.setdefault("uuid", dell_uuid(str(entry["service_tag"])))
    entry.setdefault("host_name", f"node{index + 1:04d}.lab.example")
    mac = (*_DELL_OUI, *(rng.randrange(256) for _ in range(3)))
    entry.setdefault("manager_mac", ":".join(f"{b:02x}" for b in mac))
    return BmcSpec.model_validate(entry)


def check_loopback(address: str) -> str:
    """Normalise an address the lab may bind: IPv4 inside 127.0.0.0/8 only.

    Args:
        address: Address text.

    Returns:
        The normalised address.

    Raises:
        ValueError: Not an IPv4 loopback address.
    """
    addr = ipaddress.ip_address(address)
    if addr.version != 4 or not addr.is_loopback:
        raise ValueError(f"{address} is not an IPv4 loopback address (the lab binds 127/8 only)")
    return str(addr)


def dell_uuid(service_tag: str) -> str:
    """Derive a Dell-style system UUID (``4c4c4544-...`` = "DELL") from a service tag.

    Args:
        service_tag: Seven-character service tag.

    Returns:
        A UUID string that encodes the tag, as Dell system UUIDs do.
    """
    b = [ord(c) for c in service_tag.upper().ljust(7, "0")[:7]]
    return (
        f"4c4c4544-00{b[0]:02x}-{b[1]:02x}10-80{b[2]:02x}-"
        f"{b[3] | 0x80:02x}c04f{b[4]:02x}{b[5]:02x}{b[6]:02x}"
    )


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)
