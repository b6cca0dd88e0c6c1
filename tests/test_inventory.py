"""Inventory store behaviour on SQLite; ``InventoryContract`` is reused for PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect, text

from clients.errors import PreconditionError
from clients.inventory import (
    FirmwareObservation,
    Inventory,
    ServerObservation,
    ServerRecord,
    ServerStatus,
    UpsertResult,
    default_inventory_url,
    parse_endpoint,
)
from clients.inventory.migrate import head_revision
from clients.inventory.schema import VERSION_TABLE, Base

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def obs(address: str, port: int = 8443, **fields: Any) -> ServerObservation:
    """An online observation at ``address:port`` with the given fields."""
    fields.setdefault("status", ServerStatus.ONLINE)
    fields.setdefault("seen_at", T0)
    return ServerObservation(bmc_address=address, bmc_port=port, **fields)


def fw(fqdd: str, version: str, kind: str = "other") -> FirmwareObservation:
    return FirmwareObservation(fqdd=fqdd, component_id=None, kind=kind, name=fqdd, version=version)


class InventoryContract:
    """Behaviour every backend must show; subclasses provide ``inventory_url``."""

    @pytest.fixture
    def inventory(self, inventory_url: str) -> Iterator[Inventory]:
        with Inventory(url=inventory_url) as inventory:
            yield inventory

    def test_upsert_creates_then_updates(self, inventory: Inventory) -> None:
        first = obs("127.10.0.1", service_tag="8cycz23", model="PowerEdge R640", bios_version="2.1")
        assert inventory.upsert(first, run_id="run-1") == UpsertResult.CREATED
        later = obs(
            "127.10.0.1", service_tag="8CYCZ23", bios_version="2.3", seen_at=T0 + timedelta(hours=1)
        )
        assert inventory.upsert(later, run_id="run-2") == UpsertResult.UPDATED

        [record] = inventory.list()
        assert record.identity == "8CYCZ23" and record.service_tag == "8CYCZ23"
        assert record.bios_version == "2.3"
        assert record.model == "PowerEdge R640"  # None in the later observation keeps it
        assert record.first_seen == T0 and record.last_seen == T0 + timedelta(hours=1)
        assert record.first_seen.tzinfo is not None and record.first_seen.utcoffset() == timedelta(
            0
        )
        assert record.discovery_run_id == "run-2"
        assert record.status is ServerStatus.ONLINE

    def test_move_keeps_one_row(self, inventory: Inventory) -> None:
        inventory.upsert(obs("127.10.0.1", service_tag="AAAAAA1"))
        assert inventory.upsert(obs("127.10.0.9", service_tag="AAAAAA1")) == UpsertResult.MOVED

        records = inventory.list()
        assert [(r.identity, r.bmc_address) for r in records] == [("AAAAAA1", "127.10.0.9")]
        assert inventory.get("127.10.0.1") is None
        assert inventory.known_addresses() == {("127.10.0.9", 8443): "AAAAAA1"}

    def test_address_conflict_evicts_previous_claimant(self, inventory: Inventory) -> None:
        inventory.upsert(obs("127.10.0.1", service_tag="OLD0001"))
        assert inventory.upsert(obs("127.10.0.1", service_tag="NEW0001")) == UpsertResult.CREATED

        old, new = inventory.get("OLD0001"), inventory.get("NEW0001")
        assert old is not None and new is not None
        assert (old.bmc_address, old.bmc_port, old.status) == (None, None, ServerStatus.OFFLINE)
        assert (new.bmc_address, new.status) == ("127.10.0.1", ServerStatus.ONLINE)
        got = inventory.get("127.10.0.1:8443")
        assert got is not None and got.identity == "NEW0001"

    def test_placeholder_merged_when_tag_becomes_known(self, inventory: Inventory) -> None:
        refused = obs("127.10.0.4", status=ServerStatus.AUTH_FAILED, seen_at=T0)
        assert inventory.upsert(refused) == UpsertResult.CREATED
        placeholder = inventory.get("bmc:127.10.0.4:8443")
        assert placeholder is not None and placeholder.status is ServerStatus.AUTH_FAILED
        inventory.annotate("127.10.0.4", vcenter_host="esx-7", attributes={"rack": "R12"})

        known = obs("127.10.0.4", service_tag="TAG0004", seen_at=T0 + timedelta(minutes=5))
        assert inventory.upsert(known) == UpsertResult.UPDATED

        [record] = inventory.list()
        assert record.identity == "TAG0004" and record.id == placeholder.id
        assert record.status is ServerStatus.ONLINE
        assert record.first_seen == T0
        assert record.vcenter_host == "esx-7" and record.attributes == {"rack": "R12"}
        assert inventory.get("bmc:127.10.0.4:8443") is None

    def test_uuid_placeholder_merged_into_existing_tag_row(self, inventory: Inventory) -> None:
        uuid = "4C4C4544-0038-4310-8059-B8C04F5A3233"
        inventory.upsert(obs("127.10.0.5", service_tag="TAG0005", seen_at=T0))
        # The same machine answered elsewhere without its tag: kept on its real row.
        inventory.upsert(obs("127.10.0.6", uuid=uuid, seen_at=T0 + timedelta(minutes=1)))
        assert len(inventory.list()) == 2  # the tag row has no UUID yet: a uuid: placeholder
        result = inventory.upsert(
            obs("127.10.0.6", service_tag="TAG0005", uuid=uuid, seen_at=T0 + timedelta(minutes=2))
        )
        assert result == UpsertResult.MOVED

        [record] = inventory.list()
        assert (record.identity, record.bmc_address) == ("TAG0005", "127.10.0.6")
        assert record.uuid == uuid.lower()
        # Later tag-less sightings of that UUID update the real row, not a new placeholder.
        later = obs("127.10.0.6", uuid=uuid, power_state="Off", seen_at=T0 + timedelta(hours=1))
        assert inventory.upsert(later) == UpsertResult.UPDATED
        assert [r.power_state for r in inventory.list()] == ["Off"]

    def test_auth_failure_at_known_address_updates_that_server(self, inventory: Inventory) -> None:
        inventory.upsert(obs("127.10.0.7", service_tag="TAG0007", model="PowerEdge R750"))
        refused = obs("127.10.0.7", status=ServerStatus.AUTH_FAILED)
        assert inventory.upsert(refused) == UpsertResult.UPDATED

        [record] = inventory.list()
        assert record.identity == "TAG0007"
        assert record.status is ServerStatus.AUTH_FAILED
        assert record.model == "PowerEdge R750"

    def test_mark_offline(self, inventory: Inventory) -> None:
        inventory.upsert(obs("127.10.0.1", service_tag="UP00001"))
        inventory.upsert(obs("127.10.0.2", service_tag="GONE001"))
        inventory.upsert(obs("127.10.0.3", service_tag="NOTSCAN"))
        scanned = [("127.10.0.1", 8443), ("127.10.0.2", 8443), ("127.10.0.4", 8443)]

        count = inventory.mark_offline(scanned=scanned, seen=[("127.10.0.1", 8443)], run_id="r9")
        assert count == 1
        status = {r.identity: (r.status, r.discovery_run_id) for r in inventory.list()}
        assert status["GONE001"] == (ServerStatus.OFFLINE, "r9")
        assert status["UP00001"][0] is ServerStatus.ONLINE
        assert status["NOTSCAN"][0] is ServerStatus.ONLINE
        # Already offline: not counted twice; the address is kept for lookups.
        assert inventory.mark_offline(scanned=scanned, seen=[], run_id=None) == 1
        gone = inventory.get("127.10.0.2")
        assert gone is not None and gone.identity == "GONE001"
        assert inventory.list(status=ServerStatus.OFFLINE)[0].identity in {"GONE001", "UP00001"}
        assert len(inventory.list(status=ServerStatus.OFFLINE)) == 2

    def test_firmware_replaced_as_a_set(self, inventory: Inventory) -> None:
        inventory.upsert(
            obs(
                "127.10.0.1",
                service_tag="FWTAG01",
                firmware=[fw("BIOS.Setup.1-1", "2.1", "bios"), fw("NIC.Integrated.1-1-1", "22.0")],
            )
        )
        inventory.upsert(
            obs("127.10.0.1", service_tag="FWTAG01", firmware=[fw("BIOS.Setup.1-1", "2.3", "bios")])
        )
        record = inventory.get("FWTAG01")
        assert record is not None
        assert [(f.fqdd, f.version, f.kind) for f in record.firmware] == [
            ("BIOS.Setup.1-1", "2.3", "bios")
        ]
        inventory.upsert(obs("127.10.0.1", service_tag="FWTAG01"))  # firmware not read
        record = inventory.get("FWTAG01")
        assert record is not None and [f.version for f in record.firmware] == ["2.3"]

    def test_filters_and_lookup(self, inventory: Inventory) -> None:
        inventory.upsert(obs("127.10.0.1", service_tag="R640AAA", model="PowerEdge R640"))
        inventory.upsert(obs("127.10.0.2", service_tag="R750AAA", model="PowerEdge R750"))
        inventory.upsert(obs("127.0.0.1", 9001, service_tag="SH00001"))
        inventory.upsert(obs("127.0.0.1", 9002, service_tag="SH00002"))

        assert [r.identity for r in inventory.list(model="PowerEdge R750")] == ["R750AAA"]
        got = inventory.get("r640aaa")
        assert got is not None and got.identity == "R640AAA"
        got = inventory.get("127.0.0.1:9002")
        assert got is not None and got.identity == "SH00002"
        with pytest.raises(PreconditionError, match="give address:port"):
            inventory.get("127.0.0.1")
        assert inventory.get("NOPE999") is None

    def test_export_round_trip(self, inventory: Inventory) -> None:
        inventory.upsert(
            obs(
                "127.10.0.1",
                service_tag="EXP0001",
                memory_gib=384.0,
                cpu_count=2,
                firmware=[fw("iDRAC.Embedded.1-1", "7.00.00.00", "idrac")],
            ),
            run_id="run-x",
        )
        inventory.annotate("EXP0001", vcenter_host="esx01.lab", attributes={"rack": "A1"})
        exported = inventory.export()

        for text_form in (yaml.safe_dump(exported), json.dumps(exported)):
            loaded = yaml.safe_load(text_form)
            assert [ServerRecord.model_validate(item) for item in loaded] == inventory.list()
        assert exported[0]["first_seen"] == "2026-11-21T08:00:00Z"
        assert exported[0]["firmware"][0]["version"] == "7.00.00.00"

    def test_reopen_is_idempotent_and_schema_matches_models(self, inventory_url: str) -> None:
        with Inventory(url=inventory_url) as inventory:
            inventory.upsert(obs("127.10.0.1", service_tag="KEEP001"))
        for _ in range(2):
            with Inventory(url=inventory_url) as inventory:
                assert [r.identity for r in inventory.list()] == ["KEEP001"]

        engine = create_engine(inventory_url)
        try:
            with engine.connect() as conn:
                versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
                assert [v for (v,) in versions] == [head_revision()]
                context = MigrationContext.configure(
                    conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
                )
                assert compare_metadata(context, Base.metadata) == []
                tables = set(inspect(conn).get_table_names())
                assert {"servers", "server_firmware", VERSION_TABLE} <= tables
        finally:
            engine.dispose()


class TestSqliteInventory(InventoryContract):
    @pytest.fixture
    def inventory_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'inventory.db'}"


def test_concurrent_writers_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    def open_and_write(n: int) -> UpsertResult:
        with Inventory(url=url) as inventory:  # several first opens race on the migration
            return inventory.upsert(obs(f"127.10.2.{n}", service_tag=f"SQL{n:04d}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(open_and_write, range(1, 17)))

    assert results == [UpsertResult.CREATED] * 16
    with Inventory(url=url) as inventory:
        assert len(inventory.known_addresses(status=ServerStatus.ONLINE)) == 16


def test_upsert_many_is_one_batch(tmp_path: Path) -> None:
    with Inventory(url=f"sqlite:///{tmp_path / 'batch.db'}") as inventory:
        counts = inventory.upsert_many(
            [
                obs("127.10.0.1", service_tag="BATCH01"),
                obs("127.10.0.2", service_tag="BATCH02"),
                obs("127.10.0.3", service_tag="BATCH01"),  # moved within the batch
            ],
            run_id="run-b",
        )
        assert counts == {
            UpsertResult.CREATED: 2,
            UpsertResult.UPDATED: 0,
            UpsertResult.MOVED: 1,
        }
        assert inventory.known_addresses() == {
            ("127.10.0.2", 8443): "BATCH02",
            ("127.10.0.3", 8443): "BATCH01",
        }


def test_default_url_follows_rackflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RACKFLOW_HOME", str(home))
    url = default_inventory_url()
    assert url == f"sqlite:///{home / 'inventory.db'}"
    assert not home.exists()  # computing the URL creates nothing
    with Inventory(url=url) as inventory:
        inventory.upsert(obs("127.10.0.1", service_tag="HOME001"))
    assert (home / "inventory.db").is_file()


def test_in_memory_database_is_shared_across_calls() -> None:
    with Inventory(url="sqlite://") as inventory:
        inventory.upsert(obs("127.10.0.1", service_tag="MEM0001"))
        assert [r.identity for r in inventory.list()] == ["MEM0001"]


def test_naive_timestamps_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        obs("127.10.0.1", service_tag="NAIVE01", seen_at=datetime(2026, 1, 1))
    offset = obs("127.10.0.1", seen_at=datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=1))))
    assert offset.seen_at == datetime(2026, 1, 1, 8, tzinfo=UTC) and offset.seen_at.tzinfo is UTC


def test_use_before_open_is_refused(tmp_path: Path) -> None:
    inventory = Inventory(url=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(PreconditionError, match="not open"):
        inventory.list()
    assert not (tmp_path / "x.db").exists()  # the constructor did no I/O


def test_unsupported_url_refused() -> None:
    with pytest.raises(PreconditionError, match="unsupported backend"):
        Inventory(url="mysql://u:p@127.0.0.1/db")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("127.10.0.1", ("127.10.0.1", None)),
        ("127.10.0.1:8443", ("127.10.0.1", 8443)),
        ("[::1]:8443", ("::1", 8443)),
        ("::1", ("::1", None)),
    ],
)
def test_parse_endpoint(key: str, expected: tuple[str, int | None]) -> None:
    assert parse_endpoint(key) == expected
