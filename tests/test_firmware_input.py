"""Bad input gets a clear error before any hardware is touched (rolling firmware update).

Pre-checks that skip a server, packages that do not apply to the model the BMC
reports, components and targets refused up front, the inventory query, the rows
every planned component gets, and the artifacts a run leaves for the UI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from blocks.inventory import InventoryStore
from clients.errors import PreconditionError
from clients.inventory import Inventory, ServerRecord, ServerStatus
from clients.inventory.query import TargetQuery
from flows.firmware_update import rolling_firmware_update
from tasks.firmware import progress_key
from tasks.inventory import load_target_servers
from tests.fw_env import FAST, faults
from tests.test_inventory import T0, obs

# -- helpers ------------------------------------------------------------------------


async def _rollout(env: Any, targets: list[str], **kw: Any) -> tuple[Any, Any]:
    params = {
        "source": kw.pop("source", None) or env.source(),
        "targets": targets,
        "components": kw.pop("components", ["bios"]),
        "credentials_block": env.names["redfish"],
        "vcenter_block": env.names.get("vcenter"),
        "inventory_block": env.names["inventory"],
        "deadlines": FAST,
        "lease_wait_s": 120,
        **kw,
    }
    state = await rolling_firmware_update(**params, return_state=True)
    summary = await state.result(raise_on_failure=False)
    return state, summary


def _rows(summary: Any) -> dict[tuple[str, str], Any]:
    return {(r.server, r.component): r for r in summary.rows}


def _untouched(env: Any, tag: str, bios: str, jobs: int = 0) -> None:
    """Nothing happened to a server: no job, no reboot, firmware and inventory notes as before."""
    assert len(env.bmc(tag).jobs.all()) == jobs
    assert env.resets(tag) == 0
    assert env.bmc(tag).bios_version == bios
    assert not [k for k in env.record(tag).attributes if k.startswith("pending:")]


def _bios_package(env: Any) -> Any:
    return env.lab.repository.package_for(env.bmc(env.tags[0]).spec.model, "bios")


async def _run_tags(state: Any) -> list[str]:
    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
    return [t for t in run.tags if t.startswith("machine:")]


# -- pre-checks -----------------------------------------------------------------------


async def test_failed_pre_checks_skip_the_server_with_the_reason_and_touch_nothing(env_factory):
    env = await env_factory(count=5, cluster_size=5)
    pending, lc, critical, other_model, healthy = env.tags
    bios = {t: env.bmc(t).bios_version for t in env.tags}

    async def sabotage() -> str:
        bmc = env.bmc(pending)
        job = bmc.jobs.create(name="Configure: BIOS.Setup.1-1", job_type="BIOSConfiguration", now=0)
        env.bmc(lc).server_status = "InPOST"  # LC answers NotReady while the host POSTs
        env.bmc(critical).health = "Critical"
        # The BMC reports another model than the inventory recorded (a board swap):
        # the repository has no R740 packages.
        swapped = env.bmc(other_model)
        swapped.spec = swapped.spec.model_copy(update={"model": "PowerEdge R740"})
        return job.id

    job_id = env.lab.call(sabotage)
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, env.tags, max_parallel=2, max_failures=1)
    finally:
        watcher.stop()

    assert state.is_failed()  # skipped servers are not "updated or current"
    assert set(state.message.split("problems on ", 1)[1].split(", ")) == {
        pending,
        lc,
        critical,
        other_model,
    }
    rows = _rows(summary)
    assert set(rows) == {(t, "*") for t in (pending, lc, critical)} | {
        (other_model, "bios"),
        (healthy, "bios"),
    }
    assert all(r.result == "skipped" for (t, _), r in rows.items() if t != healthy)
    assert "pending job" in rows[(pending, "*")].message
    assert f"{job_id} (Configure: BIOS.Setup.1-1" in rows[(pending, "*")].message
    assert "Lifecycle Controller not ready" in rows[(lc, "*")].message
    assert "system health is Critical" in rows[(critical, "*")].message
    assert rows[(other_model, "bios")].message.startswith("package does not apply: ")
    assert "no bios package for model PowerEdge R740" in rows[(other_model, "bios")].message
    for tag in (lc, critical, other_model):
        _untouched(env, tag, bios[tag])
    _untouched(env, pending, bios[pending], jobs=1)  # only the job that was already there
    # the skips did not halt the rollout (max_failures=1): the healthy server went on
    assert rows[(healthy, "bios")].result == "updated"
    assert env.bmc(healthy).bios_version == env.target("bios")
    assert watcher.ever_in == {env.host_of[healthy]}  # no skipped server's host in maintenance
    assert env.in_maintenance() == set()


# -- packages named by the operator ---------------------------------------------------


async def test_direct_url_end_to_end_and_refused_for_another_model(env_factory):
    env = await env_factory(count=2, cluster_size=2)
    package = _bios_package(env)
    url = env.lab.repository.url(package.file)
    before = {t: env.bmc(t).bios_version for t in env.tags}
    direct = {"kind": "url", "url": url, "component": "bios"}

    # Told it is an R740 package: refused on these R640s before maintenance mode.
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, env.tags, source={**direct, "models": ["R740"]})
    finally:
        watcher.stop()
    assert state.is_failed()
    for tag in env.tags:
        message = _rows(summary)[(tag, "bios")].message
        assert message == (
            f"package does not apply: bios firmware: source.url ({package.file}) "
            "is for R740, not for model PowerEdge R640"
        )
        _untouched(env, tag, before[tag])
    assert watcher.ever_in == set()

    # The right models: updated on both, each host in and out of maintenance mode.
    watcher = env.watch()
    try:
        state, summary = await _rollout(
            env, env.tags, source={**direct, "models": ["PowerEdge R640"]}, max_parallel=2
        )
    finally:
        watcher.stop()
    assert state.is_completed(), summary.rows
    for tag in env.tags:
        row = _rows(summary)[(tag, "bios")]
        assert (row.result, row.before, row.after) == ("updated", before[tag], package.version)
        assert env.bmc(tag).bios_version == package.version
        assert [j.kind for j in env.bmc(tag).jobs.all()] == ["bios"]
    assert watcher.ever_in == {env.host_of[t] for t in env.tags}
    assert env.in_maintenance() == set()

    # Its version is known (from the Dell file name): a re-run is current, no reboot.
    resets = {t: env.resets(t) for t in env.tags}
    state, summary = await _rollout(env, env.tags, source={**direct, "models": ["R640"]})
    assert state.is_completed()
    assert {r.result for r in summary.rows} == {"current"}
    assert {t: env.resets(t) for t in env.tags} == resets


async def test_package_without_a_known_version_is_refused_naming_the_parameter(env_factory):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    bios = env.bmc(tag).bios_version
    url = env.lab.repository.url("bios-latest.exe")  # no Dell version in the name
    state, _ = await _rollout(
        env, [tag], source={"kind": "url", "url": url, "component": "bios", "models": ["R640"]}
    )
    assert state.is_failed()
    assert "version: the file name 'bios-latest.exe' carries no Dell version" in state.message
    state, _ = await _rollout(
        env,
        [tag],
        source={
            "kind": "repository",
            "base_url": env.lab.repository.base_url + "/",
            "index": None,
            "packages": {"bios": _bios_package(env).file},
        },
    )
    assert state.is_failed()
    assert "packages.bios.models: the repository has no index" in state.message
    _untouched(env, tag, bios)


# -- parameters refused before any lease or hardware ----------------------------------


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"components": ["bios", "idrac", "bios"]}, "components: given more than once: bios"),
        ({"components": ["bios", "disk", "psu"]}, "components: not updatable: disk, psu"),
        ({"components": []}, "components: no component given"),
        ({"max_unavailable_per_cluster": 0}, "max_unavailable_per_cluster: must be at least 1"),
    ],
)
async def test_bad_parameters_are_refused_before_any_lease(env_factory, kw, words):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    state, _ = await _rollout(env, [tag], **kw)
    assert state.is_failed()
    assert words in state.message
    assert await _run_tags(state) == []  # no machine was filed under, no lease made
    _untouched(env, tag, env.bmc(tag).bios_version)


async def test_cluster_capacity_refusal_enters_no_host(env_factory):
    env = await env_factory(count=2, cluster_size=2)  # one cluster of two hosts
    tag, other = env.tags
    bios = env.bmc(tag).bios_version
    # Someone else has the cluster's only allowed host out already.
    env.vc.set_host(env.host_of[other], in_maintenance=True)
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, [tag], max_unavailable_per_cluster=1)
    finally:
        watcher.stop()
    assert state.is_failed()
    rows = _rows(summary)
    refusal = rows[(tag, "*")]
    assert refusal.result == "failed"
    assert "maintenance mode: " in refusal.message
    assert "already has 1 unavailable host(s)" in refusal.message
    assert "max_unavailable_per_cluster=1" in refusal.message
    # the planned component is reported, not dropped: skipped, with why
    assert rows[(tag, "bios")].result == "skipped"
    assert rows[(tag, "bios")].message == "not attempted: maintenance mode failed"
    assert (rows[(tag, "bios")].before, rows[(tag, "bios")].target) == (bios, env.target("bios"))
    assert env.host_of[tag] not in watcher.ever_in
    assert env.in_maintenance() == {env.host_of[other]}  # theirs left alone
    _untouched(env, tag, bios)


# -- every planned component gets a row ------------------------------------------------


async def test_after_a_failure_the_other_components_are_reported_not_attempted(env_factory):
    env = await env_factory(
        count=2, cluster_size=1, faults={t: faults(job_fails=["bios"]) for t in (0, 1)}
    )
    stuck, plain = env.tags
    idrac = {t: env.bmc(t).idrac_version for t in env.tags}
    # Leaving maintenance mode fails too on one of them.
    env.vc.set_host(env.host_of[stuck], exit_mm_fault="InvalidState")
    state, summary = await _rollout(
        env, env.tags, components=["bios", "idrac"], max_failures=2, max_parallel=2
    )
    assert state.is_failed()
    rows = _rows(summary)
    for tag in env.tags:
        assert rows[(tag, "bios")].result == "failed"
        assert "Failed" in rows[(tag, "bios")].message
        skipped = rows[(tag, "idrac")]
        assert (skipped.result, skipped.message) == ("skipped", "not attempted: bios failed")
        assert (skipped.before, skipped.target) == (idrac[tag], env.target("idrac"))
        assert env.bmc(tag).idrac_version == idrac[tag]
        assert [j.kind for j in env.bmc(tag).jobs.all()] == ["bios"]
    # the failure to leave maintenance mode is one more row, beside the component rows
    assert rows[(stuck, "*")].result == "failed"
    assert rows[(stuck, "*")].message.startswith("maintenance mode: ")
    assert (plain, "*") not in rows
    assert [r.component for r in summary.rows if r.server == stuck] == ["bios", "idrac", "*"]
    assert env.in_maintenance() == {env.host_of[stuck]}


# -- the inventory query ---------------------------------------------------------------


async def test_query_selects_a_subset_and_only_those_are_touched(env_factory):
    env = await env_factory(count=4, cluster_size=2)
    cluster = env.cluster_of[env.host_of[env.tags[0]]]
    chosen = sorted(t for t in env.tags if env.cluster_of[env.host_of[t]] == cluster)
    others = sorted(set(env.tags) - set(chosen))
    assert len(chosen) == 2 and len(others) == 2
    bios = {t: env.bmc(t).bios_version for t in env.tags}

    state, _ = await _rollout(env, [], query={"clusters": ["no-such-cluster"]})
    assert state.is_failed()
    assert "no server matched the query (clusters=['no-such-cluster'], status=['online'])" in (
        state.message
    )
    assert "among 4 in the inventory" in state.message

    query = {
        "models": ["R640"],
        "clusters": [cluster],
        "names": [t[:5].lower() + "*" for t in env.tags],
    }
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, [], query=query, max_parallel=2)
    finally:
        watcher.stop()
    assert state.is_completed(), summary.rows
    assert sorted({r.server for r in summary.rows}) == chosen
    for tag in chosen:
        assert env.bmc(tag).bios_version == env.target("bios")
    for tag in others:
        _untouched(env, tag, bios[tag])
    assert watcher.ever_in == {env.host_of[t] for t in chosen}
    assert set(watcher.max_per_cluster.values()) == {1}
    assert sorted(t.removeprefix("machine:") for t in await _run_tags(state)) == chosen

    await _check_artifacts(env, state, chosen)


async def _check_artifacts(env: Any, state: Any, tags: list[str]) -> None:
    """The run's table and progress artifacts, read back through the Prefect API."""
    run_id = state.state_details.flow_run_id
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    table = by_key["rolling-firmware-update"]
    assert table.type == "table"
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [list(r) for r in data] == [
        ["server", "component", "before", "after", "target", "result", "duration", "message"]
    ] * len(tags)
    assert sorted(r["server"] for r in data) == tags
    for r in data:
        assert (r["component"], r["result"], r["after"]) == ("bios", "updated", env.target("bios"))
        assert r["before"] != r["after"] and r["duration"].endswith(" s")
        assert float(r["duration"].removesuffix(" s")) > 0
    assert "updated 2" in by_key["rolling-firmware-update-summary"].data
    for tag in tags:
        progress = by_key[progress_key("firmware", tag, "bios")]
        assert progress.type == "progress"
        assert progress.data == 100.0
        assert progress.description.endswith("Completed")


