"""rackflow jobs / status / cancel: a machine's job history from the flow-run tags."""

from __future__ import annotations

import asyncio
import json

from prefect import get_client
from typer.testing import CliRunner

from deployments.cli import app
from tests.test_lease import hold

runner = CliRunner()


def test_jobs_shows_a_machines_history_and_status_and_cancel(prefect_harness):
    first = asyncio.run(hold("HIST001", 0.05))
    second = asyncio.run(hold("HIST001", 0.05))
    asyncio.run(hold("OTHR001", 0.05))

    result = runner.invoke(app, ["jobs", "HIST001", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2
    assert {r["run"].split("(")[1].rstrip(")") for r in rows} == {first, second}
    assert all(r["flow"] == "lease-holder" and r["state"] == "Completed" for r in rows)
    assert all(r["machines"] == "HIST001" for r in rows)

    status = runner.invoke(app, ["status", first])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    assert (shown["flow"], shown["state"], shown["machines"]) == (
        "lease-holder",
        "Completed",
        ["HIST001"],
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


def test_status_of_unknown_run_is_a_clear_error(prefect_harness):
    result = runner.invoke(app, ["status", "no-such-run-name"])
    assert result.exit_code != 0
    assert "no flow run named 'no-such-run-name'" in result.output
