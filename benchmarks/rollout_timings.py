"""Where a rollout's time went, read back from the Prefect server after the flow ended.

Task-run states reach the server through events, after the fact: the time it
takes until every task run of the flow is recorded in a final state is the
server's lag (``settle_s``). Each task run is attributed to a server (a
``machine:<id>`` tag when it has one, else ``rollout_trace``'s mapping), which
gives each server's timeline: its span (first task start to last task end),
the time inside tasks, the idle gaps before each task, and the slot hand-off
between one server's last task and the next server's first (tasks the flow
runs after handing the slot on, ``AFTER_SLOT``, are left out of the span).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import datetime
from statistics import mean
from typing import Any
from uuid import UUID

_PAGE = 200
_SETTLE_TIMEOUT_S = 60.0
#: Task runs the flow starts after a server's rollout slot is given to the next server.
AFTER_SLOT = frozenset({"read_server_observation"})


def _secs(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _task_name(run: Any) -> str:
    # "wait_for_server-3f2" -> "wait_for_server"
    return str(run.name).rsplit("-", 1)[0]


async def _read_all(client: Any, flow_run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    runs: list[Any] = []
    while True:
        page = await client.read_task_runs(flow_run_filter=flt, limit=_PAGE, offset=len(runs))
        runs.extend(page)
        if len(page) < _PAGE:
            return runs


async def _settled(client: Any, flow_run_id: UUID) -> tuple[list[Any], float | None]:
    """Read until every task run is final and the count held for a second read.

    Returns:
        The task runs, and when (seconds after the flow ended) the server first had
        them all final; None when that did not happen within the time limit.
    """
    started = time.monotonic()
    previous: int | None = None
    final_at: float | None = None
    while True:
        runs = await _read_all(client, flow_run_id)
        final = all(r.state is not None and r.state.is_final() for r in runs)
        if final and previous == len(runs):
            return runs, final_at
        if final and previous != len(runs):
            final_at = round(time.monotonic() - started, 1)
        previous = len(runs) if final else None
        if time.monotonic() - started > _SETTLE_TIMEOUT_S:
            return runs, None
        await asyncio.sleep(1.0)


def _by_task(runs: list[Any]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        groups[_task_name(run)].append(run)
    table: dict[str, dict[str, Any]] = {}
    for name, members in sorted(groups.items()):
        secs = [s for s in (_secs(r.start_time, r.end_time) for r in members) if s is not None]
        table[name] = {
            "n": len(members),
            "mean_s": round(mean(secs), 3) if secs else None,
            "max_s": round(max(secs), 3) if secs else None,
            "total_s": round(sum(secs), 1),
            "extra_attempts": sum(max(0, (r.run_count or 1) - 1) for r in members),
            "not_completed": sum(1 for r in members if r.state and not r.state.is_completed()),
        }
    return table


def _group(runs: list[Any], server_of: dict[str, str]) -> dict[str, list[Any]]:
    servers: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        tags = [t for t in run.tags or [] if t.startswith("machine:")]
        key = tags[0][len("machine:") :] if tags else server_of.get(str(run.id))
        if key and run.start_time and run.end_time:
            servers[key].append(run)
    return servers


def _union_s(runs: list[Any]) -> float:
    """Seconds covered by the runs' intervals (a nested task run counts once)."""
    total, reach = 0.0, None
    for run in sorted(runs, key=lambda r: r.start_time):
        start, end = run.start_time, run.end_time
        if reach is not None and start < reach:
            start = reach
        if end > start:
            total += (end - start).total_seconds()
        reach = end if reach is None else max(reach, end)
    return total


def _gaps_before(members: list[Any], into: dict[str, list[float]]) -> None:
    """Idle time before each task run of one server (after the previous one ended)."""
    ordered = sorted(members, key=lambda r: r.start_time)
    reach = ordered[0].end_time
    for run in ordered[1:]:
        into[_task_name(run)].append(max(0.0, (run.start_time - reach).total_seconds()))
        reach = max(reach, run.end_time)


def _handoffs(spans: list[tuple[datetime, datetime]], max_parallel: int) -> list[float]:
    """Slot idle time between servers: the i-th start waits for the (i - max_parallel)-th end.

    It covers releasing the finished server's lease, the next one acquiring its
    lease, and whatever the flow does before that server's first task.
    """
    starts = sorted(s for s, _ in spans)
    ends = sorted(e for _, e in spans)
    return [
        max(0.0, (starts[i] - ends[i - max_parallel]).total_seconds())
        for i in range(max_parallel, len(starts))
    ]


def _per_server(runs: list[Any], server_of: dict[str, str], max_parallel: int) -> dict[str, Any]:
    servers = _group(runs, server_of)
    spans, busy, counts, windows = [], [], [], []
    gaps: dict[str, list[float]] = defaultdict(list)
    for everything in servers.values():
        counts.append(len(everything))
        # The flow refreshes a server's inventory record after giving its slot to the
        # next server: that task is not part of the server's time in the slot.
        members = [r for r in everything if _task_name(r) not in AFTER_SLOT] or everything
        first = min(r.start_time for r in members)
        last = max(r.end_time for r in members)
        windows.append((first, last))
        spans.append((last - first).total_seconds())
        busy.append(_union_s(members))
        _gaps_before(members, gaps)
    if not spans:
        return {"servers": 0}
    handoffs = _handoffs(windows, max_parallel)
    return {
        "servers": len(spans),
        "tasks_mean": round(mean(counts), 1),
        "span_mean_s": round(mean(spans), 2),
        "span_max_s": round(max(spans), 2),
        "in_tasks_mean_s": round(mean(busy), 2),
        "between_tasks_mean_s": round(mean(s - b for s, b in zip(spans, busy, strict=True)), 2),
        "gap_before": {
            name: round(sum(vals) / len(spans), 3)
            for name, vals in sorted(gaps.items(), key=lambda kv: -sum(kv[1]))
        },
        "handoff_mean_s": round(mean(handoffs), 2) if handoffs else None,
        "handoff_max_s": round(max(handoffs), 2) if handoffs else None,
    }


async def task_timings(
    flow_run_id: UUID,
    *,
    servers: int,
    max_parallel: int,
    server_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Per-task and per-server timings of a finished flow run, from its server.

    Args:
        flow_run_id: The rollout's flow run.
        servers: Servers in the rollout (for per-server averages).
        max_parallel: The flow's ``max_parallel`` (slot hand-offs).
        server_of: Task run id -> server tag, for runs without a ``machine:`` tag.

    Returns:
        Flow-run timing, the server's lag, a table per task name and per-server spans.
    """
    from prefect import get_client

    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        runs, settle_s = await _settled(client, flow_run_id)
    starts = [r.start_time for r in runs if r.start_time]
    ends = [r.end_time for r in runs if r.end_time]
    return {
        "flow_run_s": _secs(flow_run.start_time, flow_run.end_time),
        "lead_in_s": _secs(flow_run.start_time, min(starts)) if starts else None,
        "tail_s": _secs(max(ends), flow_run.end_time) if ends else None,
        "machine_tags_on_flow_run": sum(1 for t in flow_run.tags if t.startswith("machine:")),
        "task_runs": len(runs),
        "task_runs_per_server": round(len(runs) / servers, 1),
        "settle_s": settle_s,
        "by_task": _by_task(runs),
        "per_server": _per_server(runs, server_of or {}, max_parallel),
    }
