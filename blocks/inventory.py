"""The inventory database as a Prefect block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from clients.inventory import Inventory, default_inventory_url


class InventoryStore(Block):
    """Where rackflow keeps its inventory of machines.

    SQLite under ``~/.rackflow/`` by default; a PostgreSQL URL
    (``postgresql+psycopg://user:pass@host/db``) for teams and several workers.
    """

    _block_type_name = "Inventory Store"
    _description = "Database URL of the rackflow inventory (SQLite file or PostgreSQL)."

    url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL. Empty: a SQLite file under ~/.rackflow/ (RACKFLOW_HOME overrides). "
            "PostgreSQL: postgresql+psycopg://user:password@host:5432/rackflow "
            "(secret: it may hold a password)"
        ),
    )

    @contextmanager
    def get_client(self) -> Iterator[Inventory]:
        """Open the inventory, migrating its schema to the current version.

        Yields:
            An opened :class:`clients.inventory.Inventory`, closed on exit.
        """
        url = self.url.get_secret_value() if self.url else default_inventory_url()
        inventory = Inventory(url=url)
        with inventory:
            yield inventory
