"""ESXi hosts in the inventory: what each vCenter reports, linked or not to a server.

A vCenter sync hands over one :class:`HostSighting` per host the vCenter
reports now; :func:`record_sightings` upserts them all in the caller's one
transaction and marks the vCenter's other hosts ``gone`` (kept, not
deleted: the history of where a server ran ESXi stays). Linking is the
caller's decision (it matched service tags and knows about duplicates); the
store only refuses a link to a server it does not have.

No dependency on ``clients.vsphere``: :meth:`HostSighting.from_host` builds
a sighting from any object with the same attribute names.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from clients.errors import PreconditionError
from clients.inventory.merge import normalize_tag
from clients.inventory.schema import EsxiHostRow, ServerRow

__all__ = [
    "EsxiHostCounts",
    "EsxiHostRecord",
    "HostSighting",
    "list_hosts",
    "record_sightings",
]

# Columns a sighting sets; a difference in any of them makes the row "updated".
_TRACKED = (
    "name",
    "cluster",
    "service_tag",
    "esxi_version",
    "build",
    "connection_state",
    "in_maintenance",
)


class HostSighting(BaseModel):
    """One ESXi host as a vCenter reports it now, and the server it is linked to.

    ``service_tag`` is compared upper-case without blanks, as the servers' tags are.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)

    moid: str = Field(min_length=1, description="Managed object id, e.g. host-17")
    name: str = Field(min_length=1, description="Host name in vCenter")
    cluster: str | None = Field(default=None, description="Cluster name; None when standalone")
    service_tag: str | None = Field(
        default=None, description="Dell service tag from otherIdentifyingInfo / serial"
    )
    esxi_version: str | None = Field(default=None, description="ESXi version, e.g. 8.0.3")
    build: str | None = Field(default=None, description="ESXi build number")
    connection_state: str = Field(description="connected, disconnected or notResponding")
    in_maintenance: bool = Field(description="Whether the host is in maintenance mode")
    server_identity: str | None = Field(
        default=None, description="Identity of the inventory server it runs on; None: unmatched"
    )

    @field_validator("service_tag")
    @classmethod
    def _normalize_tag(cls, value: str | None) -> str | None:
        return normalize_tag(value)

    @classmethod
    def from_host(cls, host: object, *, server_identity: str | None = None) -> HostSighting:
        """Build a sighting from any host object with the same attribute names.

        Args:
            host: E.g. a ``clients.vsphere.EsxiHost`` (other attributes are ignored).
            server_identity: The linked server's identity, None when unmatched.

        Returns:
            The validated sighting.

        Raises:
            pydantic.ValidationError: A required attribute is missing or invalid.
        """
        data: dict[str, Any] = {
            name: getattr(host, name)
            for name in cls.model_fields
            if name != "server_identity" and hasattr(host, name)
        }
        return cls.model_validate({**data, "server_identity": server_identity})


class EsxiHostCounts(BaseModel):
    """What :func:`record_sightings` did with one vCenter's hosts."""

    model_config = ConfigDict(frozen=True)

    new: int = Field(default=0, description="Hosts stored for the first time")
    updated: int = Field(default=0, description="Hosts whose fields, link or gone flag changed")
    unchanged: int = Field(default=0, description="Hosts as stored (only last_seen moved)")
    gone: int = Field(default=0, description="Hosts no longer reported, marked gone now")
    linked: int = Field(default=0, description="Sightings linked to a server")
    unmatched: int = Field(default=0, description="Sightings with no server")
    gone_hosts: list[str] = Field(
        default_factory=list, description="Names of the hosts marked gone now, sorted"
    )


class EsxiHostRecord(BaseModel):
    """An ESXi host as the inventory knows it."""

    model_config = ConfigDict(frozen=True)

    vcenter: str
    moid: str
    name: str
    cluster: str | None = None
    service_tag: str | None = None
    esxi_version: str | None = None
    build: str | None = None
    connection_state: str
    in_maintenance: bool
    server_identity: str | None = None
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    gone: bool = False


def _check_batch(vcenter: str, sightings: Sequence[HostSighting], seen_at: datetime) -> str:
    label = vcenter.strip()
    if not label:
        raise PreconditionError(subject="esxi hosts", reason="empty vCenter label")
    if seen_at.tzinfo is None:
        raise PreconditionError(subject="esxi hosts", reason="naive seen_at: give a UTC datetime")
    moids = [s.moid for s in sightings]
    duplicates = sorted({m for m in moids if moids.count(m) > 1})
    if duplicates:
        raise PreconditionError(
            subject=f"vCenter {label}", reason=f"moid reported twice: {', '.join(duplicates)}"
        )
    return label


