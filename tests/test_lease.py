"""The machine lease: one job per machine at a time, the job history tag, a clear busy error."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run

from tasks.lease import (
    LeaseReleases,
    LeaseWaitStopped,
    MachineBusyError,
    MachineLeaseLost,
    ensure_machine_limits,
    lease_name,
    machine_lease,
)

EVENTS: list[tuple[str, str, str]] = []
# Set by a test to let the holder of a machine go (flows run in the test's event loop).
RELEASE: dict[str, asyncio.Event] = {}
STOP: dict[str, str] = {}


@flow(name="lease-holder")
async def hold(machine: str, hold_s: float, wait_s: float = 60.0) -> str:
    async with machine_lease(machine, wait_s=wait_s):
        EVENTS.append(("in", machine, str(flow_run.id)))
        await asyncio.sleep(hold_s)
        EVENTS.append(("out", machine, str(flow_run.id)))
    return str(flow_run.id)


@flow(name="lease-pair")
async def pair(a: tuple[str, float], b: tuple[str, float]) -> list[str]:
    # Subflows of one parent run side by side (top-level flow calls in one
    # event loop do not), like two workers acting at once.
    return list(await asyncio.gather(hold(*a), hold(*b)))


def test_lease_name_is_safe_for_prefect():
    assert lease_name("8CYCZ23") == "machine-8CYCZ23"
    assert lease_name("esx/01&a") == "machine-esx_01_a"


async def test_second_job_on_same_machine_waits_and_never_interleaves(prefect_harness):
    EVENTS.clear()
    first, second = await pair(("SAME001", 3.0), ("SAME001", 0.2))
    mine = [e for e in EVENTS if e[1] == "SAME001"]
    assert [e[0] for e in mine] == ["in", "out", "in", "out"]
    assert mine[0][2] == mine[1][2] and mine[2][2] == mine[3][2]  # one run at a time
    async with get_client() as client:
        for run_id in (first, second):
            run = await client.read_flow_run(run_id)
            assert "machine:SAME001" in run.tags
        limit = await client.read_global_concurrency_limit_by_name("machine-SAME001")
        assert limit.limit == 1 and limit.active_slots == 0


async def test_jobs_on_different_machines_run_together(prefect_harness):
    EVENTS.clear()
    await pair(("DIFF001", 4.0), ("DIFF002", 4.0))
    order = [e[0] for e in EVENTS]
    assert order[:2] == ["in", "in"]  # both entered before either left


@flow(name="lease-holder-until-released")
async def hold_until_released(machine: str, label: bool = True) -> str:
    async with machine_lease(machine, wait_s=60, label=label):
        EVENTS.append(("in", machine, str(flow_run.id)))
        await RELEASE[machine].wait()
        EVENTS.append(("out", machine, str(flow_run.id)))
    return str(flow_run.id)


async def _stop_asked(machine: str) -> str | None:
    return STOP.get(machine)


@flow(name="lease-stoppable")
async def hold_stoppable(machine: str) -> str:
    async with machine_lease(
        machine, wait_s=60, stop=lambda: _stop_asked(machine), stop_every_s=0.1
    ):
        EVENTS.append(("in", machine, str(flow_run.id)))
    return str(flow_run.id)


async def running_runs(machine: str, count: int) -> list[str]:
    """Ids of the running runs filed under the machine, once there are ``count``."""
    async with get_client() as client:
        for _ in range(600):
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"machine:{machine}"]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
                )
            )
            if len(runs) >= count:
                return [str(r.id) for r in runs]
            await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} running runs for {machine}")


async def entered(machine: str) -> str:
    for _ in range(600):
        inside = [e[2] for e in EVENTS if e[:2] == ("in", machine)]
        if inside:
            return inside[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"nobody took the lease of {machine}")


async def test_busy_machine_names_the_holder_not_the_runs_waiting(prefect_harness):
    EVENTS.clear()
    RELEASE["BUSY001"] = asyncio.Event()
    holder = asyncio.create_task(hold_until_released("BUSY001"))
    holder_id = await entered("BUSY001")
    waiter = asyncio.create_task(hold("BUSY001", 0.01, wait_s=60))
    # The waiter is filed under the machine while it waits (before it has the lease).
    [waiter_id] = set(await running_runs("BUSY001", 2)) - {holder_id}
    state = await hold("BUSY001", 0.1, wait_s=1.0, return_state=True)
    assert state.is_failed()
    with pytest.raises(MachineBusyError, match=r"machine busy with .+ \(waited 1 s\)") as err:
        await state.result()
    assert holder_id in str(err.value) and waiter_id not in str(err.value)
    RELEASE["BUSY001"].set()
    assert await holder == holder_id and await waiter == waiter_id
    assert [(e[0], e[2]) for e in EVENTS] == [
        ("in", holder_id), ("out", holder_id), ("in", waiter_id), ("out", waiter_id),
    ]  # fmt: skip
    async with get_client() as client:  # the run that gave up is in the history too
        busy = await client.read_flow_run(state.state_details.flow_run_id)
    assert "machine:BUSY001" in busy.tags


async def test_a_stop_request_ends_the_wait_for_the_lease(prefect_harness):
    EVENTS.clear()
    RELEASE["STOP001"] = asyncio.Event()
    holder = asyncio.create_task(hold_until_released("STOP001"))
    holder_id = await entered("STOP001")
    waiting = asyncio.create_task(hold_stoppable("STOP001", return_state=True))
    await running_runs("STOP001", 2)
    STOP["STOP001"] = "stop requested (test)"
    state = await waiting
    with pytest.raises(LeaseWaitStopped, match=r"stop requested \(test\) while waiting \d+ s"):
        await state.result()
    assert [(e[0], e[2]) for e in EVENTS] == [("in", holder_id)]  # it never got in
    RELEASE["STOP001"].set()
    await holder
    assert (await _limit(lease_name("STOP001"))).active_slots == 0


async def _limit(name: str):
    async with get_client() as client:
        return await client.read_global_concurrency_limit_by_name(name)


async def test_missing_limit_is_made_on_first_use(prefect_harness):
    # A flow that made its limits ahead (ensure_limit=False) still never runs unlimited.
    async with machine_lease("LATE001", wait_s=10, ensure_limit=False):
        limit = await _limit(lease_name("LATE001"))
        assert (limit.limit, limit.active_slots) == (1, 1)
    assert (await _limit(lease_name("LATE001"))).active_slots == 0


async def test_limits_of_many_machines_made_at_once(prefect_harness):
    machines = [f"MANY{i:03d}" for i in range(5)]
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(lease_name(machines[0]), limit=3)
    await ensure_machine_limits(machines)
    await ensure_machine_limits(machines)  # again: nothing to do, no error
    for machine in machines:
        limit = await _limit(lease_name(machine))
        assert limit.limit == 1  # a wrong limit is set right too


async def test_lease_given_back_in_the_background(prefect_harness):
    async with LeaseReleases() as releases:
        async with machine_lease("BACK001", wait_s=10, releases=releases):
            assert (await _limit(lease_name("BACK001"))).active_slots == 1
    # the run waits for its releases when it ends
    assert (await _limit(lease_name("BACK001"))).active_slots == 0
    async with machine_lease("BACK001", wait_s=5):
        pass  # free for the next job


@flow(name="lease-renewed")
async def _hold_renewed(machine: str, hold_s: float) -> str:
    async with machine_lease(machine, wait_s=10, renew_every_s=0.2):
        await asyncio.sleep(hold_s)
    return "done"


async def test_lease_held_across_renewals(prefect_harness):
    assert await _hold_renewed("RENEW01", 1.0) == "done"
    assert (await _limit(lease_name("RENEW01"))).active_slots == 0


@flow(name="lease-lost")
async def _lose_lease(machine: str) -> None:
    async with machine_lease(machine, wait_s=10, renew_every_s=0.2) as lease_id:
        async with get_client() as client:  # the server forgets the lease behind our back
            await client.release_concurrency_slots_with_lease(lease_id=lease_id)
        EVENTS.append(("lost", machine, str(lease_id)))
        await asyncio.sleep(30)
        EVENTS.append(("went on", machine, str(lease_id)))


async def test_lost_lease_stops_the_holder(prefect_harness):
    EVENTS.clear()
    state = await _lose_lease("LOST001", return_state=True)
    assert state.is_failed()
    with pytest.raises(MachineLeaseLost, match="machine LOST001: lease lost"):
        await state.result()
    assert [e[0] for e in EVENTS] == ["lost"]  # cancelled, never went on acting


async def test_a_fleet_run_not_labelling_its_lease_is_still_named_when_busy(prefect_harness):
    # Rollouts skip the holder label (two API calls per server): the busy error then
    # names the runs filed under the machine, here only the holder.
    EVENTS.clear()
    RELEASE["FLEET01"] = asyncio.Event()
    holder = asyncio.create_task(hold_until_released("FLEET01", label=False))
    holder_id = await entered("FLEET01")
    state = await hold("FLEET01", 0.1, wait_s=1.0, return_state=True)
    with pytest.raises(MachineBusyError, match=r"machine busy with .+ \(waited 1 s\)") as err:
        await state.result()
    assert holder_id in str(err.value) and "one of" not in str(err.value)
    async with get_client() as client:
        run = await client.read_flow_run(holder_id)
    assert not any(k.startswith("rackflow.lease.") for k in run.labels)  # no label written
    RELEASE["FLEET01"].set()
    assert await holder == holder_id
