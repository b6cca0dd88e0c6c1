"""Rolling firmware update end to end: lab iDRACs + lab repository + real vcsim."""

from __future__ import annotations

import pytest

from flows.firmware_update import rolling_firmware_update
from tests.fw_env import FAST, faults


async def _rollout(env, targets, **kw):
    params = {
        "source": env.source(),
        "targets": targets,
        "components": kw.pop("components", ["bios"]),
        "credentials_block": env.names["redfish"],
        "vcenter_block": env.names.get("vcenter"),
        "inventory_block": env.names["inventory"],
        "deadlines": kw.pop("deadlines", FAST),
        "lease_wait_s": 120,
        **kw,
    }
    state = await rolling_firmware_update(**params, return_state=True)
    summary = await state.result(raise_on_failure=False)
    return state, summary


def _rows(summary):
    return {(r.server, r.component): r for r in summary.rows}


async def test_rolling_update_of_several_servers(env_factory):
    env = await env_factory(count=4, cluster_size=2)
    target = env.target("bios")
    before = {t: env.bmc(t).bios_version for t in env.tags}
    assert all(v != target for v in before.values())
    watcher = env.watch()
    try:
        state, summary = await _rollout(
            env, env.tags, max_parallel=4, max_unavailable_per_cluster=1
        )
    finally:
        watcher.stop()

    assert state.is_completed(), state.message
    rows = _rows(summary)
    for tag in env.tags:
        assert env.bmc(tag).bios_version == target  # changed on the device itself
        row = rows[(tag, "bios")]
        assert (row.result, row.before, row.after) == ("updated", before[tag], target)
        rec = env.record(tag)
        assert rec.bios_version == target  # inventory refreshed
        assert not [k for k in (rec.attributes or {}) if k.startswith("pending:")]
        assert env.resets(tag) >= 1  # OnReset: rackflow rebooted it
        assert "reboot: GracefulRestart" in row.message  # seen going down: not forced
    # every linked host went into maintenance mode and came out again
    assert watcher.ever_in == set(env.host_of.values())
    assert env.in_maintenance() == set()
    # never more than one host of a cluster in maintenance at once
    assert set(watcher.max_per_cluster.values()) == {1}


async def test_already_current_means_no_reboot_and_no_maintenance(env_factory):
    env = await env_factory(count=2)
    tag = env.tags[0]
    state, _ = await _rollout(env, [tag])
    assert state.is_completed()
    resets = env.resets(tag)
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, [tag])
    finally:
        watcher.stop()
    assert state.is_completed()
    assert _rows(summary)[(tag, "bios")].result == "current"
    assert env.resets(tag) == resets
    assert watcher.ever_in == set()


async def test_dry_run_changes_nothing(env_factory):
    env = await env_factory(count=2)
    before = {t: env.bmc(t).bios_version for t in env.tags}
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, env.tags, dry_run=True)
    finally:
        watcher.stop()
    assert state.is_completed()
    assert {r.result for r in summary.rows} == {"would-update"}
    assert {t: env.bmc(t).bios_version for t in env.tags} == before
    assert all(not env.bmc(t).jobs.all() for t in env.tags)
    assert all(env.resets(t) == 0 for t in env.tags)
    assert watcher.ever_in == set()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        # the job, its final state and the iDRAC's reason, not just "Failed"
        (faults(job_fails=["bios"]), "ended Failed: RED007: Unable to complete the firmware"),
        (faults(job_hangs=["bios"], hang_s=5), "JCP052"),
        (faults(version_unchanged=True), "still at"),
    ],
)
async def test_a_failing_server_fails_alone_and_leaves_maintenance(env_factory, fault, message):
    env = await env_factory(count=3, faults={1: fault}, cluster_size=3)
    bad, good = env.tags[1], [env.tags[0], env.tags[2]]
    state, summary = await _rollout(env, env.tags, max_failures=2)
    assert state.is_failed()
    rows = _rows(summary)
    assert rows[(bad, "bios")].result == "failed"
    assert message in rows[(bad, "bios")].message, rows[(bad, "bios")].message
    [job] = env.bmc(bad).jobs.all()
    assert f"job {job.id} ended" in rows[(bad, "bios")].message  # names the job itself
    assert "pending:firmware-job" not in env.record(bad).attributes  # no note left behind
    for tag in good:
        assert rows[(tag, "bios")].result == "updated"
        assert env.bmc(tag).bios_version == env.target("bios")
    assert env.in_maintenance() == set()  # the failed server's host left maintenance too
    assert not [k for k in env.record(bad).attributes if k == "pending:maintenance"]


async def test_busy_idrac_503s_are_waited_out(env_factory):
    env = await env_factory(count=1, faults={0: faults(busy_503_s=3)})
    state, summary = await _rollout(env, env.tags)
    assert state.is_completed(), summary.rows
    assert env.bmc(env.tags[0]).bios_version == env.target("bios")
    assert env.bmc(env.tags[0]).unavailable_answers > 0  # it really was busy, and waited out


