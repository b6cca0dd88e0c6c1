"""How an observation lands in the inventory: identity, moves, placeholders.

A server's identity is its service tag. Before the tag is known (the BMC
refused our credentials, or answered without it) the server is kept as a
placeholder: ``uuid:<UUID>`` when the UUID was read, else
``bmc:<address>:<port>``. When a stronger identity shows up for the same
machine the placeholder is promoted or merged, never duplicated. A BMC
address belongs to at most one server: whoever answers there now takes it,
and any other row still claiming it loses its address and goes offline.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from clients.inventory.models import (
    OBSERVED_FIELDS,
    ServerObservation,
    ServerStatus,
    UpsertResult,
)
from clients.inventory.schema import FirmwareRow, ServerRow

__all__ = ["identity_for", "normalize_tag", "normalize_uuid", "upsert_observation"]

_LINK_FIELDS = ("vcenter_host", "maas_system_id", "fqdn")


def normalize_tag(tag: str | None) -> str | None:
    """Service tags are compared upper-case without surrounding blanks."""
    value = (tag or "").strip().upper()
    return value or None


def normalize_uuid(uuid: str | None) -> str | None:
    """UUIDs are compared lower-case without surrounding blanks."""
    value = (uuid or "").strip().lower()
    return value or None


def identity_for(tag: str | None, uuid: str | None, address: str, port: int) -> str:
    """Return the identity of a server from the strongest thing known about it.

    Args:
        tag: Normalized service tag, or None.
        uuid: Normalized UUID, or None.
        address: BMC address.
        port: BMC port.

    Returns:
        The tag, else ``uuid:<uuid>``, else ``bmc:<address>:<port>``.
    """
    if tag:
        return tag
    if uuid:
        return f"uuid:{uuid}"
    return f"bmc:{address}:{port}"


def _is_placeholder(identity: str) -> bool:
    return identity.startswith(("uuid:", "bmc:"))


def _by_identity(session: Session, identity: str) -> ServerRow | None:
    return session.scalars(select(ServerRow).where(ServerRow.identity == identity)).one_or_none()


def _at_address(session: Session, address: str, port: int) -> list[ServerRow]:
    query = select(ServerRow).where(ServerRow.bmc_address == address, ServerRow.bmc_port == port)
    return list(session.scalars(query))


def _find_row(
    session: Session, identity: str, tag: str | None, uuid: str | None, address: str, port: int
) -> ServerRow | None:
    """Find the row this observation is about, without weakening any identity."""
    row = _by_identity(session, identity)
    if row is not None or tag:
        return row
    if uuid:
        # No tag read this time, but a known server has this UUID.
        query = select(ServerRow).where(ServerRow.uuid == uuid).order_by(ServerRow.id)
        return session.scalars(query).first()
    # Nothing identifying was read (e.g. login refused): the server that
    # answered at this address last time is the best guess.
    rows = _at_address(session, address, port)
    return rows[0] if rows else None


def _placeholders(
    session: Session, tag: str | None, uuid: str | None, address: str, port: int
) -> list[ServerRow]:
    """Weaker rows of the same machine: the ones to promote or merge."""
    names = [f"bmc:{address}:{port}"]
    if tag and uuid:
        names.insert(0, f"uuid:{uuid}")
    if not tag and not uuid:
        return []
    query = select(ServerRow).where(ServerRow.identity.in_(names)).order_by(ServerRow.first_seen)
    return list(session.scalars(query))


def _absorb(row: ServerRow, other: ServerRow) -> None:
    """Copy into ``row`` what only the placeholder ``other`` knew."""
    for name in (*OBSERVED_FIELDS, *_LINK_FIELDS):
        if getattr(row, name) is None and getattr(other, name) is not None:
            setattr(row, name, getattr(other, name))
    row.attributes = {**(other.attributes or {}), **(row.attributes or {})}
    if not row.access and other.access:
        row.access = dict(other.access)
    row.first_seen = min(row.first_seen, other.first_seen)
    if not row.firmware and other.firmware:
        row.firmware = [_copy_firmware(fw) for fw in other.firmware]


def _copy_firmware(fw: FirmwareRow) -> FirmwareRow:
    return FirmwareRow(
        fqdd=fw.fqdd,
        component_id=fw.component_id,
        kind=fw.kind,
        name=fw.name,
        version=fw.version,
        updateable=fw.updateable,
    )


def _evict(session: Session, address: str, port: int, keep: ServerRow | None) -> None:
    """Take the address away from every other row that still claims it."""
    for other in _at_address(session, address, port):
        if other is not keep:
            other.bmc_address = None
            other.bmc_port = None
            other.status = ServerStatus.OFFLINE.value
    session.flush()


def _apply(row: ServerRow, obs: ServerObservation, tag: str | None, uuid: str | None) -> None:
    for name in OBSERVED_FIELDS:
        value = getattr(obs, name)
        if value is not None:
            setattr(row, name, value)
    if uuid:
        row.uuid = uuid
    if tag:
        row.service_tag = tag
    row.status = obs.status.value
    row.last_seen = obs.seen_at
    if obs.firmware:
        # The observation is the complete installed set: replace, never append.
        row.firmware = [FirmwareRow(**fw.model_dump()) for fw in obs.firmware]


def upsert_observation(
    session: Session, obs: ServerObservation, *, run_id: str | None
) -> UpsertResult:
    """Record one observation in the session (the caller commits).

    Args:
        session: An open session inside a transaction.
        obs: What discovery saw at one BMC address.
        run_id: Discovery (flow) run that saw it, stored on the row.

    Returns:
        CREATED for a machine never seen, MOVED when a known machine answered
        at a different address, else UPDATED.
    """
    tag, uuid = normalize_tag(obs.service_tag), normalize_uuid(obs.uuid)
    address, port = obs.bmc_address, obs.bmc_port
    identity = identity_for(tag, uuid, address, port)
    row = _find_row(session, identity, tag, uuid, address, port)
    weaker = [p for p in _placeholders(session, tag, uuid, address, port) if p is not row]
    if weaker:
        if row is None:
            row = weaker.pop(0)
            row.identity = identity
        for placeholder in weaker:
            _absorb(row, placeholder)
            session.delete(placeholder)
    session.flush()
    _evict(session, address, port, keep=row)
    if row is None:
        row = ServerRow(identity=identity, first_seen=obs.seen_at, attributes={})
        session.add(row)
        result = UpsertResult.CREATED
    elif (row.bmc_address, row.bmc_port) != (address, port):
        result = UpsertResult.MOVED
    else:
        result = UpsertResult.UPDATED
    row.bmc_address, row.bmc_port = address, port
    _apply(row, obs, tag, uuid)
    if run_id is not None:
        row.discovery_run_id = run_id
    session.flush()
    return result
