"""The pending updates ``GetRepoBasedUpdateList`` reports (IDRAC.md, repository updates).

Frozen models parsed from the CIM XML ``PackageList`` of a dry run of
InstallFromRepository; re-exported by :mod:`clients.redfish.jobs`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from clients.firmware._xml import local_name, parse_untrusted_xml
from clients.redfish.models import ComponentKind, classify_component

__all__ = ["RepoUpdate", "parse_package_list"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RepoUpdate(_Frozen):
    """One ``DCIM_RepoUpdateSWID`` instance of ``GetRepoBasedUpdateList``: one pending update."""

    display_name: str | None = None
    package_name: str | None = None
    package_path: str | None = None
    package_version: str | None = None
    component_id: str | None = None
    component_type: str | None = None
    criticality: str | None = None
    reboot_type: str | None = None
    target: str | None = None
    installed_versions: tuple[str, ...] = ()
    job_id: str | None = None

    @property
    def installed_version(self) -> str | None:
        """The version installed now (first of ``ComponentInstalledVersion``)."""
        return self.installed_versions[0] if self.installed_versions else None

    @property
    def criticality_label(self) -> str | None:
        """1 Recommended, 2 Urgent, 3 Optional."""
        labels = {"1": "Recommended", "2": "Urgent", "3": "Optional"}
        return labels.get(self.criticality or "", self.criticality)

    @property
    def fqdd(self) -> str | None:
        """FQDD from ``Target``: ``DCIM:INSTALLED#741__BIOS.Setup.1-1`` -> ``BIOS.Setup.1-1``."""
        if not self.target:
            return None
        if "__" in self.target:
            return self.target.split("__", 1)[1]
        parts = self.target.split("#")  # DCIM:INSTALLED#iDRAC.Embedded.1-1#IDRACinfo
        if len(parts) > 1:
            return parts[1] or None
        return self.target  # a bare FQDD

    @property
    def kind(self) -> ComponentKind:
        """Component kind from the FQDD and component id."""
        return classify_component(self.fqdd or "", self.component_id)


_FIELDS = {
    "DisplayName": "display_name",
    "PackageName": "package_name",
    "PackagePath": "package_path",
    "PackageVersion": "package_version",
    "ComponentID": "component_id",
    "ComponentType": "component_type",
    "Criticality": "criticality",
    "RebootType": "reboot_type",
    "Target": "target",
    "JobID": "job_id",
}


def _values(prop: Any) -> list[str]:
    """VALUE children of a PROPERTY, or of a PROPERTY.ARRAY's VALUE.ARRAY."""
    out: list[str] = []
    for node in prop.iter():
        if local_name(node.tag) == "VALUE" and node.text and node.text.strip():
            out.append(node.text.strip())
    return out


def parse_package_list(xml_text: str, *, target: str) -> list[RepoUpdate]:
    """Parse the CIM XML ``PackageList`` of ``GetRepoBasedUpdateList``.

    Args:
        xml_text: The ``PackageList`` string.
        target: Where it came from.

    Returns:
        One RepoUpdate per ``INSTANCENAME CLASSNAME="DCIM_RepoUpdateSWID"``.

    Raises:
        ProtocolError: Malformed XML.
    """
    root = parse_untrusted_xml(xml_text, target=target)
    updates: list[RepoUpdate] = []
    # An iDRAC sends VALUE.NAMEDINSTANCE > INSTANCENAME (the key) + INSTANCE (the
    # PROPERTY elements); elements without PROPERTY children (the key) are skipped.
    for instance in root.iter():
        if local_name(instance.tag) not in ("INSTANCE", "INSTANCENAME"):
            continue
        if instance.get("CLASSNAME") not in (None, "DCIM_RepoUpdateSWID"):
            continue
        if not any(local_name(p.tag).startswith("PROPERTY") for p in instance):
            continue
        fields: dict[str, Any] = {}
        for prop in instance:
            name = prop.get("NAME")
            values = _values(prop)
            if name == "ComponentInstalledVersion":
                fields["installed_versions"] = tuple(values)
            elif name in _FIELDS and values:
                fields[_FIELDS[name]] = values[0]
        updates.append(RepoUpdate(**fields))
    return updates
