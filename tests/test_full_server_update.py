"""Full server update: Dell's order, critical vs non-critical failures, parent states."""

from __future__ import annotations

import inspect

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import FlowRunSort

from clients.inventory import Inventory
from flows.firmware_update import rolling_firmware_update
from flows.full_server_update import full_server_update
from flows.maintenance_window import NOT_BACK
from lab.settings import Faults
from tests.fw_env import FAST, faults

SIMPLE_UPDATE = "POST /redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"
ORDER = ["idrac", "bios", "cpld", "raid", "nic", "backplane"]


async def _update(env, targets, **kw):
    state = await full_server_update(
        source=env.source(),
        targets=targets,
        credentials_block=env.names["redfish"],
        vcenter_block=env.names.get("vcenter"),
        inventory_block=env.names["inventory"],
        deadlines=kw.pop("deadlines", FAST),
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


async def test_current_components_are_skipped_and_no_maintenance_mode(env_factory):
    env = await env_factory(count=1)
    tag = env.tags[0]
    state, _ = await _update(env, [tag])
    assert state.is_completed()
    jobs_before = len(env.bmc(tag).jobs.all())
    watcher = env.watch()
    try:
        state, summary = await _update(env, [tag])
    finally:
        watcher.stop()
    assert state.is_completed()
    assert {r.result for r in summary.rows} == {"current"}
    assert len(env.bmc(tag).jobs.all()) == jobs_before
    assert watcher.ever_in == set()  # nothing to do: the host was never evacuated
    assert env.in_maintenance() == set()

    # A crashed run's note on a current server: finished, without entering maintenance mode.
    host = env.host_of[tag]
    _crashed_run_note(env, tag, host)
    watcher = env.watch()
    try:
        state, _ = await _update(env, [tag])
    finally:
        watcher.stop()
    assert state.is_completed()
    assert watcher.ever_in == set()
    assert "pending:maintenance" not in env.record(tag).attributes
    # ... and when it had entered it, the host leaves maintenance mode.
    env.vc.set_host(host, in_maintenance=True)
    _crashed_run_note(env, tag, host)
    state, _ = await _update(env, [tag])
    assert state.is_completed()
    assert env.in_maintenance() == set()
    assert "pending:maintenance" not in env.record(tag).attributes
    assert len(env.bmc(tag).jobs.all()) == jobs_before


def _crashed_run_note(env, tag: str, host: str) -> None:
    with Inventory(url=env.inventory_url) as inventory:
        inventory.annotate(
            tag, attributes={"pending:maintenance": {"run": "crashed", "host": host}}
        )


async def test_a_server_that_does_not_come_back_stops_and_keeps_its_host_in_maintenance(
    env_factory,
):
    env = await env_factory(count=1, cluster_size=1)
    tag = env.tags[0]
    host = env.host_of[tag]
    # iDRAC and BIOS first (they succeed), then the host dies at its next reboot (CPLD).
    state, _ = await _rollout_components(env, tag, ["idrac", "bios"])
    assert state.is_completed(), state.message
    bmc = env.bmc(tag)
    env.lab.set_faults(bmc.key, Faults(host_never_returns=True))
    updates_before = _simple_updates(env, tag)
    assert updates_before == 2  # iDRAC and BIOS

    state, summary = await _update(env, [tag], deadlines=FAST.model_copy(update={"host_back_s": 4}))

    assert state.is_failed()
    head = f"{tag}: host {host} {NOT_BACK}"
    assert head in state.message  # the run's state names it
    run, result, _ = await _latest_server_run(tag)
    assert run.state.type.value == "FAILED"
    assert run.state.message.startswith(head)
    assert result.failed == ["cpld"]
    assert result.skipped == ["idrac", "bios", "raid", "nic", "backplane"]  # current, then stopped
    rows = {r.component: r for r in result.rows}
    for kind in ("raid", "nic", "backplane"):
        assert rows[kind].message == "stopped: the server did not come back after cpld failed"
    assert head in rows["*"].message
    # nothing was started on the dead server after CPLD, and its host stays in maintenance
    assert _simple_updates(env, tag) == updates_before + 1  # CPLD's, none after it
    assert env.in_maintenance() == {host}
    assert env.record(tag).attributes["pending:maintenance"]["host"] == host


async def test_each_component_has_a_deadline(env_factory):
    default = inspect.signature(full_server_update.fn).parameters["component_deadline_s"].default
    assert default == 15 * 60
    # the iDRAC job hangs (for days of lab time): only the component deadline ends it
    hang = faults(job_hangs=["idrac"], hang_s=10**7)
    env = await env_factory(count=1, vcenter=False, faults={0: hang})
    tag = env.tags[0]
    state, _ = await _update(env, [tag], component_deadline_s=3)
    assert state.is_failed()
    run, result, children = await _latest_server_run(tag)
    assert run.state.type.value == "FAILED"  # iDRAC is critical: the server stops
    assert result.failed == ["idrac"]
    rows = {r.component: r for r in result.rows}
    assert "TimedOut" in rows["idrac"].message, rows["idrac"].message
    assert result.skipped == ["bios", "cpld", "raid", "nic", "backplane"]
    [idrac_run] = [c for c in children if c.name.endswith("-idrac")]
    assert idrac_run.state.name == "TimedOut"
    [job] = env.bmc(tag).jobs.all()
    assert job.state == "Running"  # the device never finished it: the deadline did


def _simple_updates(env, tag: str) -> int:
    """SimpleUpdate requests the server's iDRAC received (a started update each)."""
    return env.lab.request_counts()[env.bmc(tag).key].get(SIMPLE_UPDATE, 0)


async def _rollout_components(env, tag, components):
    state = await rolling_firmware_update(
        source=env.source(),
        targets=[tag],
        components=components,
        credentials_block=env.names["redfish"],
        vcenter_block=env.names.get("vcenter"),
        inventory_block=env.names["inventory"],
        deadlines=FAST,
        lease_wait_s=120,
        return_state=True,
    )
    return state, await state.result(raise_on_failure=False)


async def _latest_server_run(tag: str):
    """The newest ``update-server`` run of a machine, its result, and its component runs."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["update-server"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"machine:{tag}"])),
            sort=FlowRunSort.START_TIME_DESC,
        )
        run = runs[0]
        children = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["update-component"])),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"machine:{tag}"]),
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]),
            ),
        )
    return run, await run.state.result(raise_on_failure=False), children


async def test_several_servers_roll_with_the_cluster_limit(env_factory):
    # Four servers in two clusters of two, two at once: every server fully updated, each
    # host in maintenance mode once, never two hosts of one cluster at once.
    env = await env_factory(count=4, cluster_size=2)
    watcher = env.watch()
    try:
        state, summary = await _update(env, env.tags, max_parallel=2, max_unavailable_per_cluster=1)
    finally:
        watcher.stop()
    assert state.is_completed(), state.message
    for tag in env.tags:
        assert _device_job_order(env, tag) == ORDER
        assert env.bmc(tag).bios_version == env.target("bios")
        assert {r.component: r.result for r in summary.rows if r.server == tag} == {
            k: "updated" for k in ORDER
        }
    assert watcher.ever_in == set(env.host_of.values())
    assert set(watcher.max_per_cluster.values()) == {1}
    assert env.in_maintenance() == set()


async def test_dry_run_of_several_servers_touches_nothing(env_factory):
    env = await env_factory(count=2, cluster_size=2)
    before = {t: (env.bmc(t).bios_version, env.resets(t)) for t in env.tags}
    watcher = env.watch()
    try:
        state, summary = await _update(env, env.tags, max_parallel=2, dry_run=True)
    finally:
        watcher.stop()
    assert state.is_completed(), state.message
    for tag in env.tags:
        assert _device_job_order(env, tag) == []  # no job on the device
        assert (env.bmc(tag).bios_version, env.resets(tag)) == before[tag]
        results = {r.component: r.result for r in summary.rows if r.server == tag}
        assert results == {k: "would-update" for k in ORDER}
    assert watcher.ever_in == set()  # never evacuated


async def test_catalog_source_keeps_dells_order_one_component_at_a_time(env_factory):
    # The full update reads the catalog and updates component by component (SimpleUpdate),
    # not through the iDRAC's InstallFromRepository (which picks its own order).
    env = await env_factory(count=1)
    tag = env.tags[0]
    catalog = {"kind": "catalog", "catalog_url": env.lab.repository.base_url + "/Catalog.xml"}
    state = await full_server_update(
        source=catalog,
        targets=[tag],
        credentials_block=env.names["redfish"],
        vcenter_block=env.names.get("vcenter"),
        inventory_block=env.names["inventory"],
        deadlines=FAST,
        lease_wait_s=120,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert _device_job_order(env, tag) == ORDER
    counts = env.lab.request_counts()[env.bmc(tag).key]
    assert counts.get(SIMPLE_UPDATE) == len(ORDER)
    assert not [k for k in counts if k.endswith("InstallFromRepository")]
    assert env.bmc(tag).bios_version == env.target("bios")