def _server_ids(session: Session, sightings: Sequence[HostSighting]) -> dict[str, int]:
    wanted = {s.server_identity for s in sightings if s.server_identity is not None}
    if not wanted:
        return {}
    query = select(ServerRow.identity, ServerRow.id).where(ServerRow.identity.in_(wanted))
    found = {identity: server_id for identity, server_id in session.execute(query)}
    unknown = sorted(wanted - set(found))
    if unknown:
        raise PreconditionError(
            subject="esxi hosts", reason=f"no server with identity {', '.join(unknown)}"
        )
    return found


def _apply(row: EsxiHostRow, sighting: HostSighting, server_id: int | None) -> bool:
    """Copy a sighting onto its row; return whether anything but last_seen changed."""
    changed = row.gone or row.server_id != server_id
    for name in _TRACKED:
        value = getattr(sighting, name)
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    row.server_id = server_id
    row.gone = False
    return changed


def record_sightings(
    session: Session, vcenter: str, sightings: Sequence[HostSighting], *, seen_at: datetime
) -> EsxiHostCounts:
    """Upsert one vCenter's hosts and mark the ones it no longer reports gone.

    Every sighted host gets ``last_seen = seen_at`` (also when nothing else
    changed: it says when vCenter last reported it); a gone host keeps the
    ``last_seen`` of its last report. Other vCenters' hosts are not touched.

    Args:
        session: An open session; the caller's transaction makes it all or nothing.
        vcenter: The vCenter's label (e.g. ``vcenter.example.com`` or ``host:port``).
        sightings: Every host that vCenter reports now.
        seen_at: When they were read (timezone-aware).

    Returns:
        New, updated, unchanged and gone counts.

    Raises:
        PreconditionError: Empty label, naive ``seen_at``, a moid twice in the
            batch, or a link to a server the inventory does not have.
    """
    label = _check_batch(vcenter, sightings, seen_at)
    server_ids = _server_ids(session, sightings)
    # FOR UPDATE (PostgreSQL): a concurrent sync of the same vCenter waits
    # here instead of both deciding from the same snapshot. SQLite already
    # holds the write lock (BEGIN IMMEDIATE).
    query = select(EsxiHostRow).where(EsxiHostRow.vcenter == label).with_for_update()
    stored = {row.moid: row for row in session.scalars(query)}
    new = updated = unchanged = 0
    for sighting in sightings:
        server_id = server_ids.get(sighting.server_identity or "")
        row = stored.pop(sighting.moid, None)
        if row is None:
            row = EsxiHostRow(vcenter=label, moid=sighting.moid, first_seen=seen_at, gone=False)
            _apply(row, sighting, server_id)
            session.add(row)
            new += 1
        elif _apply(row, sighting, server_id):
            updated += 1
        else:
            unchanged += 1
        row.last_seen = seen_at
    vanished = sorted((row for row in stored.values() if not row.gone), key=lambda r: r.name)
    for row in vanished:
        row.gone = True
    session.flush()
    linked = sum(1 for s in sightings if s.server_identity is not None)
    return EsxiHostCounts(
        new=new,
        updated=updated,
        unchanged=unchanged,
        gone=len(vanished),
        linked=linked,
        unmatched=len(sightings) - linked,
        gone_hosts=[row.name for row in vanished],
    )


def list_hosts(
    session: Session,
    vcenter: str | None = None,
    *,
    unmatched_only: bool = False,
    include_gone: bool = True,
) -> list[EsxiHostRecord]:
    """ESXi hosts with the identity of their server, ordered by vCenter, name, moid.

    Args:
        session: An open session.
        vcenter: Only this vCenter's hosts.
        unmatched_only: Only hosts linked to no server.
        include_gone: Also hosts their vCenter no longer reports.

    Returns:
        The matching records.
    """
    query = select(EsxiHostRow, ServerRow.identity).outerjoin(
        ServerRow, EsxiHostRow.server_id == ServerRow.id
    )
    if vcenter is not None:
        query = query.where(EsxiHostRow.vcenter == vcenter.strip())
    if unmatched_only:
        query = query.where(EsxiHostRow.server_id.is_(None))
    if not include_gone:
        query = query.where(EsxiHostRow.gone.is_(False))
    query = query.order_by(EsxiHostRow.vcenter, EsxiHostRow.name, EsxiHostRow.moid)
    return [
        EsxiHostRecord(
            vcenter=row.vcenter,
            moid=row.moid,
            name=row.name,
            cluster=row.cluster,
            service_tag=row.service_tag,
            esxi_version=row.esxi_version,
            build=row.build,
            connection_state=row.connection_state,
            in_maintenance=row.in_maintenance,
            server_identity=identity,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            gone=row.gone,
        )
        for row, identity in session.execute(query)
    ]
