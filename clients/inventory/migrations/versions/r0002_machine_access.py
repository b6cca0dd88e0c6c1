"""Machine access: FQDN and reboot paths per machine (issue 4).

Replaces the free-text ``ssh_target`` and ``pdu`` placeholders of 0001 with a
validated ``access`` document (clients.inventory.access.MachineAccess) and
adds ``fqdn`` so machines known by name (not only by service tag) can be
looked up. The placeholders were never written by any flow; a value found
in them is kept under ``attributes`` so nothing is lost.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_servers = sa.table(
    "servers",
    sa.column("id", sa.Integer()),
    sa.column("ssh_target", sa.String()),
    sa.column("pdu", sa.String()),
    sa.column("attributes", sa.JSON()),
)


def upgrade() -> None:
    """Add fqdn and access; move old ssh_target/pdu values into attributes; drop them."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_servers.c.id, _servers.c.ssh_target, _servers.c.pdu, _servers.c.attributes)
    ).all()
    for row_id, ssh_target, pdu, attributes in rows:
        if ssh_target is None and pdu is None:
            continue
        if not isinstance(attributes, dict):
            attributes = json.loads(attributes or "{}")
        merged = dict(attributes)
        if ssh_target is not None:
            merged.setdefault("ssh_target", ssh_target)
        if pdu is not None:
            merged.setdefault("pdu", pdu)
        connection.execute(
            sa.update(_servers).where(_servers.c.id == row_id).values(attributes=merged)
        )
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("fqdn", sa.String(255), nullable=True))
        batch.add_column(sa.Column("access", sa.JSON(), nullable=False, server_default="{}"))
        batch.create_unique_constraint("uq_servers_fqdn", ["fqdn"])
        batch.drop_column("ssh_target")
        batch.drop_column("pdu")
    with op.batch_alter_table("servers") as batch:
        batch.alter_column("access", server_default=None)


def downgrade() -> None:
    """Restore the 0001 columns (access documents are dropped)."""
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("ssh_target", sa.String(255), nullable=True))
        batch.add_column(sa.Column("pdu", sa.String(255), nullable=True))
        batch.drop_constraint("uq_servers_fqdn", type_="unique")
        batch.drop_column("access")
        batch.drop_column("fqdn")
