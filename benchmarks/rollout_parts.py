"""The child processes of the rolling-update benchmark; each prints ``RESULT <json>``.

- ``lab``: the simulated iDRACs and their firmware repository (``lab.server.Lab``);
  writes ``lab.json`` (credentials, CA, repository, expected versions), prints
  ``READY`` and serves until its stdin closes;
- ``discover``: saves the credentials and inventory blocks and runs the real
  discovery flow to fill the inventory (not measured);
- ``rollout``: the measured part: the real ``rolling_firmware_update`` flow against
  the benchmark's Prefect server, then (after peak memory is taken) the task-run
  timings read back from that server.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

from parts_io import READY_LINE, emit, hwm_mb, maxrss_mb, write_private
from rollout_plan import CREDENTIALS_BLOCK, INVENTORY_BLOCK, Plan
from rollout_timings import task_timings
from rollout_trace import TaskRunServers


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 2)


def serve_lab(plan: Plan, state: Path) -> None:
    """Run the lab iDRACs and the firmware repository until stdin closes.

    Args:
        plan: Fleet size, speed and durations.
        state: The run's private state directory.
    """
    from lab.fleet import FleetSpec
    from lab.server import Lab

    fleet = FleetSpec.generate(
        count=plan.servers,
        subnet=plan.subnet,
        port=0,
        seed=231,
        speed=plan.speed,
        durations=plan.durations,
    )
    with Lab(fleet=fleet, state_dir=state / "lab", repository=True) as lab:
        repo = lab.repository
        assert repo is not None and repo.base_url
        info = {
            "username": fleet.username,
            "password": fleet.password,
            "ca_path": str(lab.ca_path),
            "port": lab.bmcs[0].port,
            "admin_url": lab.admin_url,
            "repository": repo.base_url + "/",
            "servers": {
                b.key: {
                    "tag": b.service_tag,
                    "model": b.spec.model,
                    "before": b.bios_version,
                    "target": repo.target_version(b.spec.model, "bios"),
                }
                for b in lab.bmcs
            },
        }
        write_private(state / "lab.json", info)
        print(READY_LINE, flush=True)
        sys.stdin.buffer.read()  # returns at EOF: the parent is done with us


def _lab_info(state: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((state / "lab.json").read_text(encoding="utf-8"))
    return info


async def discover(plan: Plan, state: Path) -> dict[str, Any]:
    """Save the blocks and fill the inventory with the real discovery flow.

    Args:
        plan: The lab's address range.
        state: The run's private state directory.

    Returns:
        Servers found and the discovery's wall time.
    """
    from blocks import InventoryStore, RedfishCredentials
    from flows.discovery import discovery

    info = _lab_info(state)
    await RedfishCredentials(
        username=info["username"],
        password=info["password"],
        ca_bundle=info["ca_path"],
        read_timeout=10.0,
    ).asave(CREDENTIALS_BLOCK, overwrite=True)
    await InventoryStore(url=f"sqlite:///{state / 'inventory.db'}").asave(
        INVENTORY_BLOCK, overwrite=True
    )
    started = time.monotonic()
    summary = await discovery(
        ranges=[plan.address_range],
        ports=[info["port"]],
        credentials_block=CREDENTIALS_BLOCK,
        inventory_block=INVENTORY_BLOCK,
        resume_minutes=0,
    )
    return {"found": summary.found, "wall_s": round(time.monotonic() - started, 2)}


async def _run_flow(plan: Plan, info: dict[str, Any]) -> tuple[Any, float]:
    from flows.firmware_update import rolling_firmware_update
    from flows.rollout import StepDeadlines

    tags = [s["tag"] for s in info["servers"].values()]
    started = time.monotonic()
    state = await rolling_firmware_update(
        source={"kind": "repository", "base_url": info["repository"]},
        targets=tags,
        components=["bios"],
        apply_time="OnReset",
        max_parallel=plan.max_parallel,
        max_failures=plan.servers,  # measure every server; failures are counted, not halted on
        deadlines=StepDeadlines(poll_interval_s=plan.poll_interval_s),
        credentials_block=CREDENTIALS_BLOCK,
        inventory_block=INVENTORY_BLOCK,
        return_state=True,
    )
    return state, time.monotonic() - started


async def rollout(plan: Plan, state: Path, *, profile: bool) -> dict[str, Any]:
    """Run the rolling update; take peak memory; then read the task-run timings back.

    Args:
        plan: Fleet size, ``max_parallel`` and the poll interval.
        state: The run's private state directory.
        profile: Run the flow under cProfile (stats to stderr and /tmp).

    Returns:
        Wall time, outcomes, memory, CPU and the timing breakdown.
    """
    info = _lab_info(state)
    tracer = TaskRunServers(info["servers"])
    tracer.install()
    cpu_before = _cpu_s()
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    try:
        flow_state, wall = await _run_flow(plan, info)
    finally:
        tracer.remove()
    if prof is not None:
        prof.disable()
        _dump_profile(prof)
    result: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "hwm_mb": hwm_mb(),
        "maxrss_mb": maxrss_mb(),
        "cpu_s": round(_cpu_s() - cpu_before, 2),
        "state": flow_state.type.value,
        "message": flow_state.message,
    }
    summary = await flow_state.result(raise_on_failure=False)
    rows = getattr(summary, "rows", [])
    result["outcomes"] = _count(str(r.result) for r in rows)
    result["failures"] = [
        f"{r.server} {r.component}: {r.message}" for r in rows if str(r.result) != "updated"
    ][:5]
    result["flow_duration_s"] = getattr(summary, "duration_s", None)
    result["component_s"] = sorted(r.duration_s for r in rows if str(r.result) == "updated")
    result["timings"] = await task_timings(
        flow_state.state_details.flow_run_id,
        servers=plan.servers,
        max_parallel=plan.max_parallel,
        server_of=tracer.runs,
    )
    result["timings"]["unattributed_runs"] = tracer.unmatched
    return result


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _dump_profile(prof: cProfile.Profile) -> None:
    out = Path("/tmp/rackflow-bench-rollout.pstats")
    prof.dump_stats(out)
    stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime")
    stats.print_stats(30)
    print(f"profile written to {out}", file=sys.stderr)


def run_inside(part: str, state: Path, *, profile: bool) -> None:
    """Entry point of a child process.

    Args:
        part: ``lab``, ``discover`` or ``rollout``.
        state: The run's private state directory (holds ``plan.json``).
        profile: Profile the rollout.

    Raises:
        ValueError: Unknown part.
    """
    plan = Plan.load(state / "plan.json")
    if part == "lab":
        serve_lab(plan, state)
    elif part == "discover":
        emit(asyncio.run(discover(plan, state)))
    elif part == "rollout":
        emit(asyncio.run(rollout(plan, state, profile=profile)))
    else:
        raise ValueError(f"unknown part {part!r}")
