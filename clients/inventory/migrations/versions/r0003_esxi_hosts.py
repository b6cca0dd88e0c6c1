"""ESXi hosts: every host each vCenter reports, linked or not to a server (issue 3).

Until now only hosts matched to an inventory server were kept (as
``servers.vcenter_host`` and ``attributes["vcenter"]``); hosts without a
matching server were reported once and forgotten. This table keeps every
host, keyed by vCenter label and managed object id, with a nullable link to
``servers.id`` that is cleared (not left dangling) if the server is deleted.
A new table only: existing rows are untouched, so the upgrade needs no data
step and SQLite needs no batch copy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the esxi_hosts table and its indexes."""
    op.create_table(
        "esxi_hosts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("vcenter", sa.String(255), nullable=False),
        sa.Column("moid", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=True),
        sa.Column("service_tag", sa.String(32), nullable=True),
        sa.Column("esxi_version", sa.String(64), nullable=True),
        sa.Column("build", sa.String(64), nullable=True),
        sa.Column("connection_state", sa.String(32), nullable=False),
        sa.Column("in_maintenance", sa.Boolean(), nullable=False),
        sa.Column(
            "server_id",
            sa.Integer(),
            sa.ForeignKey(
                "servers.id", name="fk_esxi_hosts_server_id_servers", ondelete="SET NULL"
            ),
            nullable=True,
        ),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gone", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("vcenter", "moid", name="uq_esxi_hosts_vcenter_moid"),
    )
    op.create_index("ix_esxi_hosts_service_tag", "esxi_hosts", ["service_tag"])
    op.create_index("ix_esxi_hosts_server_id", "esxi_hosts", ["server_id"])


def downgrade() -> None:
    """Drop the esxi_hosts table (the hosts' history is lost)."""
    op.drop_index("ix_esxi_hosts_server_id", table_name="esxi_hosts")
    op.drop_index("ix_esxi_hosts_service_tag", table_name="esxi_hosts")
    op.drop_table("esxi_hosts")
