"""Initial inventory schema: servers and their firmware components.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the servers and server_firmware tables."""
    op.create_table(
        "servers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("identity", sa.String(160), nullable=False),
        sa.Column("service_tag", sa.String(32), nullable=True),
        sa.Column("bmc_address", sa.String(64), nullable=True),
        sa.Column("bmc_port", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("vendor", sa.String(128), nullable=True),
        sa.Column("product", sa.String(128), nullable=True),
        sa.Column("redfish_version", sa.String(32), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("serial", sa.String(128), nullable=True),
        sa.Column("uuid", sa.String(64), nullable=True),
        sa.Column("bios_version", sa.String(64), nullable=True),
        sa.Column("bmc_firmware_version", sa.String(64), nullable=True),
        sa.Column("bmc_model", sa.String(128), nullable=True),
        sa.Column("power_state", sa.String(32), nullable=True),
        sa.Column("health", sa.String(32), nullable=True),
        sa.Column("host_name", sa.String(255), nullable=True),
        sa.Column("cpu_count", sa.Integer(), nullable=True),
        sa.Column("memory_gib", sa.Float(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discovery_run_id", sa.String(64), nullable=True),
        sa.Column("vcenter_host", sa.String(255), nullable=True),
        sa.Column("maas_system_id", sa.String(64), nullable=True),
        sa.Column("ssh_target", sa.String(255), nullable=True),
        sa.Column("pdu", sa.String(255), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.UniqueConstraint("identity", name="uq_servers_identity"),
        sa.UniqueConstraint("service_tag", name="uq_servers_service_tag"),
        sa.UniqueConstraint("bmc_address", "bmc_port", name="uq_servers_bmc"),
    )
    op.create_index("ix_servers_status", "servers", ["status"])
    op.create_index("ix_servers_model", "servers", ["model"])
    op.create_index("ix_servers_uuid", "servers", ["uuid"])
    op.create_table(
        "server_firmware",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "server_id",
            sa.Integer(),
            sa.ForeignKey(
                "servers.id", name="fk_server_firmware_server_id_servers", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("fqdd", sa.String(255), nullable=False),
        sa.Column("component_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("updateable", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_server_firmware_server_id", "server_firmware", ["server_id"])


def downgrade() -> None:
    """Drop the inventory tables."""
    op.drop_index("ix_server_firmware_server_id", table_name="server_firmware")
    op.drop_table("server_firmware")
    op.drop_index("ix_servers_uuid", table_name="servers")
    op.drop_index("ix_servers_model", table_name="servers")
    op.drop_index("ix_servers_status", table_name="servers")
    op.drop_table("servers")
