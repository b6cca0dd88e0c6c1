"""Machine reboot paths in the inventory: the import file, validation, export round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from typer.testing import CliRunner

from clients.errors import PreconditionError
from clients.inventory import Inventory, ServerStatus, access_file
from clients.inventory.access import parse_outlet
from clients.inventory.migrate import alembic_config
from deployments.inventory_cli import app
from tests.test_inventory import obs

runner = CliRunner()

GOOD = """\
machines:
  - name: Web01.Example.COM
    service_tag: 8cycz23
    address: 127.78.0.1
    ping: {method: tcp, port: 2222}
    ssh: {host: 127.78.0.1, port: 2222, user: root, credentials: ops-ssh}
    ipmi: {address: 127.79.0.1, credentials: ops-ipmi}
    pdu: {host: 127.80.0.1, port: 1161, credentials: pdu-rw, model: sentry3, outlet: aa7}
    bugzilla: {product: Infrastructure, component: Hardware, cc: [ops@example.com],
               credentials: bugzilla}
  - name: xen-vm07.example.com
    xen: {vm_uuid: 3F0C5A4E-9B1D-4E6A-8C2F-0D1E2F3A4B5C, credentials: xen-pool1}
    ilo: {address: 127.81.0.7, port: 8443, credentials: ops-ilo}
"""

BAD = """\
machines:
  - name: ok.example.com
    ssh: {host: 127.0.0.1, credentials: ops-ssh}
  - name: web02.example.com
    pdu: {host: 127.0.0.1, credentials: pdu-rw, model: sentry3, outlet: 7}
  - service_tag: TAG1
    ipmi: {address: 127.0.0.1, credentials: Bad_Name}
    reboot_via: carrier-pigeon
  - ssh: {host: 127.0.0.1, credentials: ops-ssh}
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'inventory.db'}"


def test_outlets_parse_per_pdu_model() -> None:
    assert parse_outlet("apc", "12") == (12,)
    assert parse_outlet("sentry3", "AA1") == (1, 1, 1)
    assert parse_outlet("sentry3", "BC16") == (2, 3, 16)
    for model, outlet in (("apc", "AA1"), ("apc", "0"), ("sentry3", "7"), ("x", "1")):
        with pytest.raises(ValueError):
            parse_outlet(model, outlet)


def test_bad_file_lists_every_problem_by_line_and_machine(url: str) -> None:
    with pytest.raises(PreconditionError) as info:
        access_file.load(BAD, source="machines.yaml")
    message = str(info.value)
    assert message.startswith("machines.yaml: 4 problem(s), nothing imported")
    assert "line 4 (web02.example.com): pdu: Value error, Sentry3 outlet must look like AA1" in (
        message
    )
    assert "line 6 (TAG1): ipmi.credentials: String should match pattern" in message
    assert "line 6 (TAG1): reboot_via: Extra inputs are not permitted" in message
    assert "line 9 (machines[3]): entry: Value error, a machine needs a name (FQDN) or a" in (
        message
    )
    assert "ok.example.com" not in message


def test_cli_import_validates_everything_before_writing(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = runner.invoke(app, ["import", str(bad), "--url", url])
    assert result.exit_code == 2
    assert "line 4 (web02.example.com)" in result.output
    with Inventory(url=url) as inventory:
        assert inventory.list() == []  # the valid first entry was not written either


def test_import_creates_machines_findable_by_name_and_tag(url: str, tmp_path: Path) -> None:
    path = tmp_path / "machines.yaml"
    path.write_text(GOOD)
    result = runner.invoke(app, ["import", str(path), "--url", url])
    assert result.exit_code == 0, result.output
    assert "imported 2 machines (2 new, 0 updated)" in result.output
    with Inventory(url=url) as inventory:
        web = inventory.get("web01.example.com")
        assert web is not None and web == inventory.get("8CYCZ23")
        assert web.identity == "8CYCZ23" and web.fqdn == "web01.example.com"
        assert web.status is ServerStatus.REGISTERED
        assert web.access.paths() == ["ssh", "ipmi", "pdu"]
        assert web.access.pdu is not None and web.access.pdu.outlet == "AA7"
        assert web.access.ping is not None and web.access.ping.port == 2222
        vm = inventory.get("XEN-VM07.example.com.")
        assert vm is not None and vm.identity == "xen-vm07.example.com"
        assert vm.access.xen is not None
        assert vm.access.xen.vm_uuid == "3f0c5a4e-9b1d-4e6a-8c2f-0d1e2f3a4b5c"


def test_export_round_trips_and_reimport_changes_nothing(url: str, tmp_path: Path) -> None:
    path = tmp_path / "machines.yaml"
    path.write_text(GOOD)
    assert runner.invoke(app, ["import", str(path), "--url", url]).exit_code == 0
    out = tmp_path / "export.yaml"
    result = runner.invoke(app, ["export", "--access", "-o", str(out), "--url", url])
    assert result.exit_code == 0, result.output
    exported = access_file.load(out.read_text())
    assert exported == sorted(access_file.load(GOOD), key=lambda e: e.service_tag or e.name)
    with Inventory(url=url) as inventory:
        before = inventory.list()
        assert inventory.register(exported) == {"created": 0, "updated": 2}
        after = inventory.list()
    assert [(r.identity, r.access) for r in before] == [(r.identity, r.access) for r in after]


def test_discovery_merges_into_a_registered_machine_by_service_tag(url: str) -> None:
    with Inventory(url=url) as inventory:
        inventory.register(access_file.load(GOOD))
        inventory.upsert(obs("127.10.0.1", service_tag="8CYCZ23", model="PowerEdge R640"))
        [web] = [r for r in inventory.list() if r.service_tag == "8CYCZ23"]
        assert web.status is ServerStatus.ONLINE and web.model == "PowerEdge R640"
        assert web.fqdn == "web01.example.com" and web.access.paths() == ["ssh", "ipmi", "pdu"]
        assert len(inventory.list()) == 2


def test_a_name_and_tag_of_two_different_machines_is_refused(url: str) -> None:
    with Inventory(url=url) as inventory:
        inventory.register(access_file.load(GOOD))
        clash = access_file.load(
            "machines:\n  - {name: xen-vm07.example.com, service_tag: 8CYCZ23}"
        )
        with pytest.raises(PreconditionError, match="name belongs to xen-vm07.example.com"):
            inventory.register(clash)


def test_upgrade_from_0001_keeps_old_link_values(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO servers (identity, status, first_seen, last_seen, ssh_target, pdu,"
                " attributes) VALUES ('TAG9', 'online', '2026-11-21 08:00:00',"
                " '2026-11-21 08:00:00', 'root@web09', 'pdu-1/7', '{\"rack\": \"R1\"}')"
            )
        )
    engine.dispose()
    with Inventory(url=url) as inventory:
        record = inventory.get("TAG9")
    assert record is not None
    assert record.attributes == {"rack": "R1", "ssh_target": "root@web09", "pdu": "pdu-1/7"}
