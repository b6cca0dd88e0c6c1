"""Filing runs in a machine's job history, and telling which run holds its lease.

A run acting on a machine carries the tag ``machine:<id>`` (``rackflow jobs
<id>``, the Prefect UI's tag filter). Prefect's API does not say who holds a
concurrency lease, so the holder labels its run ``rackflow.lease.<limit>=held``
while it holds the machine's lease (``released`` after): a "machine busy"
error then names that run, never the other runs waiting for the machine.
Labels are patched server-side (no read-modify-write that could race with
``rackflow cancel`` adding a tag).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run

from tasks.lease_limits import lease_name

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

__all__ = ["holder_label", "lease_holders", "machine_tag", "mark_holder", "tag_current_run"]

logger = logging.getLogger("rackflow.tasks.lease")

_HELD, _RELEASED = "held", "released"


def machine_tag(machine: str) -> str:
    """The flow-run tag that files a run in the machine's job history."""
    return f"machine:{machine.strip()}"


def holder_label(machine: str) -> str:
    """The flow-run label marking the run that holds the machine's lease."""
    return f"rackflow.lease.{lease_name(machine)}"


async def tag_current_run(machines: Sequence[str], *, also: Sequence[str] = ()) -> None:
    """File the current flow run under these machines (``rackflow jobs <id>``, the UI).

    Flows that act on many machines call this once, up front: one read and one
    write, instead of one racy read-modify-write per machine.

    Args:
        machines: Machine ids.
        also: Other tags to add in the same write (e.g. ``stops-between-steps``).
    """
    if not flow_run.id or not (machines or also):
        return
    async with get_client() as client:
        run = await client.read_flow_run(flow_run.id)
        tags = dict.fromkeys([*(machine_tag(m) for m in machines), *also])
        wanted = [t for t in tags if t not in run.tags]
        if wanted:
            await client.update_flow_run(run.id, tags=[*run.tags, *wanted])


async def mark_holder(client: PrefectClient, machine: str, *, held: bool) -> None:
    """Label the current run as holding (or no longer holding) the machine's lease.

    Best effort: only the wording of a busy error depends on it.

    Args:
        client: An open Prefect client.
        machine: Machine id.
        held: True once the lease is taken, False before it is given back.
    """
    if not flow_run.id:
        return
    value = _HELD if held else _RELEASED
    try:
        await client.update_flow_run_labels(flow_run.id, {holder_label(machine): value})
    except httpx.HTTPError as exc:
        logger.warning("could not label the run %s of %s's lease: %s", value, machine, exc)


async def lease_holders(machine: str) -> list[str]:
    """The running flow runs holding the machine's lease, as ``name (id)``; not those waiting.

    Args:
        machine: Machine id.

    Returns:
        Usually the one labelled holder; when no run is labelled (fleet runs do not
        label), ``["one of A, B"]`` for the runs filed under the machine; empty when
        no run is (the holder is not a flow run).
    """
    key = holder_label(machine)
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[machine_tag(machine)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            )
        )
    mine = str(flow_run.id) if flow_run.id else None
    others = [r for r in runs if str(r.id) != mine]
    held = [f"{r.name} ({r.id})" for r in others if r.labels.get(key) == _HELD]
    if held or not others:
        return held
    # Runs over a fleet do not label each lease (machine_lease(label=False)): name the
    # runs filed under the machine that are not known to be only waiting for it.
    maybe = [f"{r.name} ({r.id})" for r in others if r.labels.get(key) != _RELEASED]
    return [f"one of {', '.join(maybe)}"] if len(maybe) > 1 else maybe
