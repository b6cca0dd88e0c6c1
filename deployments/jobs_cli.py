"""``rackflow jobs | status | cancel``: a machine's job history from Prefect.

Every run that acts on a machine carries the tag ``machine:<id>`` (tasks/lease.py),
so a machine's history is a tag filter on the flow runs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any
from uuid import UUID

import typer
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Cancelling

from tasks.cancel import STOP_REQUESTED, STOPS_BETWEEN_STEPS
from tasks.lease import machine_tag

app = typer.Typer(help="Job history per machine, and control of runs.")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _who(run: FlowRun) -> str:
    if run.created_by and run.created_by.display_value:
        return f"{run.created_by.type or ''}:{run.created_by.display_value}".strip(":")
    return "deployment" if run.deployment_id else "local"


async def _flow_names(client: Any, runs: list[FlowRun]) -> dict[UUID, str]:
    names: dict[UUID, str] = {}
    for flow_id in {r.flow_id for r in runs}:
        names[flow_id] = (await client.read_flow(flow_id)).name
    return names


async def list_jobs(machine: str | None, limit: int) -> list[dict[str, str]]:
    """Runs of one machine (or of every machine), newest first."""
    async with get_client() as client:
        flt = (
            FlowRunFilter(tags=FlowRunFilterTags(all_=[machine_tag(machine)])) if machine else None
        )
        runs = await client.read_flow_runs(
            flow_run_filter=flt, sort=FlowRunSort.START_TIME_DESC, limit=limit
        )
        names = await _flow_names(client, runs)
    return [
        {
            "run": f"{r.name} ({r.id})",
            "flow": names.get(r.flow_id, "?"),
            "state": r.state.name if r.state else "-",
            "start": _when(r.start_time),
            "end": _when(r.end_time),
            "by": _who(r),
            "machines": ",".join(t.split(":", 1)[1] for t in r.tags if t.startswith("machine:")),
            "summary": (r.state.message or "") if r.state else "",
        }
        for r in runs
    ]


async def _find(client: Any, key: str) -> FlowRun:
    try:
        return await client.read_flow_run(UUID(key))
    except ValueError:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[key]))
        )
        if not runs:
            raise typer.BadParameter(f"no flow run named {key!r}") from None
        return runs[0]


@app.command("jobs")
def jobs(
    machine: Annotated[str | None, typer.Argument(help="Service tag or FQDN")] = None,
    limit: Annotated[int, typer.Option(help="How many runs")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List runs (flow, state, start, end, who triggered, result) of a machine."""
    rows = asyncio.run(list_jobs(machine, limit))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no runs for {machine}" if machine else "no runs")
        return
    for r in rows:
        typer.echo(
            f"{r['start']}  {r['end']}  {r['state']:<20} {r['flow']:<24} {r['by']:<12} "
            f"{r['run']}  {r['summary']}"
        )


@app.command("status")
def status(run: Annotated[str, typer.Argument(help="Flow run id or name")]) -> None:
    """Show one run: flow, state, message, machines, parameters."""

    async def show() -> dict[str, Any]:
        async with get_client() as client:
            fr = await _find(client, run)
            flow = await client.read_flow(fr.flow_id)
        return {
            "run": fr.name,
            "id": str(fr.id),
            "flow": flow.name,
            "state": fr.state.name if fr.state else None,
            "message": fr.state.message if fr.state else None,
            "start": _when(fr.start_time),
            "end": _when(fr.end_time),
            "machines": [t.split(":", 1)[1] for t in fr.tags if t.startswith("machine:")],
            "parameters": fr.parameters,
        }

    typer.echo(json.dumps(asyncio.run(show()), indent=2, default=str))


@app.command("cancel")
def cancel(run: Annotated[str, typer.Argument(help="Flow run id or name")]) -> None:
    """Ask a run to stop.

    Runs that stop between steps (reboot chains) are asked to stop after the
    current step and end Cancelled by themselves, with what they did recorded;
    other runs move to Cancelling, then Cancelled.
    """

    async def stop() -> str:
        async with get_client() as client:
            fr = await _find(client, run)
            if fr.state is not None and fr.state.is_final():
                raise typer.BadParameter(f"{fr.name} already ended ({fr.state.name})")
            running = fr.state is not None and fr.state.is_running()
            if running and STOPS_BETWEEN_STEPS in fr.tags:
                if STOP_REQUESTED not in fr.tags:
                    await client.update_flow_run(fr.id, tags=[*fr.tags, STOP_REQUESTED])
                return f"asked {fr.name} to stop after its current step"
            await client.set_flow_run_state(fr.id, Cancelling(message="cancelled by rackflow"))
            return f"cancelling {fr.name}"

    typer.echo(asyncio.run(stop()))
