"""The ``rackflow`` command line: validation, a local discovery run, block creation."""

from __future__ import annotations

from typer.testing import CliRunner

from blocks import InventoryStore, RedfishCredentials
from deployments.cli import app
from lab.fleet import build_fleet
from lab.server import Lab

runner = CliRunner()


def test_discover_refuses_bad_range_with_exit_2():
    result = runner.invoke(app, ["discover", "127.10.0.1", "127.10.0.300"])
    assert result.exit_code == 2
    assert "'127.10.0.300' is not an IPv4 address" in result.output


def test_discover_refuses_bad_port():
    result = runner.invoke(app, ["discover", "127.10.0.1", "--port", "99999"])
    assert result.exit_code == 2
    assert "outside 1-65535" in result.output


def test_discover_runs_the_flow_locally(prefect_harness, tmp_path):
    fleet = build_fleet({"subnet": "127.10.5.0/24", "port": 0, "bmcs": [{"count": 3}]})
    with Lab(fleet=fleet, state_dir=tmp_path / "lab") as lab:
        RedfishCredentials(
            username=fleet.username, password=fleet.password, ca_bundle=str(lab.ca_path)
        ).save("cli-lab", overwrite=True)
        url = f"sqlite:///{tmp_path / 'inv.db'}"
        InventoryStore(url=url).save("cli-inv", overwrite=True)
        result = runner.invoke(
            app,
            [
                "discover",
                "127.10.5.1-4",
                "--port",
                str(lab.bmcs[0].port),
                "--credentials",
                "cli-lab",
                "--inventory-block",
                "cli-inv",
                "--resume-minutes",
                "0",
            ],
        )
    assert result.exit_code == 0, result.output
    assert '"found": 3' in result.output
    assert '"no_answer": 1' in result.output
    for bmc in fleet.bmcs:
        assert bmc.service_tag in result.output
    listing = runner.invoke(app, ["inventory", "list", "--url", url])
    assert all(b.service_tag in listing.output for b in fleet.bmcs)


def test_create_redfish_block_reads_password_from_environment(prefect_harness, unique_password):
    result = runner.invoke(
        app,
        ["blocks", "create-redfish", "cli-made", "--username", "ops", "--overwrite"],
        env={"RACKFLOW_BMC_PASSWORD": unique_password},
    )
    assert result.exit_code == 0, result.output
    assert unique_password not in result.output
    block = RedfishCredentials.load("cli-made")
    assert block.username == "ops"
    assert block.password.get_secret_value() == unique_password
    assert block.verify_tls is True


def test_create_redfish_block_without_password_is_refused(prefect_harness):
    result = runner.invoke(
        app,
        ["blocks", "create-redfish", "no-pw", "--username", "ops"],
        env={"RACKFLOW_BMC_PASSWORD": ""},
    )
    assert result.exit_code == 2
    assert "no BMC password: set RACKFLOW_BMC_PASSWORD" in result.output
