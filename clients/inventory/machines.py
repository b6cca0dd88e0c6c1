"""Finding servers and recording their reboot paths, inside an open session.

The functions take a SQLAlchemy :class:`~sqlalchemy.orm.Session` inside a
transaction (the caller commits): :class:`~clients.inventory.store.Inventory`
opens one per call and keeps only thin methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from clients.errors import PreconditionError
from clients.inventory.access import MachineAccess, MachineEntry
from clients.inventory.merge import normalize_tag
from clients.inventory.models import FirmwareObservation, ServerRecord, ServerStatus
from clients.inventory.schema import ServerRow

__all__ = [
    "access_entries",
    "find_server",
    "list_records",
    "parse_endpoint",
    "register",
    "to_record",
]


def parse_endpoint(key: str) -> tuple[str, int | None]:
    """Split ``address``, ``address:port`` or ``[v6]:port`` into its parts.

    Args:
        key: What a user typed.

    Returns:
        The address and the port (None when not given).
    """
    key = key.strip()
    if key.startswith("["):
        host, _, rest = key[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    if key.count(":") == 1:
        host, _, port = key.partition(":")
        if port.isdigit():
            return host, int(port)
    return key, None


def to_record(row: ServerRow) -> ServerRecord:
    """A row and its firmware as a detached, validated record.

    Args:
        row: A loaded server row (firmware loaded too).

    Returns:
        The record.
    """
    data: dict[str, Any] = {
        column.key: getattr(row, column.key) for column in ServerRow.__table__.columns
    }
    data["attributes"] = dict(row.attributes or {})
    data["firmware"] = [
        FirmwareObservation.model_validate(fw, from_attributes=True) for fw in row.firmware
    ]
    return ServerRecord.model_validate(data)


def find_server(session: Session, key: str) -> ServerRow | None:
    """Find one server by service tag, identity, FQDN or BMC address.

    Args:
        session: An open session.
        key: As for :meth:`clients.inventory.store.Inventory.get`.

    Returns:
        The row (firmware loaded), or None when nothing matches.

    Raises:
        PreconditionError: A bare address matches servers on several ports.
    """
    key = key.strip()
    if not key:
        return None
    by_name = select(ServerRow).where(
        (ServerRow.identity == key)
        | (ServerRow.service_tag == normalize_tag(key))
        | (ServerRow.identity == key.lower())
        | (ServerRow.fqdn == key.lower().rstrip("."))
    )
    row = session.scalars(by_name.options(selectinload(ServerRow.firmware))).first()
    if row is not None:
        return row
    address, port = parse_endpoint(key)
    query = select(ServerRow).where(ServerRow.bmc_address == address)
    if port is not None:
        query = query.where(ServerRow.bmc_port == port)
    rows = list(session.scalars(query.options(selectinload(ServerRow.firmware))))
    if len(rows) > 1:
        ports = ", ".join(str(r.bmc_port) for r in rows)
        raise PreconditionError(
            subject=key,
            reason=f"{len(rows)} servers at this address (ports {ports}): give address:port",
        )
    return rows[0] if rows else None


def list_records(
    session: Session, *, status: ServerStatus | None = None, model: str | None = None
) -> list[ServerRecord]:
    """Servers with their firmware, ordered by identity.

    Args:
        session: An open session.
        status: Only servers with this status.
        model: Only servers of this model (exact match).

    Returns:
        The matching records.
    """
    query = select(ServerRow).options(selectinload(ServerRow.firmware))
    if status is not None:
        query = query.where(ServerRow.status == ServerStatus(status).value)
    if model is not None:
        query = query.where(ServerRow.model == model)
    return [to_record(row) for row in session.scalars(query.order_by(ServerRow.identity))]


def register(session: Session, entries: Iterable[MachineEntry]) -> dict[str, int]:
    """Record machines and their reboot paths (see :meth:`Inventory.register`).

    Args:
        session: An open session inside the import's one transaction.
        entries: Validated entries.

    Returns:
        ``{"created": n, "updated": m}``.

    Raises:
        PreconditionError: An entry's tag and name match two different machines,
            or its name is taken by another machine.
    """
    counts = {"created": 0, "updated": 0}
    for entry in entries:
        row = _match_entry(session, entry)
        if row is None:
            now = datetime.now(UTC)
            row = ServerRow(
                identity=entry.service_tag or str(entry.name),
                status=ServerStatus.REGISTERED.value,
                first_seen=now,
                last_seen=now,
                attributes={},
            )
            session.add(row)
            counts["created"] += 1
        else:
            counts["updated"] += 1
        if entry.service_tag is not None:
            row.service_tag = entry.service_tag
        if entry.name is not None:
            row.fqdn = entry.name
        row.access = entry.access().model_dump(mode="json", exclude_none=True)
        session.flush()
    return counts


def _match_entry(session: Session, entry: MachineEntry) -> ServerRow | None:
    by_tag = find_server(session, entry.service_tag) if entry.service_tag else None
    by_name = None
    if entry.name is not None:
        query = select(ServerRow).where(
            (ServerRow.fqdn == entry.name) | (ServerRow.identity == entry.name)
        )
        by_name = session.scalars(query).first()
    if by_tag is not None and by_name is not None and by_tag.id != by_name.id:
        raise PreconditionError(
            subject=str(entry.name),
            reason=(
                f"name belongs to {by_name.identity} but service tag {entry.service_tag} "
                f"to {by_tag.identity}"
            ),
        )
    return by_tag or by_name


def access_entries(session: Session) -> list[MachineEntry]:
    """Every machine that has reboot paths, as import entries (for ``export --access``).

    Args:
        session: An open session.

    Returns:
        Entries ordered by identity; importing them again changes nothing.
    """
    result: list[MachineEntry] = []
    for record in list_records(session):
        if record.access == MachineAccess() and record.status != ServerStatus.REGISTERED:
            continue
        result.append(
            MachineEntry.model_validate(
                {
                    "name": record.fqdn,
                    "service_tag": record.service_tag,
                    **record.access.model_dump(exclude_none=True),
                }
            )
        )
    return result
