"""The inventory store: the source of truth for machines.

SQLAlchemy 2 with a synchronous engine (Prefect tasks call it from worker
threads). SQLite by default, PostgreSQL by URL for teams and several
workers. Opening the store migrates the schema to head.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from clients.errors import PreconditionError
from clients.inventory.access import MachineAccess, MachineEntry
from clients.inventory.engine import db_errors, make_engine, normalize_url, redacted, sqlite_path
from clients.inventory.merge import normalize_tag, upsert_observation
from clients.inventory.migrate import upgrade_to_head
from clients.inventory.models import (
    FirmwareObservation,
    ServerObservation,
    ServerRecord,
    ServerStatus,
    UpsertResult,
)
from clients.inventory.schema import ServerRow

__all__ = ["Inventory", "parse_endpoint"]

_ANNOTATABLE = ("vcenter_host", "maas_system_id")


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


def _to_record(row: ServerRow) -> ServerRecord:
    data: dict[str, Any] = {
        column.key: getattr(row, column.key) for column in ServerRow.__table__.columns
    }
    data["attributes"] = dict(row.attributes or {})
    data["firmware"] = [
        FirmwareObservation(
            fqdd=fw.fqdd,
            component_id=fw.component_id,
            kind=fw.kind,
            name=fw.name,
            version=fw.version,
            updateable=fw.updateable,
        )
        for fw in row.firmware
    ]
    return ServerRecord.model_validate(data)


class Inventory:
    """Servers, their BMC addresses and firmware, in a SQL database.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db`` or
            ``postgresql+psycopg://user:pass@host/db`` (``postgresql://`` is
            accepted and given the psycopg driver).

    Use as a context manager (or call :meth:`open` / :meth:`close`); the
    constructor does no I/O.
    """

    def __init__(self, *, url: str) -> None:
        self._url = normalize_url(url)
        self._target = redacted(self._url)
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    def __repr__(self) -> str:
        return f"Inventory(url={self._target!r})"

    @property
    def url(self) -> str:
        """The database URL with the password hidden."""
        return self._target

    def open(self) -> None:
        """Connect and migrate the schema to head (a no-op when already there).

        Raises:
            TransportError: The database cannot be reached or created.
        """
        if self._engine is not None:
            return
        path = sqlite_path(self._url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(self._url)
        try:
            with db_errors(self._target):
                upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        """Release every connection; the store can be opened again."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None
        self._sessions = None

    def __enter__(self) -> Inventory:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        if self._sessions is None:
            raise PreconditionError(
                subject="inventory", reason="not open: use 'with Inventory(url=...)' or open()"
            )
        with db_errors(self._target), self._sessions() as session, session.begin():
            yield session

    def upsert(self, obs: ServerObservation, *, run_id: str | None = None) -> UpsertResult:
        """Record what discovery saw at one BMC address.

        The identity is the service tag if known, else ``uuid:<UUID>``, else
        ``bmc:<address>:<port>``. The same identity at a new address is a
        move (no duplicate); any other row still claiming the address loses
        it and goes offline; a placeholder row of the same machine is merged
        into the real row once the tag is known. Fields the observation left
        ``None`` (and an empty firmware list) keep their stored values.

        Args:
            obs: The observation.
            run_id: Discovery run that made it.

        Returns:
            CREATED, UPDATED or MOVED.

        Raises:
            BusyError: A concurrent writer created the same server (retry updates it).
            TransportError: The database is unreachable or stayed locked.
        """
        with self._transaction() as session:
            return upsert_observation(session, obs, run_id=run_id)

    def upsert_many(
        self, observations: Iterable[ServerObservation], *, run_id: str | None = None
    ) -> dict[UpsertResult, int]:
        """Record a batch of observations in one transaction (all or nothing).

        Args:
            observations: Observations, applied in order (see :meth:`upsert`).
            run_id: Discovery run that made them.

        Returns:
            How many observations had each outcome (every outcome present, maybe 0).

        Raises:
            BusyError: A concurrent writer created one of the servers (retry updates it).
            TransportError: The database is unreachable or stayed locked.
        """
        counts = dict.fromkeys(UpsertResult, 0)
        with self._transaction() as session:
            for obs in observations:
                counts[upsert_observation(session, obs, run_id=run_id)] += 1
        return counts

    def mark_offline(
        self,
        *,
        scanned: Iterable[tuple[str, int]],
        seen: Iterable[tuple[str, int]],
        run_id: str | None,
    ) -> int:
        """Mark servers offline whose address was scanned but did not answer.

        Their address is kept (it is where they were last seen) until another
        server answers there.

        Args:
            scanned: Every ``(address, port)`` the discovery probed.
            seen: The ones where a BMC answered.
            run_id: Discovery run that noticed, stored on the rows it changed.

        Returns:
            How many servers went from another status to OFFLINE.
        """
        missing = {(a, int(p)) for a, p in scanned} - {(a, int(p)) for a, p in seen}
        if not missing:
            return 0
        changed = 0
        with self._transaction() as session:
            query = select(ServerRow).where(
                ServerRow.bmc_address.is_not(None),
                ServerRow.status != ServerStatus.OFFLINE.value,
            )
            for row in session.scalars(query):
                if (row.bmc_address, row.bmc_port) in missing:
                    row.status = ServerStatus.OFFLINE.value
                    if run_id is not None:
                        row.discovery_run_id = run_id
                    changed += 1
        return changed

    def _find(self, session: Session, key: str) -> ServerRow | None:
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

    def get(self, key: str) -> ServerRecord | None:
        """Find one server by service tag, identity, or BMC address.

        Args:
            key: ``8CYCZ23``, ``web01.example.com`` (FQDN), ``uuid:...``, ``bmc:127.10.0.5:8443``,
                ``127.10.0.5`` or ``127.10.0.5:8443``.

        Returns:
            The record, or None when nothing matches.

        Raises:
            PreconditionError: A bare address matches servers on several ports.
        """
        with self._transaction() as session:
            row = self._find(session, key)
            return _to_record(row) if row is not None else None

    def list(
        self, *, status: ServerStatus | None = None, model: str | None = None
    ) -> builtins.list[ServerRecord]:
        """List servers, ordered by identity.

        Args:
            status: Only servers with this status.
            model: Only servers of this model (exact match, e.g. ``PowerEdge R640``).

        Returns:
            The matching records with their firmware.
        """
        query = select(ServerRow).options(selectinload(ServerRow.firmware))
        if status is not None:
            query = query.where(ServerRow.status == ServerStatus(status).value)
        if model is not None:
            query = query.where(ServerRow.model == model)
        with self._transaction() as session:
            return [_to_record(row) for row in session.scalars(query.order_by(ServerRow.identity))]

    def known_addresses(self, *, status: ServerStatus | None = None) -> dict[tuple[str, int], str]:
        """Map every claimed BMC address to the identity of its server.

        Args:
            status: Only servers with this status (e.g. ONLINE for discovery's
                ``refresh=False`` shortcut).

        Returns:
            ``{(address, port): identity}``.
        """
        query = select(ServerRow.bmc_address, ServerRow.bmc_port, ServerRow.identity).where(
            ServerRow.bmc_address.is_not(None), ServerRow.bmc_port.is_not(None)
        )
        if status is not None:
            query = query.where(ServerRow.status == ServerStatus(status).value)
        with self._transaction() as session:
            return {
                (str(address), int(port)): identity
                for address, port, identity in session.execute(query)
            }

    def annotate(
        self,
        key: str,
        *,
        attributes: dict[str, Any] | None = None,
        **links: str | None,
    ) -> ServerRecord:
        """Set links to other systems and free-form attributes of one server.

        Args:
            key: As for :meth:`get`.
            attributes: Keys merged into the server's attributes (None values delete).
            **links: ``vcenter_host`` or ``maas_system_id`` (reboot paths are
                set with :meth:`register`).

        Returns:
            The updated record.

        Raises:
            PreconditionError: Unknown server or unknown link name.
        """
        unknown = sorted(set(links) - set(_ANNOTATABLE))
        if unknown:
            raise PreconditionError(subject="annotate", reason=f"unknown fields {unknown}")
        with self._transaction() as session:
            row = self._find(session, key)
            if row is None:
                raise PreconditionError(subject=key, reason="no such server in the inventory")
            for name, value in links.items():
                setattr(row, name, value)
            if attributes:
                merged = {**(row.attributes or {}), **attributes}
                row.attributes = {k: v for k, v in merged.items() if v is not None}
            session.flush()
            return _to_record(row)

    def register(self, entries: Iterable[MachineEntry]) -> dict[str, int]:
        """Record machines and their reboot paths (an import), all or nothing.

        A machine is matched by service tag, then by FQDN; a match gets the
        entry's FQDN/service tag (when given) and its reboot paths replaced by
        the entry's (the file is the truth for access). An unknown machine is
        created with status REGISTERED and identity = service tag, else FQDN.

        Args:
            entries: Validated entries (see :func:`clients.inventory.access_file.load`).

        Returns:
            ``{"created": n, "updated": m}``.

        Raises:
            PreconditionError: An entry's tag and name match two different machines,
                or its name is taken by another machine.
        """
        counts = {"created": 0, "updated": 0}
        with self._transaction() as session:
            for entry in entries:
                row = self._match_entry(session, entry)
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

    def _match_entry(self, session: Session, entry: MachineEntry) -> ServerRow | None:
        by_tag = self._find(session, entry.service_tag) if entry.service_tag else None
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

    def access_entries(self) -> builtins.list[MachineEntry]:
        """Every machine that has reboot paths, as import entries (for ``export --access``).

        Returns:
            Entries ordered by identity; importing them again changes nothing.
        """
        result: builtins.list[MachineEntry] = []
        for record in self.list():
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

    def export(self) -> builtins.list[dict[str, Any]]:
        """Dump every server as plain data (JSON types only) for YAML or JSON.

        Returns:
            One dict per server, as :class:`ServerRecord` fields; timestamps ISO 8601 UTC.
        """
        return [record.model_dump(mode="json") for record in self.list()]
