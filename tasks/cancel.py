"""Cooperative cancellation: stop a run between steps instead of killing it mid-step.

Killing a reboot chain while a PDU outlet is off (off / delay / on) or while
a host is half shut down leaves the machine worse than before. Runs of flows
that act step by step tag themselves :data:`STOPS_BETWEEN_STEPS` (with
``tasks.lease.tag_current_run(..., also=...)``, as soon as the machine is known);
``rackflow cancel`` then adds :data:`STOP_REQUESTED` to the run instead of
moving it to Cancelling, and the flow checks :func:`stop_requested` between
steps (and while it waits for the machine's lease), records where it
stopped, and ends Cancelled by itself. A run moved to
Cancelling some other way (the API, a local run) is honoured the same way
when nothing kills its process first.
"""

from __future__ import annotations

from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run

__all__ = ["STOPS_BETWEEN_STEPS", "STOP_REQUESTED", "stop_requested"]

STOPS_BETWEEN_STEPS = "stops-between-steps"
STOP_REQUESTED = "stop-requested"


async def stop_requested() -> str | None:
    """Tell whether someone asked the current run to stop.

    Returns:
        Why (``"stop requested"`` / ``"cancelling"``), or None to go on.
    """
    if not flow_run.id:
        return None
    async with get_client() as client:
        run = await client.read_flow_run(flow_run.id)
    if STOP_REQUESTED in run.tags:
        return "stop requested (rackflow cancel)"
    if run.state is not None and run.state.type in (StateType.CANCELLING, StateType.CANCELLED):
        return f"run is {run.state.name}"
    return None
