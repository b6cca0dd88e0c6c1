"""Lab "Dell Update Packages": what a package is, how it is named, what it contains.

A real DUP is a signed Windows/Linux executable. A lab DUP is a small file
whose content is a JSON header the lab iDRAC reads back after downloading it
(component, version, supported models), so a package really travels over
HTTP and a wrong or missing file really fails the job.

Component kinds follow the project's order of a full server update:
``idrac, bios, cpld, raid, nic, backplane``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lab.fleet import Component, FleetSpec
from lab.models import PROFILES, default_components, profile_for

Kind = Literal["idrac", "bios", "cpld", "raid", "nic", "backplane"]
UPDATE_ORDER: tuple[Kind, ...] = ("idrac", "bios", "cpld", "raid", "nic", "backplane")
DUP_MAGIC = "rackflow-lab-dup/1"

# Stand-ins for the Dell BIOS system IDs a catalog's SupportedSystems carries.
SYSTEM_IDS = {"R640": "0716", "R740": "0715", "R650": "0A6F", "R750": "0A70"}
_PACKAGE_ID_ALPHABET = "0123456789BCDFGHJKMNPRTVWXY"


def component_kind(fqdd: str) -> str:
    """Classify an installed component by FQDD (backplane and disk before RAID).

    Args:
        fqdd: Component FQDD, e.g. ``Enclosure.Internal.0-1:RAID.Integrated.1-1``.

    Returns:
        ``idrac``, ``bios``, ``cpld``, ``raid``, ``nic``, ``backplane``, ``disk``,
        ``psu`` or ``other``.
    """
    head = fqdd.split(":", 1)[0]
    if head.startswith("Disk."):
        return "disk"
    if head.startswith("Enclosure.") or head.startswith("RAID.Backplane"):
        return "backplane"
    prefix = head.split(".", 1)[0]
    return {
        "iDRAC": "idrac",
        "BIOS": "bios",
        "CPLD": "cpld",
        "RAID": "raid",
        "NIC": "nic",
        "PSU": "psu",
    }.get(prefix, "other")


def short_model(model: str) -> str:
    """``PowerEdge R640`` -> ``R640`` (catalogs and indexes use the short name)."""
    return model.removeprefix("PowerEdge").strip().upper()


class Package(BaseModel):
    """One lab Dell Update Package in a repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="File name, e.g. BIOS_8R8XJ_WN64_2.19.2.EXE")
    component: Kind
    component_id: str
    fqdd_prefix: str = Field(description="Installed FQDDs this package applies to start so")
    version: str
    models: list[str] = Field(description="Short model names, e.g. ['R640', 'R740']")
    name: str
    package_id: str = ""

    @field_validator("models")
    @classmethod
    def _short(cls, value: list[str]) -> list[str]:
        return [short_model(m) for m in value]

    @property
    def reboot_type(self) -> str:
        """What applying it restarts: ``IDRAC`` for the iDRAC, else ``HOST``."""
        return "IDRAC" if self.component == "idrac" else "HOST"

    @property
    def component_type(self) -> str:
        """Catalog ComponentType: ``BIOS`` or ``FRMW``."""
        return "BIOS" if self.component == "bios" else "FRMW"

    def applies_to(self, model: str) -> bool:
        """Whether the package supports a model (short or full name)."""
        return short_model(model) in self.models

    def header(self) -> dict[str, Any]:
        """The JSON header the package file carries."""
        return {
            "format": DUP_MAGIC,
            "component_id": self.component_id,
            "kind": self.component,
            "fqdd_prefix": self.fqdd_prefix,
            "version": self.version,
            "models": self.models,
            "name": self.name,
            "package_id": self.package_id,
        }

    def content(self) -> bytes:
        """The file's bytes: a JSON header, then padding like a real executable's body."""
        return json.dumps(self.header(), indent=1).encode() + b"\n" + b"\0" * 512

    def index_entry(self) -> dict[str, Any]:
        """This package's entry in ``index.json``."""
        return {
            "file": self.file,
            "component": self.component,
            "component_id": self.component_id,
            "version": self.version,
            "models": self.models,
            "name": self.name,
        }


def read_header(content: bytes) -> dict[str, Any] | None:
    """Read the header of a downloaded lab DUP.

    Args:
        content: The downloaded bytes.

    Returns:
        The header, or None when the bytes are not a lab DUP (bad signature).
    """
    text = content.split(b"\n\0", 1)[0]
    try:
        header = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("format") != DUP_MAGIC:
        return None
    return header


def newer_version(version: str) -> str:
    """A version one step newer: the last number is incremented, its width kept.

    Args:
        version: e.g. ``2.19.1``, ``7.00.00.174``, ``51.16.0-4076``.

    Returns:
        e.g. ``2.19.2``, ``7.00.00.175``, ``51.16.0-4077``.
    """
    match = re.search(r"(\d+)(\D*)$", version)
    if match is None:
        return version + ".1"
    digits = match.group(1)
    bumped = str(int(digits) + 1).zfill(len(digits))
    return version[: match.start(1)] + bumped + match.group(2)


