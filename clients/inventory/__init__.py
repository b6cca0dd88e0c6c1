"""The inventory: servers, their BMC addresses and firmware, ESXi hosts (SQLAlchemy 2 + Alembic).

SQLite by default (:func:`default_inventory_url`), PostgreSQL by URL. The
schema is migrated to head whenever an :class:`Inventory` is opened.

Example::

    with Inventory(url=default_inventory_url()) as inventory:
        inventory.upsert(observation, run_id="...")
        for server in inventory.list(status=ServerStatus.ONLINE):
            print(server.identity, server.bmc_endpoint)
"""

from clients.inventory import access_file
from clients.inventory.access import MachineAccess, MachineEntry
from clients.inventory.engine import default_inventory_url
from clients.inventory.hosts import EsxiHostCounts, EsxiHostRecord, HostSighting
from clients.inventory.models import (
    FirmwareObservation,
    ServerObservation,
    ServerRecord,
    ServerStatus,
    UpsertResult,
)
from clients.inventory.store import Inventory, parse_endpoint

__all__ = [
    "EsxiHostCounts",
    "EsxiHostRecord",
    "FirmwareObservation",
    "HostSighting",
    "Inventory",
    "MachineAccess",
    "MachineEntry",
    "access_file",
    "ServerObservation",
    "ServerRecord",
    "ServerStatus",
    "UpsertResult",
    "default_inventory_url",
    "parse_endpoint",
]