def _record(tag: str, **fields: Any) -> ServerRecord:
    base: dict[str, Any] = {
        "id": 1,
        "identity": tag,
        "service_tag": tag,
        "status": ServerStatus.ONLINE,
        "first_seen": T0,
        "last_seen": T0,
        "model": "PowerEdge R640",
    }
    return ServerRecord(**{**base, **fields})


def test_target_query_criteria() -> None:
    a = _record(
        "AAA0001",
        fqdn="esx1.rack12.example",
        attributes={"rack": "12", "vcenter": {"cluster": "prod-a"}},
    )
    b = _record("BBB0002", model="PowerEdge R650", host_name="db7", attributes={"rack": "13"})
    c = _record("CCC0003", status=ServerStatus.OFFLINE)

    def picked(**query: Any) -> list[str]:
        q = TargetQuery(**query)
        return [r.identity for r in (a, b, c) if q.matches(r)]

    assert picked() == ["AAA0001", "BBB0002"]  # online only, by default
    assert picked(status=["online", "offline"]) == ["AAA0001", "BBB0002", "CCC0003"]
    assert picked(models=["R650"]) == ["BBB0002"]
    assert picked(models=["poweredge r640"], status=["offline"]) == ["CCC0003"]
    assert picked(clusters=["prod-a"]) == ["AAA0001"]
    assert picked(names=["*.RACK12.example"]) == ["AAA0001"]
    assert picked(names=["db?", "aaa0001"]) == ["AAA0001", "BBB0002"]
    assert picked(exclude=["bbb*"]) == ["AAA0001"]
    assert picked(attributes={"rack": "13"}) == ["BBB0002"]
    assert picked(attributes={"vcenter.cluster": "prod-a", "rack": "12"}) == ["AAA0001"]
    assert picked(attributes={"vcenter.cluster": None}) == []  # missing is not None

    for bad in ({"names": [" "]}, {"status": []}, {"attributes": {"a..b": 1}}, {"tag": ["x"]}):
        with pytest.raises(ValueError):  # pydantic's ValidationError
            TargetQuery(**bad)
    described = TargetQuery(models=["R640"], clusters=["prod-a"]).describe()
    assert described == "models=['R640'], clusters=['prod-a'], status=['online']"