async def test_rollout_halts_after_max_failures(env_factory):
    env = await env_factory(count=3, faults={0: faults(job_fails=["bios"])}, cluster_size=3)
    state, summary = await _rollout(env, env.tags, max_parallel=1, max_failures=1)
    assert state.is_failed()
    rows = _rows(summary)
    assert rows[(env.tags[0], "bios")].result == "failed"
    for tag in env.tags[1:]:
        assert rows[(tag, "*")].result == "skipped"
        assert "rollout halted" in rows[(tag, "*")].message
        assert env.bmc(tag).bios_version != env.target("bios")  # never touched
    assert env.in_maintenance() == set()


async def test_immediate_apply_time_lets_the_idrac_reboot(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    state, summary = await _rollout(env, [tag], apply_time="Immediate")
    assert state.is_completed(), summary.rows
    assert env.bmc(tag).bios_version == env.target("bios")
    assert env.resets(tag) == 0  # the iDRAC rebooted the host itself


async def test_idrac_update_survives_the_idrac_resetting_itself(env_factory):
    env = await env_factory(count=1, vcenter=False, durations={"idrac_reset_s": 40})
    tag = env.tags[0]
    state, summary = await _rollout(env, [tag], components=["idrac"])
    assert state.is_completed(), summary.rows
    assert env.bmc(tag).idrac_version == env.target("idrac")


async def test_bad_input_refused_before_touching_anything(env_factory):
    env = await env_factory(count=1, vcenter=False)
    state, _ = await _rollout(env, ["NOSUCH1"])
    assert state.is_failed()
    assert "NOSUCH1: not in the inventory" in state.message
    state, _ = await _rollout(env, env.tags, max_parallel=0)
    assert "max_parallel: must be at least 1" in state.message
    assert env.bmc(env.tags[0]).jobs.all() == []


async def test_catalog_dry_run_reports_compliance_then_sup029_after_update(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    catalog = {"kind": "catalog", "catalog_url": env.lab.repository.base_url + "/Catalog.xml"}
    before = env.bmc(tag).bios_version
    state, summary = await _rollout(
        env, [tag], source=catalog, components=["bios", "idrac"], dry_run=True
    )
    assert state.is_completed(), summary.rows
    rows = _rows(summary)
    assert rows[(tag, "bios")].result == "would-update"
    assert (rows[(tag, "bios")].before, rows[(tag, "bios")].target) == (before, env.target("bios"))
    assert rows[(tag, "idrac")].target == env.target("idrac")
    assert env.bmc(tag).bios_version == before  # a dry run changes nothing

    # bring everything the catalog offers up to date, then ask again: SUP029 = compliant
    for component in ("idrac", "bios", "cpld", "raid", "nic", "backplane"):
        state, _ = await _rollout(env, [tag], components=[component])
        assert state.is_completed(), component
    state, summary = await _rollout(
        env, [tag], source=catalog, components=["bios", "idrac"], dry_run=True
    )
    assert state.is_completed()
    assert {r.result for r in summary.rows} == {"current"}


async def test_failure_to_enter_maintenance_stops_only_that_server(env_factory):
    env = await env_factory(count=2, cluster_size=1)
    bad, good = env.tags
    env.vc.set_host(env.host_of[bad], enter_mm_fault="InvalidState")
    state, summary = await _rollout(env, env.tags, max_failures=2)
    assert state.is_failed()
    rows = _rows(summary)
    assert rows[(bad, "*")].result == "failed"
    assert "maintenance mode" in rows[(bad, "*")].message
    assert env.bmc(bad).jobs.all() == []  # no update was started on it
    assert rows[(good, "bios")].result == "updated"
    assert env.in_maintenance() == set()
    assert "pending:maintenance" not in env.record(bad).attributes


async def test_two_rollouts_of_one_server_never_interleave(env_factory):
    from prefect import flow

    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]

    @flow(name="two-rollouts")
    async def both():
        import asyncio

        return await asyncio.gather(_rollout(env, [tag]), _rollout(env, [tag]))

    (s1, r1), (s2, r2) = await both()
    assert s1.is_completed() and s2.is_completed()
    results = sorted(r.result for r in r1.rows + r2.rows)
    assert results == ["current", "updated"]  # the second waited, then found it current
    assert len(env.bmc(tag).jobs.all()) == 1  # one update job, never two


async def test_host_ignoring_graceful_restart_is_forced(env_factory):
    env = await env_factory(count=1, vcenter=False, faults={0: faults(ignores_graceful=True)})
    tag = env.tags[0]
    state, summary = await _rollout(env, [tag])
    assert state.is_completed(), summary.rows
    assert "reboot: ForceRestart" in _rows(summary)[(tag, "bios")].message
    assert env.bmc(tag).bios_version == env.target("bios")
