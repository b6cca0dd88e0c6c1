"""Which inventory servers a procedure acts on: named ones, or an inventory query."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clients.errors import PreconditionError
from clients.firmware.catalog import model_key
from clients.inventory.models import ServerRecord, ServerStatus
from clients.inventory.store import Inventory

__all__ = ["TargetQuery", "select_servers"]


def _names(values: list[str]) -> list[str]:
    names = [v.strip() for v in values]
    if not all(names):
        raise ValueError("empty entry")
    return names


class TargetQuery(BaseModel):
    """Which inventory servers a procedure acts on: every criterion given must match.

    Example: ``{"models": ["R640"], "clusters": ["prod-a"], "names": ["*.rack12.example"]}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(
        default_factory=list, description="Any of these models (R640 or PowerEdge R640); [] any"
    )
    status: list[ServerStatus] = Field(
        default_factory=lambda: [ServerStatus.ONLINE], min_length=1, description="Any of these"
    )
    clusters: list[str] = Field(
        default_factory=list, description="Any of these vSphere clusters (vcenter-sync); [] any"
    )
    names: list[str] = Field(
        default_factory=list,
        description="Service tags, FQDNs or host names; shell globs (*, ?, [ab]), any case; [] any",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Leave out servers matching these names or globs"
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="Inventory attributes that must equal these values; a dotted key "
        "reaches into a nested one (vcenter.cluster)",
    )

    _strip = field_validator("models", "clusters", "names", "exclude")(_names)

    @field_validator("attributes")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not all(k.strip() and all(k.split(".")) for k in value):
            raise ValueError("attribute keys must be names, dotted for nested ones (rack, a.b)")
        return value

    def matches(self, server: ServerRecord) -> bool:
        """Whether a server is selected.

        Args:
            server: An inventory record.

        Returns:
            True when every criterion given matches.
        """
        cluster = (server.attributes.get("vcenter") or {}).get("cluster")
        model = model_key(server.model or "")
        keys = [k.lower() for k in (server.service_tag, server.identity, server.fqdn) if k]
        keys += [server.host_name.lower()] if server.host_name else []
        return (
            server.status in self.status
            and (not self.models or any(model_key(m) == model for m in self.models))
            and (not self.clusters or cluster in self.clusters)
            and (not self.names or _any_glob(self.names, keys))
            and not _any_glob(self.exclude, keys)
            and all(_attribute(server.attributes, k) == v for k, v in self.attributes.items())
        )

    def describe(self) -> str:
        """The criteria given, for messages (``status=online, models=R640``)."""
        given = self.model_dump(mode="json", exclude_defaults=True)
        given.setdefault("status", [str(s) for s in self.status])
        return ", ".join(f"{k}={v}" for k, v in given.items())


def _any_glob(patterns: list[str], keys: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(k, p.lower()) for p in patterns for k in keys)


_MISSING = object()


def _attribute(attributes: dict[str, Any], key: str) -> Any:
    value: Any = attributes
    for part in key.split("."):
        value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
    return value


def select_servers(
    inventory: Inventory, targets: Sequence[str], query: TargetQuery
) -> list[ServerRecord]:
    """The named servers (each once, all known), else those ``query`` selects.

    Args:
        inventory: An open inventory.
        targets: Keys :meth:`Inventory.get` accepts; empty: use ``query``.
        query: The selection when no targets are named.

    Returns:
        The records, in the order given (or the inventory's order for a query).

    Raises:
        PreconditionError: A target unknown or given twice, or the query selected nothing.
    """
    if not targets:
        everything = inventory.list()
        chosen = [r for r in everything if query.matches(r)]
        if not chosen:
            raise PreconditionError(
                subject="targets",
                reason=f"no server matched the query ({query.describe()}) "
                f"among {len(everything)} in the inventory",
            )
        return chosen
    repeated = sorted({t for t in targets if list(targets).count(t) > 1})
    if repeated:
        raise PreconditionError(subject="targets", reason=f"given twice: {', '.join(repeated)}")
    records = []
    for key in targets:
        record = inventory.get(key)
        if record is None:
            raise PreconditionError(subject=key, reason="not in the inventory")
        records.append(record)
    return records
