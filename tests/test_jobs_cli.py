"""rackflow jobs / status / cancel: a machine's job history from the flow-run tags."""

from __future__ import annotations

import asyncio
import json

from prefect import flow, get_client
from prefect.states import Scheduled
from typer.testing import CliRunner

from deployments.cli import app
from tasks.lease import tag_current_run
from tests.test_lease import hold

runner = CliRunner()


def _rows(args: list[str]) -> list[dict[str, str]]:
    result = runner.invoke(app, ["jobs", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # notes go to stderr


def test_jobs_shows_a_machines_history_and_status_and_cancel(prefect_harness):
    first = asyncio.run(hold("HIST001", 0.05))
    second = asyncio.run(hold("HIST001", 0.05))
    asyncio.run(hold("OTHR001", 0.05))

    result = runner.invoke(app, ["jobs", "HIST001", "--json"])
    assert result.exit_code == 0, result.output
    # Not in the (default, empty) inventory: the name as typed, and a note saying so.
    assert "HIST001 is not in the inventory; showing runs tagged machine:HIST001" in (result.stderr)
    rows = json.loads(result.stdout)
    assert len(rows) == 2
    assert {r["id"] for r in rows} == {first, second}
    assert all(r["flow"] == "lease-holder" and r["state"] == "Completed" for r in rows)
    assert all(r["machines"] == "HIST001" and r["by"] == "local" for r in rows)
    assert all(r["end"] != "-" for r in rows)

    status = runner.invoke(app, ["status", first])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    assert (shown["flow"], shown["state"], shown["machines"], shown["by"]) == (
        "lease-holder",
        "Completed",
        ["HIST001"],
        "local",
    )

    async def scheduled() -> str:
        async with get_client() as client:
            run = await client.create_flow_run(hold, parameters={"machine": "HIST001", "hold_s": 1})
            return str(run.id)

    run_id = asyncio.run(scheduled())
    cancelled = runner.invoke(app, ["cancel", run_id])
    assert cancelled.exit_code == 0, cancelled.output

    async def state() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(run_id)).state.type.value

    assert asyncio.run(state()) in ("CANCELLING", "CANCELLED")


@flow(name="asked-for")
async def asked_for(machine: str, requested_by: str | None = None) -> None:
    await tag_current_run([machine])


def test_who_triggered_a_run(prefect_harness):
    """requested_by first (Prefect's created_by is only set for automations), then the
    deployment, then "local"."""
    asyncio.run(asked_for("WHO0001", requested_by="alice"))
    asyncio.run(asked_for("WHO0001"))

    async def from_deployment() -> None:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("asked-for")
            deployment = await client.create_deployment(flow_id=flow_id, name="nightly")
            for params in ({"requested_by": "nagios"}, {}):
                await client.create_flow_run_from_deployment(
                    deployment, parameters={"machine": "WHO0001", **params},
                    tags=["machine:WHO0001"], state=Scheduled(),
                )  # fmt: skip

    asyncio.run(from_deployment())
    by = sorted(r["by"] for r in _rows(["WHO0001"]))
    assert by == ["alice", "deployment asked-for/nightly", "local", "nagios"]


def test_status_of_unknown_run_is_a_clear_error(prefect_harness):
    result = runner.invoke(app, ["status", "no-such-run-name"])
    assert result.exit_code != 0
    assert "no flow run named 'no-such-run-name'" in result.output