@flow(name="select-targets")
async def _select(block: str, **kw: Any) -> list[str]:
    return [r.identity for r in await load_target_servers(inventory_block=block, **kw)]


async def test_load_target_servers_refuses_ambiguous_or_empty_selections(
    prefect_harness, tmp_path: Path
):
    url = f"sqlite:///{tmp_path / 'targets.db'}"
    await InventoryStore(url=url).asave("targets-test", overwrite=True)
    with Inventory(url=url) as inventory:
        inventory.upsert(obs("127.10.9.2", service_tag="ZZZ0002", model="PowerEdge R640"))
        inventory.upsert(obs("127.10.9.1", service_tag="YYY0001", model="PowerEdge R650"))
    assert await _select("targets-test", targets=[]) == ["YYY0001", "ZZZ0002"]
    assert await _select("targets-test", targets=[], model="R650") == ["YYY0001"]
    q = TargetQuery(names=["zzz*"])
    assert await _select("targets-test", targets=[], query=q) == ["ZZZ0002"]
    for kw, words in [
        ({"targets": ["ZZZ0002"], "query": q}, "give targets or a query, not both"),
        ({"targets": [], "model": "R640", "query": q}, "give it in the query"),
        ({"targets": ["ZZZ0002", "ZZZ0002"]}, "given twice: ZZZ0002"),
        ({"targets": [], "query": TargetQuery(models=["R750"])}, "no server matched the query"),
    ]:
        with pytest.raises(PreconditionError, match=words):
            await _select("targets-test", **kw)
