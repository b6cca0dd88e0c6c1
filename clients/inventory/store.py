"""The inventory store: the source of truth for machines.

SQLAlchemy 2 with a synchronous engine (Prefect tasks call it from worker
threads). SQLite by default, PostgreSQL by URL for teams and several
workers. Opening the store migrates the schema to head.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from clients.errors import PreconditionError
from clients.inventory import hosts, machines
from clients.inventory.access import MachineEntry
from clients.inventory.engine import db_errors, make_engine, normalize_url, redacted, sqlite_path
from clients.inventory.hosts import EsxiHostCounts, EsxiHostRecord, HostSighting
from clients.inventory.machines import find_server, parse_endpoint, to_record
from clients.inventory.merge import upsert_observation
from clients.inventory.migrate import upgrade_to_head
from clients.inventory.models import (
    ServerObservation,
    ServerRecord,
    ServerStatus,
    UpsertResult,
)
from clients.inventory.schema import ServerRow

__all__ = ["Inventory", "parse_endpoint"]

_ANNOTATABLE = ("vcenter_host", "maas_system_id")


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
            row = find_server(session, key)
            return to_record(row) if row is not None else None

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
        with self._transaction() as session:
            return machines.list_records(session, status=status, model=model)

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
            row = find_server(session, key)
            if row is None:
                raise PreconditionError(subject=key, reason="no such server in the inventory")
            for name, value in links.items():
                setattr(row, name, value)
            if attributes:
                merged = {**(row.attributes or {}), **attributes}
                row.attributes = {k: v for k, v in merged.items() if v is not None}
            session.flush()
            return to_record(row)

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
        with self._transaction() as session:
            return machines.register(session, entries)

    def access_entries(self) -> builtins.list[MachineEntry]:
        """Every machine that has reboot paths, as import entries (for ``export --access``).

        Returns:
            Entries ordered by identity; importing them again changes nothing.
        """
        with self._transaction() as session:
            return machines.access_entries(session)

    def export(self) -> builtins.list[dict[str, Any]]:
        """Dump every server as plain data (JSON types only) for YAML or JSON.

        Returns:
            One dict per server, as :class:`ServerRecord` fields; timestamps ISO 8601 UTC.
        """
        return [record.model_dump(mode="json") for record in self.list()]

    def record_esxi_hosts(
        self,
        vcenter: str,
        sightings: Sequence[HostSighting],
        *,
        seen_at: datetime | None = None,
    ) -> EsxiHostCounts:
        """Store every ESXi host one vCenter reports now, in one transaction.

        Hosts are keyed by ``(vcenter, moid)``. A known host whose fields, link
        or gone flag differ is updated; one that matches is unchanged (only its
        ``last_seen`` moves to ``seen_at``). Hosts of this vCenter missing from
        ``sightings`` are marked gone, never deleted; other vCenters' hosts are
        not touched. Re-running with the same sightings changes nothing else.

        Args:
            vcenter: The vCenter's label (as the sync names it, e.g. ``host:port``).
            sightings: Every host that vCenter reports (an empty list marks all gone).
            seen_at: When vCenter was read (timezone-aware); now when None.

        Returns:
            New, updated, unchanged and gone counts, linked/unmatched sightings,
            and the names of the hosts marked gone by this call.

        Raises:
            PreconditionError: Empty label, naive ``seen_at``, a moid twice, or a
                ``server_identity`` the inventory does not have (nothing is written).
            BusyError: A concurrent sync inserted the same host (retry updates it).
            TransportError: The database is unreachable or stayed locked.
        """
        when = seen_at if seen_at is not None else datetime.now(UTC)
        with self._transaction() as session:
            return hosts.record_sightings(session, vcenter, sightings, seen_at=when)

    def esxi_hosts(
        self,
        vcenter: str | None = None,
        *,
        unmatched_only: bool = False,
        include_gone: bool = True,
    ) -> builtins.list[EsxiHostRecord]:
        """List stored ESXi hosts with the identity of their linked server.

        Args:
            vcenter: Only this vCenter's hosts (its label).
            unmatched_only: Only hosts linked to no inventory server.
            include_gone: Also hosts their vCenter no longer reports.

        Returns:
            Records ordered by vCenter, name and moid.
        """
        with self._transaction() as session:
            return hosts.list_hosts(
                session, vcenter, unmatched_only=unmatched_only, include_gone=include_gone
            )
