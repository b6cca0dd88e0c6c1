"""``rackflow inventory`` (typer sub-app) on a SQLite file."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clients.inventory import Inventory, ServerRecord, ServerStatus
from deployments.inventory_cli import app, format_table
from tests.test_inventory import T0, fw, obs

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    with Inventory(url=url) as inventory:
        inventory.upsert(
            obs(
                "127.10.0.1",
                service_tag="8CYCZ23",
                model="PowerEdge R640",
                bios_version="2.19.1",
                bmc_firmware_version="7.00.00.00",
                power_state="On",
                health="OK",
                firmware=[
                    fw("BIOS.Setup.1-1", "2.19.1", "bios"),
                    fw("iDRAC.Embedded.1-1", "7.00.00.00", "idrac"),
                ],
            ),
            run_id="run-1",
        )
        inventory.upsert(
            obs("127.10.0.2", service_tag="9DXKQ13", model="PowerEdge R750", power_state="Off")
        )
        inventory.upsert(
            obs("127.10.0.3", status=ServerStatus.AUTH_FAILED, seen_at=T0 + timedelta(minutes=1))
        )
        inventory.annotate("8CYCZ23", vcenter_host="esx-r12-3", attributes={"rack": "R12"})
    return url


def test_list_prints_one_aligned_line_per_server(url: str) -> None:
    result = runner.invoke(app, ["list", "--url", url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "IDENTITY", "BMC", "STATUS", "MODEL", "BIOS", "BMC", "FW", "POWER", "HEALTH", "LAST", "SEEN"
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["8CYCZ23", "127.10.0.1:8443", "online", "PowerEdge"]
    assert "2026-11-21 08:00:00Z" in lines[1]
    assert lines[2].split()[:3] == ["9DXKQ13", "127.10.0.2:8443", "online"]
    assert lines[3].split()[:3] == ["bmc:127.10.0.3:8443", "127.10.0.3:8443", "auth-failed"]
    # Columns line up: every row's BMC column starts where the header's does.
    column = lines[0].index("BMC")
    assert all(line[column:].startswith("127.10.0.") for line in lines[1:4])
    assert lines[-1] == "3 servers (1 auth-failed, 2 online)"


def test_list_filters(url: str) -> None:
    result = runner.invoke(app, ["list", "--url", url, "--model", "PowerEdge R750"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[1:2]] == ["9DXKQ13"]
    assert result.stdout.splitlines()[-1] == "1 servers (1 online)"

    result = runner.invoke(app, ["list", "--url", url, "--status", "auth-failed"])
    assert result.exit_code == 0, result.output
    assert "bmc:127.10.0.3:8443" in result.stdout and "8CYCZ23" not in result.stdout

    result = runner.invoke(app, ["list", "--url", url, "--status", "offline"])
    assert result.exit_code == 0
    assert (
        "no servers in the inventory" in result.stdout and "matching the filters" in result.stdout
    )

    result = runner.invoke(app, ["list", "--url", url, "--status", "bogus"])
    assert result.exit_code == 2
    assert "bogus" in result.output


def test_show_by_tag_and_by_address(url: str) -> None:
    result = runner.invoke(app, ["show", "8cycz23", "--url", url])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:4] == [
        "identity         8CYCZ23",
        "service tag      8CYCZ23",
        "bmc              127.10.0.1:8443",
        "status           online",
    ]
    assert "vcenter host     esx-r12-3" in result.stdout
    assert 'attributes       {"rack": "R12"}' in result.stdout
    assert "firmware (2 components):" in result.stdout
    assert "  idrac  iDRAC.Embedded.1-1  7.00.00.00" in result.stdout

    by_address = runner.invoke(app, ["show", "127.10.0.2", "--url", url])
    assert by_address.exit_code == 0, by_address.output
    assert by_address.stdout.splitlines()[0].split() == ["identity", "9DXKQ13"]
    assert "firmware: not read yet" in by_address.stdout


def test_show_unknown_server_fails(url: str) -> None:
    result = runner.invoke(app, ["show", "NOPE999", "--url", url])
    assert result.exit_code == 2
    assert "no server matches 'NOPE999'" in result.stderr


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_round_trips(url: str, fmt: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--format", fmt, "--url", url])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout)
    records = [ServerRecord.model_validate(item) for item in data]
    with Inventory(url=url) as inventory:
        assert records == inventory.list()
    assert data[0]["firmware"][1] == {
        "fqdd": "iDRAC.Embedded.1-1",
        "component_id": None,
        "kind": "idrac",
        "name": "iDRAC.Embedded.1-1",
        "version": "7.00.00.00",
        "updateable": False,
    }

    target = tmp_path / f"out.{fmt}"
    result = runner.invoke(app, ["export", "-f", fmt, "-o", str(target), "--url", url])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote 3 servers to {target}" in result.stderr
    assert yaml.safe_load(target.read_text()) == data


def test_url_and_block_together_refused(url: str) -> None:
    result = runner.invoke(app, ["list", "--url", url, "--block", "x"])
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_bad_url_reported(tmp_path: Path) -> None:
    result = runner.invoke(app, ["list", "--url", "mysql://u:secret@127.0.0.1/x"])
    assert result.exit_code == 2
    assert "unsupported backend" in result.stderr and "secret" not in result.output


def test_default_store_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACKFLOW_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"no servers in the inventory at sqlite:///{tmp_path / 'home' / 'inventory.db'}"
    )


def test_format_table_aligns_and_marks_missing() -> None:
    table = format_table(("A", "LONGER"), [["x", None], ["yyyy", 1.5]])
    assert table.splitlines() == ["A     LONGER", "x     -", "yyyy  1.5"]
