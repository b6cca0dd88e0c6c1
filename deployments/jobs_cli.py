"""``rackflow jobs | status | cancel``: a machine's job history from Prefect.

Every run that acts on a machine carries the tag ``machine:<id>``
(tasks/lease_history.py), where ``<id>`` is the machine's identity in the
inventory: its service tag when known, else its FQDN. ``rackflow jobs``
resolves what the operator typed (FQDN, service tag, BMC address) through the
inventory, so ``rackflow jobs web01.example.com`` finds the runs of a machine
filed under its service tag; when the inventory cannot be read it looks for
the name as typed, and says so.
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
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from tasks.cancel import STOP_REQUESTED, STOPS_BETWEEN_STEPS
from tasks.lease import machine_tag

app = typer.Typer(help="Job history per machine, and control of runs.")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def who_triggered(run: FlowRun, deployment: str | None = None) -> str:
    """Who asked for a run, as well as Prefect lets us know.

    Open-source Prefect sets ``created_by`` only for automations, so the run's
    own ``requested_by`` parameter (reboot flows, bugs) comes first.

    Args:
        run: The flow run.
        deployment: Its deployment's name, when it came from one.

    Returns:
        ``requested_by``, else the creator, else ``deployment <name>``, else ``local``.
    """
    asked = (run.parameters or {}).get("requested_by")
    if isinstance(asked, str) and asked.strip():
        return asked.strip()
    if run.created_by and run.created_by.display_value:
        return f"{run.created_by.type or ''}:{run.created_by.display_value}".strip(":")
    if run.deployment_id:
        return f"deployment {deployment or run.deployment_id}"
    return "local"


def resolve_machine(machine: str, inventory_block: str | None) -> tuple[list[str], str | None]:
    """The names a machine's runs are tagged with, looked up in the inventory.

    Args:
        machine: What the operator typed (FQDN, service tag, BMC address...).
        inventory_block: ``InventoryStore`` block name (None: the default store, as flows).

    Returns:
        The names (the inventory's identity first, then its FQDN, service tag and
        the argument), and a note for the operator when the inventory did not help.
    """
    # Imported here: only `jobs MACHINE` needs the inventory.
    from tasks.inventory import load_inventory_store

    typed = machine.strip()
    try:
        with load_inventory_store(inventory_block).get_client() as inventory:
            record = inventory.get(typed)
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to the name as typed
        why = f"could not look {typed} up in the inventory ({exc})"
        return [typed], f"{why}; showing runs tagged {machine_tag(typed)}"
    if record is None:
        return [typed], f"{typed} is not in the inventory; showing runs tagged {machine_tag(typed)}"
    names = (record.identity, record.fqdn, record.service_tag, typed)
    return list(dict.fromkeys(n for n in names if n)), None


async def _names(client: Any, runs: list[FlowRun]) -> tuple[dict[UUID, str], dict[UUID, str]]:
    flows: dict[UUID, str] = {}
    for flow_id in {r.flow_id for r in runs}:
        flows[flow_id] = (await client.read_flow(flow_id)).name
    deployments: dict[UUID, str] = {}
    for dep_id in {r.deployment_id for r in runs if r.deployment_id}:
        try:
            dep = await client.read_deployment(dep_id)
        except ObjectNotFound:  # deleted since: the id is all there is
            continue
        deployments[dep_id] = f"{flows.get(dep.flow_id) or 'flow'}/{dep.name}"
    return flows, deployments


def _row(run: FlowRun, flows: dict[UUID, str], deployments: dict[UUID, str]) -> dict[str, str]:
    return {
        "run": f"{run.name} ({run.id})",
        "id": str(run.id),
        "flow": flows.get(run.flow_id, "?"),
        "state": (run.state.name or "-") if run.state else "-",
        "start": _when(run.start_time),
        "end": _when(run.end_time),
        "by": who_triggered(run, deployments.get(run.deployment_id) if run.deployment_id else None),
        "machines": ",".join(t.split(":", 1)[1] for t in run.tags if t.startswith("machine:")),
        "summary": (run.state.message or "") if run.state else "",
    }


async def list_jobs(names: list[str] | None, limit: int) -> list[dict[str, str]]:
    """Runs filed under any of these machine names (None: every run), newest first.

    Args:
        names: Machine names (see :func:`resolve_machine`), or None.
        limit: At most this many runs.

    Returns:
        One row per run: run, id, flow, state, start, end, by, machines, summary.
    """
    async with get_client() as client:
        flt = (
            FlowRunFilter(tags=FlowRunFilterTags(any_=[machine_tag(n) for n in names]))
            if names
            else None
        )
        runs = await client.read_flow_runs(
            flow_run_filter=flt, sort=FlowRunSort.START_TIME_DESC, limit=limit
        )
        flows, deployments = await _names(client, runs)
    return [_row(r, flows, deployments) for r in runs]


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
    machine: Annotated[
        str | None, typer.Argument(help="FQDN, service tag or BMC address (see the inventory)")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    inventory_block: Annotated[
        str | None,
        typer.Option(help="InventoryStore block to look the machine up in (default: as flows)"),
    ] = None,
) -> None:
    """List runs (flow, state, start, end, who triggered, result) of a machine."""
    names: list[str] | None = None
    if machine:
        names, note = resolve_machine(machine, inventory_block)
        if note:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    rows = asyncio.run(list_jobs(names, limit))
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
    """Show one run: flow, state, message, who triggered it, machines, parameters."""

    async def show() -> dict[str, Any]:
        async with get_client() as client:
            fr = await _find(client, run)
            flows, deployments = await _names(client, [fr])
        row = _row(fr, flows, deployments)
        return {
            "run": fr.name,
            "id": str(fr.id),
            "flow": row["flow"],
            "state": fr.state.name if fr.state else None,
            "message": fr.state.message if fr.state else None,
            "start": row["start"],
            "end": row["end"],
            "by": row["by"],
            "machines": [t.split(":", 1)[1] for t in fr.tags if t.startswith("machine:")],
            "parameters": fr.parameters,
        }

    typer.echo(json.dumps(asyncio.run(show()), indent=2, default=str))


@app.command("cancel")
def cancel(run: Annotated[str, typer.Argument(help="Flow run id or name")]) -> None:
    """Ask a run to stop.

    Runs that stop between steps (reboot chains) are asked to stop after the
    current step (or while they still wait for the machine) and end Cancelled
    by themselves, with what they did recorded; other runs move to
    Cancelling, then Cancelled.
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
