"""A Dell catalog applied by the iDRAC itself (InstallFromRepository), end to end:
lab iDRACs reading the lab repository's catalog, a real vcsim, the rolling flow."""

from __future__ import annotations

import pytest
from prefect import flow

from clients.firmware.sources import DellCatalog
from clients.inventory import Inventory
from lab.dup import component_kind
from tasks.firmware_repo import start_catalog_update
from tests.fw_env import FAST, faults
from tests.test_firmware_flow import _rollout, _rows

KINDS = ["idrac", "bios", "cpld", "raid", "nic", "backplane"]


def _catalog(env) -> dict[str, str]:
    return {"kind": "catalog", "catalog_url": env.lab.repository.base_url + "/Catalog.xml"}


def _calls(env, tag: str, action: str) -> int:
    counts = env.lab.request_counts()[env.bmc(tag).key]
    return sum(n for key, n in counts.items() if key.startswith("POST ") and key.endswith(action))


def _versions(env, tag: str) -> dict[str, str]:
    return {
        component_kind(c.fqdd): c.version
        for c in env.bmc(tag).components
        if component_kind(c.fqdd) in KINDS
    }


def _make_current(env, tag: str, kinds: list[str]) -> None:
    """Install the catalog's version of these components directly on the lab device."""
    bmc = env.bmc(tag)

    async def install() -> None:
        for comp in list(bmc.components):
            if component_kind(comp.fqdd) in kinds:
                bmc.install(comp.fqdd, env.target(component_kind(comp.fqdd)))

    env.lab.call(install)


async def test_catalog_applied_with_install_from_repository_on_several_servers(env_factory):
    env = await env_factory(count=3, cluster_size=2)
    before = {t: _versions(env, t) for t in env.tags}
    watcher = env.watch()
    try:
        state, summary = await _rollout(
            env,
            env.tags,
            source=_catalog(env),
            components=KINDS,
            max_parallel=3,
            max_unavailable_per_cluster=1,
        )
    finally:
        watcher.stop()

    assert state.is_completed(), state.message
    rows = _rows(summary)
    for tag in env.tags:
        # every component changed on the device itself, through the iDRAC's repository update
        assert _versions(env, tag) == {k: env.target(k) for k in KINDS}
        assert _calls(env, tag, ".InstallFromRepository") == 2  # the dry run, then the apply
        assert _calls(env, tag, ".SimpleUpdate") == 0
        job_types = sorted(j.job_type for j in env.bmc(tag).jobs.all())
        assert job_types == ["FirmwareUpdate"] * 6 + ["RepositoryUpdate"] * 2
        for kind in KINDS:
            row = rows[(tag, kind)]
            assert (row.result, row.before, row.after) == (
                "updated",
                before[tag][kind],
                env.target(kind),
            ), row
            assert "reboot: GracefulRestart" in row.message and "Completed" in row.message
        assert env.resets(tag) == 1  # OnReset: rackflow rebooted once for all components
        rec = env.record(tag)
        assert rec.bios_version == env.target("bios")  # inventory refreshed
        assert not [k for k in (rec.attributes or {}) if k.startswith("pending:")]
    assert watcher.ever_in == set(env.host_of.values())
    assert env.in_maintenance() == set()
    assert set(watcher.max_per_cluster.values()) == {1}


async def test_sup029_means_current_no_reboot_no_maintenance(env_factory):
    env = await env_factory(count=1, cluster_size=1)
    tag = env.tags[0]
    _make_current(env, tag, KINDS)
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, [tag], source=_catalog(env), components=KINDS)
    finally:
        watcher.stop()
    assert state.is_completed(), state.message
    assert {r.result for r in summary.rows} == {"current"}
    assert env.resets(tag) == 0
    assert watcher.ever_in == set()
    assert _calls(env, tag, ".InstallFromRepository") == 1  # only the dry run

    # InstallFromRepository with ApplyUpdate True on a compliant server: SUP029, no job
    @flow(name="catalog-apply-on-current-server")
    async def apply_once():
        return await start_catalog_update(
            env.bmc(tag).address,
            env.bmc(tag).port,
            env.names["redfish"],
            DellCatalog(**_catalog(env)),
            reboot_needed=False,
            timeout_s=30,
            interval_s=0.2,
        )

    started = await apply_once()
    assert (started.up_to_date, started.jobs) == (True, [])
    assert [j.job_type for j in env.bmc(tag).jobs.all() if not j.final] == []
    assert env.resets(tag) == 0


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (faults(job_fails=["bios"]), "ended Failed: RED007"),
        (faults(version_unchanged=True), "bios still at"),
    ],
)
async def test_a_failing_component_job_fails_its_server_only(env_factory, fault, message):
    env = await env_factory(count=3, faults={1: fault}, cluster_size=1)
    kinds = ["bios", "nic", "raid"]
    for tag in env.tags:  # keep the run short: the catalog offers only these three
        _make_current(env, tag, [k for k in KINDS if k not in kinds])
    bad, good = env.tags[1], [env.tags[0], env.tags[2]]
    state, summary = await _rollout(
        env, env.tags, source=_catalog(env), components=kinds, max_failures=2, max_parallel=3
    )
    assert state.is_failed()
    rows = _rows(summary)
    assert rows[(bad, "bios")].result == "failed"
    assert message in rows[(bad, "bios")].message, rows[(bad, "bios")].message
    if "job_fails" in fault:  # the iDRAC ran the other jobs of that server
        assert rows[(bad, "nic")].result == "updated"
        assert env.bmc(bad).bios_version != env.target("bios")
    for tag in good:
        assert {rows[(tag, k)].result for k in kinds} == {"updated"}
        assert env.bmc(tag).bios_version == env.target("bios")
    assert env.in_maintenance() == set()  # the failed server's host left maintenance too
    assert "pending:maintenance" not in env.record(bad).attributes


