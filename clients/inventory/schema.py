"""SQLAlchemy 2 tables of the inventory.

The schema is owned by the Alembic migrations in ``migrations/versions``;
these classes must match the head revision (a test compares them). To change
the schema, change these classes and add a revision (see ``migrate.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = ["VERSION_TABLE", "Base", "EsxiHostRow", "FirmwareRow", "ServerRow", "UtcDateTime"]

# Alembic's version table. Not the default "alembic_version": the inventory
# may share a PostgreSQL database with Prefect's own Alembic-managed schema.
VERSION_TABLE = "inventory_alembic_version"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are
    stored as naive UTC and given back their UTC zone on the way out. Naive
    datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before storing; drop the zone for SQLite."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: give a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Hand back an aware UTC datetime whatever the backend returned."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Named constraints: SQLite batch migrations need names to alter them, and
# the migrations create exactly these names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the inventory tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ServerRow(Base):
    """One physical server, keyed by its identity (service tag when known)."""

    __tablename__ = "servers"
    __table_args__ = (UniqueConstraint("bmc_address", "bmc_port", name="uq_servers_bmc"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity: Mapped[str] = mapped_column(String(160), unique=True)
    service_tag: Mapped[str | None] = mapped_column(String(32), unique=True)
    bmc_address: Mapped[str | None] = mapped_column(String(64))
    bmc_port: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    vendor: Mapped[str | None] = mapped_column(String(128))
    product: Mapped[str | None] = mapped_column(String(128))
    redfish_version: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128), index=True)
    serial: Mapped[str | None] = mapped_column(String(128))
    uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    bios_version: Mapped[str | None] = mapped_column(String(64))
    bmc_firmware_version: Mapped[str | None] = mapped_column(String(64))
    bmc_model: Mapped[str | None] = mapped_column(String(128))
    power_state: Mapped[str | None] = mapped_column(String(32))
    health: Mapped[str | None] = mapped_column(String(32))
    host_name: Mapped[str | None] = mapped_column(String(255))
    cpu_count: Mapped[int | None] = mapped_column(Integer)
    memory_gib: Mapped[float | None] = mapped_column(Float)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    discovery_run_id: Mapped[str | None] = mapped_column(String(64))
    vcenter_host: Mapped[str | None] = mapped_column(String(255))
    maas_system_id: Mapped[str | None] = mapped_column(String(64))
    fqdn: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The machine's reboot paths (clients.inventory.access.MachineAccess as JSON).
    access: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    firmware: Mapped[list[FirmwareRow]] = relationship(
        back_populates="server",
        cascade="all, delete-orphan",
        order_by="FirmwareRow.id",
        passive_deletes=True,
    )


class FirmwareRow(Base):
    """One installed firmware component of a server (replaced as a set)."""

    __tablename__ = "server_firmware"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    fqdd: Mapped[str] = mapped_column(String(255))
    component_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(128))
    updateable: Mapped[bool] = mapped_column(Boolean)

    server: Mapped[ServerRow] = relationship(back_populates="firmware")


class EsxiHostRow(Base):
    """One ESXi host as a vCenter last reported it, linked or not to a server.

    Keyed by the vCenter's label and the host's managed object id (moids are
    unique only within one vCenter). Rows are never deleted: a host the
    vCenter stops reporting is marked ``gone`` and keeps its history.

    The link is ``server_id``, a foreign key to ``servers.id`` rather than a
    copy of the server's identity: a server's identity can change (a
    ``uuid:`` placeholder promoted to its service tag) and the link follows
    it; a deleted server leaves an unlinked host (``ON DELETE SET NULL``),
    never a dangling name.
    """

    __tablename__ = "esxi_hosts"
    __table_args__ = (UniqueConstraint("vcenter", "moid", name="uq_esxi_hosts_vcenter_moid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vcenter: Mapped[str] = mapped_column(String(255))
    moid: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    cluster: Mapped[str | None] = mapped_column(String(255))
    service_tag: Mapped[str | None] = mapped_column(String(32), index=True)
    esxi_version: Mapped[str | None] = mapped_column(String(64))
    build: Mapped[str | None] = mapped_column(String(64))
    connection_state: Mapped[str] = mapped_column(String(32))
    in_maintenance: Mapped[bool] = mapped_column(Boolean)
    server_id: Mapped[int | None] = mapped_column(
        ForeignKey("servers.id", ondelete="SET NULL"), index=True
    )
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime())
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
