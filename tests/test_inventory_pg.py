"""The inventory's core behaviour against a real PostgreSQL server (Debian packages)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from clients.errors import TransportError
from clients.inventory import Inventory, ServerStatus
from clients.inventory.migrate import head_revision
from clients.inventory.schema import VERSION_TABLE
from tests.pg import PostgresServer, postgres_server, postgres_url  # noqa: F401
from tests.test_inventory import InventoryContract, obs

pytestmark = pytest.mark.postgres


class TestPostgresInventory(InventoryContract):
    @pytest.fixture
    def inventory_url(self, postgres_url: str) -> str:  # noqa: F811
        return postgres_url


def test_plain_postgresql_url_gets_psycopg_driver(postgres_server: PostgresServer) -> None:  # noqa: F811
    url = postgres_server.create_database("plain_driver").replace("+psycopg", "")
    assert url.startswith("postgresql://")
    with Inventory(url=url) as inventory:
        inventory.upsert(obs("127.10.0.1", service_tag="PLAIN01"))
        assert [r.identity for r in inventory.list()] == ["PLAIN01"]
    assert postgres_server.password not in repr(Inventory(url=url))


def test_concurrent_first_opens_migrate_once(postgres_url: str) -> None:  # noqa: F811
    def open_and_write(n: int) -> str:
        with Inventory(url=postgres_url) as inventory:
            inventory.upsert(obs(f"127.10.1.{n}", service_tag=f"CONC{n:03d}"))
            return inventory.url

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(open_and_write, range(1, 7)))

    with Inventory(url=postgres_url) as inventory:
        assert len(inventory.list(status=ServerStatus.ONLINE)) == 6
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        engine.dispose()
    assert [v for (v,) in rows] == [head_revision()]


def test_unreachable_server_is_a_transport_error_without_password(
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    # Nothing listens on a port we bound and released a moment ago.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://postgres:{postgres_server.password}@127.0.0.1:{port}/x"
    inventory = Inventory(url=url)
    with pytest.raises(TransportError) as caught:
        inventory.open()
    assert caught.value.retryable
    assert postgres_server.password not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