async def test_restricted_components_refused_then_immediate_apply(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    before = _versions(env, tag)
    state, summary = await _rollout(env, [tag], source=_catalog(env), components=["bios"])
    assert state.is_failed()
    refused = _rows(summary)[(tag, "*")]
    assert refused.result == "skipped"
    assert "InstallFromRepository applies every update" in refused.message
    assert "idrac (iDRAC.Embedded.1-1)" in refused.message
    assert _versions(env, tag) == before  # nothing touched: only the dry run's job
    assert [j.job_type for j in env.bmc(tag).jobs.all()] == ["RepositoryUpdate"]

    # only the BIOS is behind the catalog: applied, and the iDRAC reboots the host itself
    _make_current(env, tag, [k for k in KINDS if k != "bios"])
    state, summary = await _rollout(
        env, [tag], source=_catalog(env), components=["bios", "nic"], apply_time="Immediate"
    )
    assert state.is_completed(), summary.rows
    rows = _rows(summary)
    assert rows[(tag, "bios")].result == "updated"
    assert rows[(tag, "nic")].result == "current"
    assert env.bmc(tag).bios_version == env.target("bios")
    assert env.resets(tag) == 0  # RebootNeeded: no ComputerSystem.Reset from rackflow
    assert _calls(env, tag, ".SimpleUpdate") == 0


async def test_catalog_the_idrac_cannot_read_fails_the_server_with_the_reason(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    missing = {"kind": "catalog", "catalog_url": env.lab.repository.base_url + "/Nope.xml"}
    state, summary = await _rollout(env, [tag], source=missing, components=KINDS, deadlines=FAST)
    assert state.is_failed()
    row = _rows(summary)[(tag, "*")]
    assert row.result == "failed"
    assert "catalog dry run failed" in row.message and "RED133" in row.message


async def test_rerun_follows_the_jobs_an_interrupted_run_started(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    _make_current(env, tag, [k for k in KINDS if k not in ("bios", "nic")])

    @flow(name="interrupted-catalog-apply")
    async def interrupted():
        # a run killed right after InstallFromRepository: its jobs stay queued
        return await start_catalog_update(
            env.bmc(tag).address,
            env.bmc(tag).port,
            env.names["redfish"],
            DellCatalog(**_catalog(env)),
            reboot_needed=False,
            timeout_s=30,
            interval_s=0.2,
        )

    started = await interrupted()
    assert len(started.jobs) == 2 and not started.up_to_date
    note = {"run": "killed", "job": started.repository_job, "jobs": started.jobs}
    with Inventory(url=env.inventory_url) as inv:
        inv.annotate(
            tag, attributes={"pending:firmware-job": {**note, "components": ["bios", "nic"]}}
        )

    state, summary = await _rollout(env, [tag], source=_catalog(env), components=["bios", "nic"])
    assert state.is_completed(), summary.rows
    rows = _rows(summary)
    assert {rows[(tag, k)].result for k in ("bios", "nic")} == {"updated"}
    assert _versions(env, tag) == {k: env.target(k) for k in KINDS}
    # the re-run's dry run only: the queued jobs were followed, not started again
    assert _calls(env, tag, ".InstallFromRepository") == 2
    firmware_jobs = [j for j in env.bmc(tag).jobs.all() if j.job_type == "FirmwareUpdate"]
    assert sorted(j.id for j in firmware_jobs) == sorted(started.jobs)
    assert not [k for k in env.record(tag).attributes if k.startswith("pending:")]


async def test_a_package_missing_from_the_mirror_fails_that_component_only(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    _make_current(env, tag, [k for k in KINDS if k not in ("bios", "nic")])
    bios = env.lab.repository.package_for(env.bmc(tag).spec.model, "bios")
    env.lab.repository.remove(bios.file, keep_listed=True)  # listed in the catalog, not there
    state, summary = await _rollout(env, [tag], source=_catalog(env), components=["bios", "nic"])
    assert state.is_failed()
    rows = _rows(summary)
    assert rows[(tag, "bios")].result == "failed"
    assert "RED132" in rows[(tag, "bios")].message
    assert rows[(tag, "nic")].result == "updated"  # rebooted for the job that was staged
    assert env.bmc(tag).bios_version != env.target("bios")
    assert env.resets(tag) == 1
