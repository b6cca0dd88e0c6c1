"""The inventory's Prefect tasks and the CLI's ``--block`` option, under the test harness."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect import flow
from typer.testing import CliRunner

from blocks.inventory import InventoryStore
from clients.inventory import Inventory, ServerObservation, ServerStatus, default_inventory_url
from deployments.inventory_cli import app
from tasks.inventory import mark_servers_offline, record_servers
from tests.test_inventory import obs

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow
def _discovery_like(
    observations: list[ServerObservation], block: str
) -> tuple[dict[str, int], int]:
    counts = record_servers(observations, block)
    scanned = [(o.bmc_address, o.bmc_port) for o in observations] + [("127.10.0.99", 8443)]
    offline = mark_servers_offline(scanned, scanned[:1], block)
    return counts, offline


def test_tasks_write_through_the_named_block(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    InventoryStore(url=url).save("inventory-tasks-test", overwrite=True)
    observations = [
        obs("127.10.0.1", service_tag="TASK001"),
        obs("127.10.0.2", service_tag="TASK002"),
    ]

    state = _discovery_like(observations, "inventory-tasks-test", return_state=True)
    counts, offline = state.result()

    assert counts == {"created": 2, "updated": 0, "moved": 0}
    assert offline == 1
    with Inventory(url=url) as inventory:
        records = {r.identity: r for r in inventory.list()}
    assert records["TASK001"].status is ServerStatus.ONLINE
    assert records["TASK002"].status is ServerStatus.OFFLINE
    # No run id given: the tasks stamp the flow run's id.
    assert records["TASK001"].discovery_run_id == str(state.state_details.flow_run_id)

    result = CliRunner().invoke(app, ["list", "--block", "inventory-tasks-test"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "2 servers (1 offline, 1 online)"


def test_tasks_called_from_a_thread_of_an_async_flow_use_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our own default store, not the session's shared one.
    monkeypatch.setenv("RACKFLOW_HOME", str(tmp_path / "home"))

    # discovery calls record_servers via asyncio.to_thread; no block -> default store.
    @flow
    async def async_flow() -> dict[str, int]:
        return await asyncio.to_thread(
            record_servers, [obs("127.10.0.3", service_tag="TASK003")], None, "run-async"
        )

    assert asyncio.run(async_flow()) == {"created": 1, "updated": 0, "moved": 0}
    assert default_inventory_url().startswith(f"sqlite:///{tmp_path / 'home'}")
    with Inventory(url=default_inventory_url()) as inventory:
        record = inventory.get("TASK003")
    assert record is not None and record.discovery_run_id == "run-async"


def test_unknown_block_is_reported_by_the_cli() -> None:
    result = CliRunner().invoke(app, ["list", "--block", "no-such-inventory-block"])
    assert result.exit_code == 2
    assert "no-such-inventory-block" in result.stderr
