"""ESXi hosts in the inventory: every host a vCenter reports, linked or not to a server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from pydantic import ValidationError
from typer.testing import CliRunner

from clients.errors import PreconditionError
from clients.inventory import EsxiHostCounts, EsxiHostRecord, HostSighting, Inventory
from clients.inventory.migrate import alembic_config, head_revision
from clients.inventory.schema import VERSION_TABLE
from deployments.inventory_cli import app
from tests.pg import postgres_url  # noqa: F401
from tests.test_inventory import T0, obs

runner = CliRunner()
VC = "vc1.lab.test"
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


def sighting(moid: str, name: str, **fields: Any) -> HostSighting:
    """A connected ESXi 8.0.3 host in cluster ``c1`` unless told otherwise."""
    values: dict[str, Any] = {
        "cluster": "c1",
        "esxi_version": "8.0.3",
        "build": "24022510",
        "connection_state": "connected",
        "in_maintenance": False,
    }
    values.update(fields)
    return HostSighting(moid=moid, name=name, **values)


def first_batch() -> list[HostSighting]:
    """Two hosts linked by service tag, one whose tag no server has, one with no tag."""
    return [
        sighting("host-10", "esx01.lab.test", service_tag="8CYCZ23", server_identity="8CYCZ23"),
        sighting("host-11", "esx02.lab.test", service_tag="9DXKQ13", server_identity="9DXKQ13"),
        sighting("host-12", "esx03.lab.test", service_tag="ZZZ0001", cluster="c2"),
        sighting("host-13", "esx04.lab.test", cluster=None, in_maintenance=True),
    ]


def seed_servers(url: str) -> None:
    with Inventory(url=url) as inventory:
        inventory.upsert(obs("127.10.0.1", service_tag="8CYCZ23"))
        inventory.upsert(obs("127.10.0.2", service_tag="9DXKQ13"))


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    seed_servers(url)
    return url


def by_moid(records: list[EsxiHostRecord]) -> dict[str, EsxiHostRecord]:
    return {r.moid: r for r in records}


def check_sync_lifecycle(url: str) -> None:
    """New, unchanged, updated, gone and back again, as an operator sees it listed."""
    with Inventory(url=url) as inventory:
        counts = inventory.record_esxi_hosts(VC, first_batch(), seen_at=T0)
        assert counts == EsxiHostCounts(new=4, linked=2, unmatched=2)
        hosts = by_moid(inventory.esxi_hosts())
        assert sorted(hosts) == ["host-10", "host-11", "host-12", "host-13"]
        assert hosts["host-10"].server_identity == "8CYCZ23"
        assert hosts["host-12"].server_identity is None
        assert hosts["host-12"].service_tag == "ZZZ0001"
        assert hosts["host-13"].in_maintenance and hosts["host-13"].cluster is None
        assert all(h.first_seen == h.last_seen == T0 and not h.gone for h in hosts.values())

        # The same report again: nothing changes but when the hosts were last seen.
        again = inventory.record_esxi_hosts(VC, first_batch(), seen_at=T1)
        assert again == EsxiHostCounts(unchanged=4, linked=2, unmatched=2)
        after = by_moid(inventory.esxi_hosts())
        for moid, record in hosts.items():
            assert after[moid] == record.model_copy(update={"last_seen": T1})

        # esx02 enters maintenance, esx03 is upgraded, esx04 is removed from vCenter.
        changed = [
            first_batch()[0],
            first_batch()[1].model_copy(update={"in_maintenance": True}),
            first_batch()[2].model_copy(update={"build": "24280767", "esxi_version": "8.0.3u"}),
        ]
        counts = inventory.record_esxi_hosts(VC, changed, seen_at=T2)
        assert counts == EsxiHostCounts(
            unchanged=1, updated=2, gone=1, linked=2, unmatched=1, gone_hosts=["esx04.lab.test"]
        )
        hosts = by_moid(inventory.esxi_hosts())
        assert hosts["host-11"].in_maintenance and hosts["host-12"].build == "24280767"
        # Gone hosts stay listed with the time vCenter last reported them.
        assert hosts["host-13"].gone and hosts["host-13"].last_seen == T1
        assert "host-13" not in by_moid(inventory.esxi_hosts(include_gone=False))

        # Still gone on the next sync: not counted twice. Back later: an update.
        assert inventory.record_esxi_hosts(VC, changed, seen_at=T2).gone == 0
        back = inventory.record_esxi_hosts(VC, [*changed, first_batch()[3]], seen_at=T2)
        assert (back.updated, back.gone) == (1, 0)
        returned = by_moid(inventory.esxi_hosts())["host-13"]
        assert not returned.gone and returned.first_seen == T0


def test_sync_lifecycle_on_sqlite(url: str) -> None:
    check_sync_lifecycle(url)


@pytest.mark.postgres
def test_hosts_on_postgresql(postgres_url: str) -> None:  # noqa: F811
    seed_servers(postgres_url)
    check_sync_lifecycle(postgres_url)
    check_link_follows_the_server(postgres_url)  # ON DELETE SET NULL on PostgreSQL too
    with Inventory(url=postgres_url) as inventory:
        unmatched = inventory.esxi_hosts(VC, unmatched_only=True)
    assert [h.moid for h in unmatched] == ["host-12", "host-13"]


def test_filters_and_other_vcenters_untouched(url: str) -> None:
    with Inventory(url=url) as inventory:
        inventory.record_esxi_hosts(VC, first_batch(), seen_at=T0)
        # moids are only unique within one vCenter: the same moid elsewhere is another host.
        other = [sighting("host-10", "esx91.other.test", cluster="c9")]
        assert inventory.record_esxi_hosts("vc2.lab.test:8443", other, seen_at=T1).new == 1
        # An empty report of vc2 marks only vc2's hosts gone.
        assert inventory.record_esxi_hosts("vc2.lab.test:8443", [], seen_at=T2).gone == 1
        mine = inventory.esxi_hosts(VC)
        assert [h.name for h in mine] == [f"esx0{i}.lab.test" for i in range(1, 5)]
        assert not any(h.gone for h in mine)
        unmatched = inventory.esxi_hosts(unmatched_only=True)
        assert [(h.vcenter, h.name) for h in unmatched] == [
            (VC, "esx03.lab.test"),
            (VC, "esx04.lab.test"),
            ("vc2.lab.test:8443", "esx91.other.test"),
        ]


def test_refused_batches_write_nothing(url: str) -> None:
    with Inventory(url=url) as inventory:
        inventory.record_esxi_hosts(VC, first_batch(), seen_at=T0)
        before = inventory.esxi_hosts()
        unknown_server = [*first_batch()[:3], sighting("host-20", "esx20", server_identity="NOPE")]
        with pytest.raises(PreconditionError, match="no server with identity NOPE"):
            inventory.record_esxi_hosts(VC, unknown_server, seen_at=T1)
        twice = [first_batch()[0], sighting("host-10", "esx01-again.lab.test")]
        with pytest.raises(PreconditionError, match="moid reported twice: host-10"):
            inventory.record_esxi_hosts(VC, twice, seen_at=T1)
        with pytest.raises(PreconditionError, match="naive"):
            inventory.record_esxi_hosts(VC, first_batch(), seen_at=datetime(2026, 11, 21))
        with pytest.raises(PreconditionError, match="empty vCenter label"):
            inventory.record_esxi_hosts("  ", first_batch(), seen_at=T1)
        assert inventory.esxi_hosts() == before


def test_sighting_normalizes_tag_and_reads_host_objects() -> None:
    class VsphereLikeHost:  # any object with the attribute names, plus some of its own
        name = "esx01.lab.test"
        moid = "host-10"
        cluster = "c1"
        cluster_moid = "domain-c7"
        service_tag = " 8cycz23 "
        esxi_version = "8.0.3"
        build = "24022510"
        connection_state = "connected"
        in_maintenance = False

    made = HostSighting.from_host(VsphereLikeHost(), server_identity="8CYCZ23")
    assert made == first_batch()[0]
    with pytest.raises(ValidationError):
        HostSighting(moid="host-1", name="x", connection_state="connected")  # type: ignore[call-arg]


def check_link_follows_the_server(url: str) -> None:
    """The link is a foreign key: it follows identity changes and never dangles."""
    with Inventory(url=url) as inventory:
        # Two placeholders known only by UUID (BMC login refused, no tag yet).
        inventory.upsert(obs("127.10.0.5", uuid="UUID-5"))
        inventory.upsert(obs("127.10.0.6", uuid="UUID-6"))
        inventory.upsert(obs("127.10.0.7", service_tag="TAG0007"))
        batch = [
            sighting("host-5", "esx05", server_identity="uuid:uuid-5"),
            sighting("host-6", "esx06", server_identity="uuid:uuid-6"),
        ]
        inventory.record_esxi_hosts("vc-link", batch, seen_at=T0)
        # .5's tag is read later: the placeholder becomes TAG0005, the link follows.
        inventory.upsert(obs("127.10.0.5", uuid="UUID-5", service_tag="TAG0005"))
        # .6 turns out to be TAG0007's UUID: the placeholder is merged away and
        # its host is left unlinked (the next sync links it by tag), not dangling.
        inventory.upsert(obs("127.10.0.7", uuid="UUID-6", service_tag="TAG0007"))
        assert inventory.get("uuid:uuid-6") is None
        hosts = by_moid(inventory.esxi_hosts("vc-link"))
        assert hosts["host-5"].server_identity == "TAG0005"
        assert hosts["host-6"].server_identity is None


def test_link_follows_the_server_on_sqlite(url: str) -> None:
    check_link_follows_the_server(url)


def test_upgrade_from_0002_keeps_servers_and_adds_hosts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0002")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO servers (identity, service_tag, status, first_seen, last_seen,"
                " fqdn, access, attributes) VALUES ('OLD0001', 'OLD0001', 'online',"
                " '2026-11-21 08:00:00', '2026-11-21 08:00:00', 'old01.lab.test',"
                ' \'{"ping": {"method": "tcp", "port": 22}}\', \'{"rack": "R1"}\')'
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO server_firmware (server_id, fqdd, kind, version, updateable)"
                " SELECT id, 'BIOS.Setup.1-1', 'bios', '2.19.1', 1 FROM servers"
            )
        )
    with Inventory(url=url) as inventory:
        record = inventory.get("old01.lab.test")
        assert inventory.esxi_hosts() == []
        linked = sighting("host-1", "esx-old", service_tag="OLD0001", server_identity="OLD0001")
        assert inventory.record_esxi_hosts(VC, [linked], seen_at=T0).new == 1
        assert inventory.esxi_hosts()[0].server_identity == "OLD0001"
    assert record is not None and record.identity == "OLD0001"
    assert record.attributes == {"rack": "R1"}
    assert record.access.model_dump(exclude_none=True)["ping"]["port"] == 22
    assert [(f.fqdd, f.version) for f in record.firmware] == [("BIOS.Setup.1-1", "2.19.1")]
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == (
            head_revision()
        )
    # Downgrading drops only the hosts.
    command.downgrade(alembic_config(url), "0002")
    with engine.connect() as conn:
        assert "esxi_hosts" not in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("SELECT identity FROM servers")).scalars().all() == ["OLD0001"]
    engine.dispose()


def test_cli_hosts_table_filters_and_json(url: str) -> None:
    with Inventory(url=url) as inventory:
        inventory.record_esxi_hosts(VC, first_batch(), seen_at=T0)
        inventory.record_esxi_hosts(VC, first_batch()[:3], seen_at=T1)
        stored = inventory.esxi_hosts()

    result = runner.invoke(app, ["hosts", "--url", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def words(line: str) -> str:
        return " ".join(line.split())

    header = "VCENTER NAME CLUSTER SERVICE TAG SERVER VERSION STATE MAINTENANCE LAST SEEN"
    assert words(lines[0]) == header
    esx01 = next(line for line in lines if "esx01.lab.test" in line)
    assert words(esx01) == (
        f"{VC} esx01.lab.test c1 8CYCZ23 8CYCZ23 8.0.3 (24022510) connected no 2026-11-21 09:00:00Z"
    )
    # An unmatched host removed from vCenter: no cluster, tag or server; gone since 08:00.
    esx04 = next(line for line in lines if "esx04.lab.test" in line)
    assert (
        words(esx04) == f"{VC} esx04.lab.test - - - 8.0.3 (24022510) gone yes 2026-11-21 08:00:00Z"
    )
    assert lines[-1] == "4 hosts (2 linked, 2 unmatched, 1 gone)"

    result = runner.invoke(app, ["hosts", "--url", url, "--unmatched", "--vcenter", VC])
    assert result.exit_code == 0, result.output
    assert "esx03.lab.test" in result.output and "esx01.lab.test" not in result.output

    result = runner.invoke(app, ["hosts", "--url", url, "--json"])
    assert result.exit_code == 0, result.output
    assert [EsxiHostRecord.model_validate(item) for item in json.loads(result.output)] == stored

    result = runner.invoke(app, ["hosts", "--url", url, "--vcenter", "nowhere"])
    assert result.exit_code == 0
    assert "no ESXi hosts in the inventory" in result.output and "matching" in result.output
    assert (
        json.loads(runner.invoke(app, ["hosts", "--url", url, "--vcenter", "x", "--json"]).output)
        == []
    )