def package_id(kind: str, version: str, models: list[str]) -> str:
    """A deterministic 5-character Dell-style package id (``8R8XJ``)."""
    digest = hashlib.sha256(f"{kind}:{version}:{','.join(models)}".encode()).digest()
    return "".join(_PACKAGE_ID_ALPHABET[b % len(_PACKAGE_ID_ALPHABET)] for b in digest[:5])


def package_file(kind: str, pkg_id: str, version: str) -> str:
    """A file name in the style of Dell's DUPs for this component kind."""
    names = {
        "idrac": f"iDRAC-with-Lifecycle-Controller_Firmware_{pkg_id}_WN64_{version}_A00.EXE",
        "bios": f"BIOS_{pkg_id}_WN64_{version}.EXE",
        "cpld": f"CPLD_Firmware_{pkg_id}_WN64_{version}_A00.EXE",
        "raid": f"SAS-RAID_Firmware_{pkg_id}_WN64_{version}_A00.EXE",
        "nic": f"Network_Firmware_{pkg_id}_WN64_{version}.EXE",
        "backplane": f"Firmware_{pkg_id}_WN64_{version}_A00.EXE",
    }
    return names[kind]


def make_package(
    *,
    component: Kind,
    component_id: str,
    version: str,
    models: list[str],
    name: str,
    fqdd_prefix: str = "",
    file: str | None = None,
) -> Package:
    """Build a package with a Dell-style id and file name.

    Args:
        component: Component kind.
        component_id: Dell ComponentID it updates (BIOS 159, iDRAC 25227...).
        version: Version it installs.
        models: Models it supports (short or full names).
        name: Display name.
        fqdd_prefix: FQDD prefix of the components it updates (default from the kind).
        file: File name (default: generated Dell-style).

    Returns:
        The package.
    """
    shorts = sorted(short_model(m) for m in models)
    pkg_id = package_id(component, version, shorts)
    return Package(
        file=file or package_file(component, pkg_id, version),
        component=component,
        component_id=component_id,
        fqdd_prefix=fqdd_prefix or _DEFAULT_PREFIX[component],
        version=version,
        models=shorts,
        name=name,
        package_id=pkg_id,
    )


_DEFAULT_PREFIX: dict[str, str] = {
    "idrac": "iDRAC.Embedded.",
    "bios": "BIOS.Setup.",
    "cpld": "CPLD.Embedded.",
    "raid": "RAID.",
    "nic": "NIC.",
    "backplane": "Enclosure.",
}


def default_packages(fleet: FleetSpec | None = None) -> list[Package]:
    """One newer package per model and component kind, so every update has a target.

    For each model of the fleet (every known model when no fleet is given) and
    each kind of :data:`UPDATE_ORDER`, the target is one step newer than the
    highest version installed on that model; models sharing a component id and
    target share one package, as 14G BIOS and iDRAC packages do.

    Args:
        fleet: The fleet whose installed versions the targets are derived from.

    Returns:
        Packages in update order.
    """
    installed: dict[tuple[str, str], Component] = {}
    sources = (
        [(short_model(b.model), b.components) for b in fleet.bmcs]
        if fleet is not None and fleet.bmcs
        else [(short, _profile_components(short)) for short in PROFILES]
    )
    for model, components in sources:
        for comp in components:
            kind = component_kind(comp.fqdd)
            if kind not in UPDATE_ORDER or not comp.updateable:
                continue
            key = (model, kind)
            if key not in installed or version_key(comp.version) > version_key(
                installed[key].version
            ):
                installed[key] = comp
    groups: dict[tuple[str, str, str], list[str]] = {}
    names: dict[tuple[str, str, str], str] = {}
    for (model, kind), comp in installed.items():
        group = (kind, comp.component_id, newer_version(comp.version))
        groups.setdefault(group, []).append(model)
        names[group] = comp.name
    packages = [
        make_package(
            component=kind,  # type: ignore[arg-type]
            component_id=cid,
            version=version,
            models=models,
            name=names[(kind, cid, version)],
        )
        for (kind, cid, version), models in groups.items()
    ]
    return sorted(packages, key=lambda p: (UPDATE_ORDER.index(p.component), p.file))


def _profile_components(short: str) -> list[Component]:
    profile = profile_for(short)
    raw = default_components(
        profile, bios_version=profile.bios_version, idrac_version=profile.idrac_version
    )
    return [Component.model_validate(c) for c in raw]


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key of a version string (``2.19.1`` -> ``(2, 19, 1)``)."""
    return tuple(int(n) for n in re.findall(r"\d+", version))
