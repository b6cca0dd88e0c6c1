"""Full server update: Dell's order, critical vs non-critical failures, parent states."""

from __future__ import annotations

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)

from flows.full_server_update import full_server_update
from tests.fw_env import FAST, faults

ORDER = ["idrac", "bios", "cpld", "raid", "nic", "backplane"]


async def _update(env, targets, **kw):
    state = await full_server_update(
        source=env.source(),
        targets=targets,
        credentials_block=env.names["redfish"],
        vcenter_block=env.names.get("vcenter"),
        inventory_block=env.names["inventory"],
        deadlines=FAST,
        lease_wait_s=120,
        return_state=True,
        **kw,
    )
    return state, await state.result(raise_on_failure=False)


async def _server_run(tag: str):
    """The per-server parent run (flow ``update-server``) and its result."""
    async with get_client() as client:
        [run] = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["update-server"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"machine:{tag}"])),
        )
        children = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["update-component"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"machine:{tag}"])),
        )
    return run, await run.state.result(raise_on_failure=False), children


def _device_job_order(env, tag):
    jobs = sorted(env.bmc(tag).jobs.all(), key=lambda j: j.created)
    return [j.kind for j in jobs if j.job_type == "FirmwareUpdate"]


async def test_all_components_in_dells_order(env_factory):
    env = await env_factory(count=1)
    tag = env.tags[0]
    watcher = env.watch()
    try:
        state, summary = await _update(env, [tag])
    finally:
        watcher.stop()
    assert state.is_completed(), state.message
    assert _device_job_order(env, tag) == ORDER
    bmc = env.bmc(tag)
    assert bmc.bios_version == env.target("bios")
    assert bmc.idrac_version == env.target("idrac")
    run, result, children = await _server_run(tag)
    assert run.state.name == "Completed"
    assert result.completed == ORDER and result.failed == [] and result.attempted == ORDER
    assert len(children) == len(ORDER)  # one sub-flow run per component
    # maintenance mode once, around all components
    assert watcher.ever_in == {env.host_of[tag]}
    assert env.in_maintenance() == set()


async def test_bios_failure_stops_the_server(env_factory):
    env = await env_factory(count=1, faults={0: faults(job_fails=["bios"])})
    tag = env.tags[0]
    state, summary = await _update(env, [tag])
    assert state.is_failed()
    assert _device_job_order(env, tag) == ["idrac", "bios"]  # nothing after BIOS was started
    run, result, _ = await _server_run(tag)
    assert run.state.type.value == "FAILED"
    assert result.completed == ["idrac"]
    assert result.failed == ["bios"]
    assert result.skipped == ["cpld", "raid", "nic", "backplane"]
    assert env.in_maintenance() == set()


async def test_raid_failure_is_recorded_and_the_rest_continue(env_factory):
    env = await env_factory(count=1, faults={0: faults(job_fails=["raid"])})
    tag = env.tags[0]
    state, summary = await _update(env, [tag])
    assert state.is_failed()  # the rollout as a whole did not fully succeed
    assert _device_job_order(env, tag) == ORDER
    run, result, _ = await _server_run(tag)
    assert (run.state.type.value, run.state.name) == ("COMPLETED", "CompletedWithErrors")
    assert result.failed == ["raid"]
    assert result.completed == ["idrac", "bios", "cpld", "nic", "backplane"]
    assert env.in_maintenance() == set()


async def test_current_components_are_skipped_and_reported(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    state, _ = await _update(env, [tag])
    assert state.is_completed()
    jobs_before = len(env.bmc(tag).jobs.all())
    state, summary = await _update(env, [tag])
    assert state.is_completed()
    assert {r.result for r in summary.rows} == {"current"}
    assert len(env.bmc(tag).jobs.all()) == jobs_before
