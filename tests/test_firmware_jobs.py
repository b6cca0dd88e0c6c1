"""rackflow owns firmware jobs by id: notes cleared on every outcome, foreign jobs refused,
jobs that never ran deleted before the maintenance window is left, starts never doubled.

End to end against lab iDRACs (and vcsim where maintenance mode matters); the
pure rules (which job an interrupted start may adopt) and the client's
single-job delete are checked on their own first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
import time

import httpx
import pytest
from aiohttp import web
from prefect import flow

from blocks import RedfishCredentials
from clients.errors import PreconditionError
from clients.firmware.repository import Package
from clients.firmware.sources import ApplyTime
from clients.inventory import Inventory
from clients.redfish.jobs import DellJob, interrupted_starts
from clients.redfish.models import ComponentKind
from clients.redfish.update import DellUpdates
from flows.full_server_update import full_server_update
from lab.idrac import firmware as lab_firmware
from lab.settings import Faults
from tasks.firmware_jobs import choose_job, start_firmware_update
from tests.fw_env import FAST, faults
from tests.helpers import self_signed_cert
from tests.redfish_update_fake import DELETE_QUEUE, FakeUpdateIdrac, update_client_for
from tests.test_firmware_flow import _rollout, _rows

SIMPLE_UPDATE = "POST /redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"
NOTE = "pending:firmware-job"
SCHEDULED = ("Scheduled", 0, "Task successfully scheduled.", "JCP001")


def _job(jid: str, name: str, state: str = "Scheduled", job_type: str = "FirmwareUpdate"):
    return DellJob(id=jid, name=name, state=state, job_type=job_type)


# -- the rules, on their own ------------------------------------------------------------


def test_an_interrupted_start_adopts_only_an_unambiguous_job() -> None:
    unnamed = _job("JID_1", "Firmware Update", "Downloading")
    nic = _job("JID_2", "Firmware Update: Network")
    bios = _job("JID_3", "Firmware Update: BIOS")
    repo = _job("JID_4", "Repository Update", "Running", "RepositoryUpdate")
    # a NIC job is named "Network"; a job not named yet may be anyone's first
    assert interrupted_starts([nic], [ComponentKind.NIC]) == [nic]
    assert interrupted_starts([unnamed], [ComponentKind.BIOS]) == [unnamed]
    assert interrupted_starts([nic], [ComponentKind.BIOS]) == []  # another component's
    # two candidates for one component: none taken (a person must look)
    assert (
        interrupted_starts([unnamed, _job("JID_5", "Firmware Update")], [ComponentKind.BIOS]) == []
    )
    # a catalog: one job per component, and its RepositoryUpdate job
    assert interrupted_starts([bios, nic, repo], [ComponentKind.BIOS, ComponentKind.NIC]) == [
        bios,
        nic,
        repo,
    ]


def test_a_start_adopts_by_id_or_by_its_own_request_never_by_name() -> None:
    bios = _job("JID_7", "Firmware Update: BIOS")
    done = _job("JID_6", "Firmware Update: BIOS", "Completed")
    kw = {"recorded": [], "follow": None, "interrupted": False, "before": None}
    # a first attempt never adopts: a BIOS job it did not record is someone else's
    with pytest.raises(PreconditionError, match="JID_7 .* not started by rackflow"):
        choose_job("bmc", [done, bios], ComponentKind.BIOS, **kw)
    # the job an earlier run recorded for this component is followed by its id
    job, why = choose_job("bmc", [bios], ComponentKind.BIOS, **{**kw, "follow": "JID_7"})
    assert job == bios and "recorded by an earlier run" in why
    # a retry after a lost answer adopts the job made since its first attempt
    job, why = choose_job("bmc", [done, bios], ComponentKind.BIOS, **{**kw, "before": {"JID_6"}})
    assert job == bios and "lost" in why
    # ...but not a job that was there before it asked
    with pytest.raises(PreconditionError, match="not started by rackflow"):
        choose_job("bmc", [bios], ComponentKind.BIOS, **{**kw, "before": {"JID_7"}})
    # a job rackflow recorded for another component does not block a start
    assert choose_job("bmc", [bios], ComponentKind.NIC, **{**kw, "recorded": ["JID_7"]}) == (
        None,
        None,
    )


async def test_delete_job_deletes_that_job_only() -> None:
    fake = FakeUpdateIdrac()
    keep = fake.add_job([SCHEDULED])
    drop = fake.add_job([SCHEDULED])
    bmc = update_client_for(fake)
    dell = DellUpdates(bmc)
    async with bmc:
        assert await dell.delete_job(drop) is True
        assert await dell.delete_job(drop) is False  # gone already: SUP011 is not an error
        with pytest.raises(PreconditionError):
            await dell.delete_job("JID_CLEARALL")
    assert list(fake.jobs) == [keep]
    assert fake.posts == [(DELETE_QUEUE, {"JobID": drop}), (DELETE_QUEUE, {"JobID": drop})]


# -- end to end -------------------------------------------------------------------------


def _foreign_job(env, tag: str, component: str = "bios") -> str:
    """A SimpleUpdate job queued on the lab iDRAC by someone else (not rackflow)."""
    bmc = env.bmc(tag)
    uri = env.lab.repository.url(env.lab.repository.package_for(bmc.spec.model, component).file)

    async def start() -> str:
        return lab_firmware.start_simple_update(bmc, image_uri=uri, apply_time="OnReset").id

    return env.lab.call(start)


def _wait_for_state(env, tag: str, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while env.bmc(tag).jobs.get(job_id).state != state:
        assert time.monotonic() < deadline, env.bmc(tag).jobs.get(job_id)
        time.sleep(0.05)


def _note(env, tag: str):
    return (env.record(tag).attributes or {}).get(NOTE)


async def test_failed_job_leaves_no_note_and_foreign_jobs_are_never_adopted(env_factory):
    env = await env_factory(count=1, faults={0: faults(job_fails=["bios"])}, cluster_size=1)
    tag = env.tags[0]
    bmc = env.bmc(tag)
    state, summary = await _rollout(env, [tag])
    assert state.is_failed()
    row = _rows(summary)[(tag, "bios")]
    [failed] = bmc.jobs.all()
    assert f"job {failed.id} ended Failed" in row.message, row.message
    assert _note(env, tag) is None  # a failed job leaves no note behind
    assert env.in_maintenance() == set()

    # someone else queues a BIOS update: rackflow must not take it for its own
    env.lab.set_faults(bmc.address, Faults(), port=bmc.port)
    foreign = _foreign_job(env, tag)
    _wait_for_state(env, tag, foreign, "Scheduled")
    resets = env.resets(tag)
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, [tag])
    finally:
        watcher.stop()
    assert state.is_failed()
    row = _rows(summary)[(tag, "*")]
    assert row.result == "skipped"
    assert f"pending job {foreign} (Firmware Update: BIOS, Scheduled) not started by rackflow" in (
        row.message
    ), row.message
    # nothing touched: no maintenance mode, no reboot, no job, the other one's job as it was
    assert watcher.ever_in == set()
    assert env.resets(tag) == resets
    assert [j.id for j in bmc.jobs.all()] == [failed.id, foreign]
    assert bmc.jobs.get(foreign).state == "Scheduled"
    assert _note(env, tag) is None

    # once its owner deleted it, the next run updates the server with a job of its own
    async def delete() -> None:
        bmc.jobs.delete(foreign)

    env.lab.call(delete)
    state, summary = await _rollout(env, [tag])
    assert state.is_completed(), summary.rows
    assert bmc.bios_version == env.target("bios")
    assert len(bmc.jobs.all()) == 2 and bmc.jobs.all()[-1].state == "Completed"
    assert _note(env, tag) is None


async def test_a_stuck_foreign_job_skips_only_its_server(env_factory):
    env = await env_factory(count=2, cluster_size=2)
    stuck_tag, other = env.tags
    stuck = env.bmc(stuck_tag)

    async def stuck_job() -> str:  # a job stuck in New: a common field problem (IDRAC.md)
        return stuck.jobs.create(name="Firmware Update", job_type="FirmwareUpdate", now=0).id

    jid = env.lab.call(stuck_job)
    watcher = env.watch()
    try:
        state, summary = await _rollout(env, env.tags, max_failures=2)
    finally:
        watcher.stop()
    rows = _rows(summary)
    assert rows[(stuck_tag, "*")].result == "skipped"
    assert f"pending job {jid} (Firmware Update, New) not started by rackflow" in (
        rows[(stuck_tag, "*")].message
    )
    assert [j.id for j in stuck.jobs.all()] == [jid] and env.resets(stuck_tag) == 0
    assert watcher.ever_in == {env.host_of[other]}  # the stuck server's host never evacuated
    assert rows[(other, "bios")].result == "updated"


async def test_staging_deadline_deletes_the_job_before_maintenance_is_left(env_factory):
    # the download never ends in time: the host is never rebooted
    env = await env_factory(count=1, cluster_size=1, durations={"download_s": 10**4})
    tag = env.tags[0]
    bmc, host = env.bmc(tag), env.host_of[env.tags[0]]
    seen: list[tuple[bool, int]] = []  # (host in maintenance, jobs in the queue)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append((host in env.in_maintenance(), len(bmc.jobs.all())))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        state, summary = await _rollout(
            env, [tag], deadlines=FAST.model_copy(update={"job_staged_s": 2.0})
        )
    finally:
        stop.set()
        sampler.join(5)
    assert state.is_failed()
    row = _rows(summary)[(tag, "bios")]
    assert "not done after" in row.message and "deleted (Downloading, never ran)" in row.message
    assert bmc.jobs.all() == []  # nothing left to flash at the next reboot
    assert env.resets(tag) == 0
    assert env.in_maintenance() == set() and _note(env, tag) is None
    # the job was gone before the host left maintenance mode
    entered = next(i for i, (mm, _) in enumerate(seen) if mm)
    assert all(jobs == 0 for mm, jobs in seen[entered:] if not mm), seen


async def test_component_deadline_of_a_full_update_deletes_its_job(env_factory):
    env = await env_factory(count=1, cluster_size=1, durations={"download_s": 10**4})
    tag = env.tags[0]
    state = await full_server_update(
        source=env.source(),
        targets=[tag],
        credentials_block=env.names["redfish"],
        vcenter_block=env.names["vcenter"],
        inventory_block=env.names["inventory"],
        deadlines=FAST,
        component_deadline_s=3,
        lease_wait_s=120,
        return_state=True,
    )
    assert state.is_failed()
    summary = await state.result(raise_on_failure=False)
    assert _rows(summary)[(tag, "idrac")].result == "failed"  # critical: the server stops
    assert env.bmc(tag).jobs.all() == []  # the timed-out iDRAC job did not keep running
    assert env.in_maintenance() == set() and _note(env, tag) is None


async def test_rerun_adopts_the_job_of_a_run_killed_before_noting_it(env_factory):
    env = await env_factory(count=2, vcenter=False)
    one, two = env.tags
    # both runs were killed right after their request: the note has no job id
    starting = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    note = {"run": "killed", "job": None, "component": "bios", "starting": starting}
    made = _foreign_job(env, one)
    doubled = [_foreign_job(env, two), _foreign_job(env, two)]  # ambiguous: which is it?
    with Inventory(url=env.inventory_url) as inv:
        for tag in env.tags:
            inv.annotate(tag, attributes={NOTE: note})
    state, summary = await _rollout(env, env.tags, max_failures=2)
    rows = _rows(summary)
    assert rows[(one, "bios")].result == "updated", rows
    assert f"adopted {made}" in rows[(one, "bios")].message
    assert [j.id for j in env.bmc(one).jobs.all()] == [made]  # followed, not started again
    assert env.bmc(one).bios_version == env.target("bios")
    assert _note(env, one) is None
    # two jobs could be the killed run's: rackflow refuses to guess and touches nothing
    assert rows[(two, "*")].result == "skipped"
    assert "not started by rackflow" in rows[(two, "*")].message
    assert sorted(j.id for j in env.bmc(two).jobs.all()) == sorted(doubled)


# -- a start whose answer is lost -------------------------------------------------------


class LosingProxy:
    """HTTPS in front of a lab iDRAC that forwards everything, but drops the connection
    instead of answering the first SimpleUpdate: the iDRAC made the job, the answer is lost."""

    def __init__(self, target: str, ca: str, cert, key) -> None:
        self._target, self._ca = target, ca
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(cert, key)
        self.dropped = 0

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ctx)
        await site.start()
        self._http = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=self._ca), timeout=10
        )
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self._http.aclose()
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        skip = {"host", "content-length", "transfer-encoding", "connection"}
        answer = await self._http.request(
            request.method,
            self._target + request.path_qs,
            headers={k: v for k, v in request.headers.items() if k.lower() not in skip},
            content=await request.read(),
        )
        if request.path.endswith("UpdateService.SimpleUpdate") and not self.dropped:
            self.dropped += 1
            assert request.transport is not None
            request.transport.close()  # the job exists; its Location never arrives
            raise web.HTTPServiceUnavailable()
        skip |= {"content-encoding"}
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in skip}
        return web.Response(status=answer.status_code, body=answer.content, headers=headers)


async def test_a_retried_start_does_not_create_a_second_job(env_factory, tmp_path):
    env = await env_factory(count=1, vcenter=False)
    tag = env.tags[0]
    bmc = env.bmc(tag)
    cert, key = self_signed_cert(tmp_path, "127.0.0.1")
    proxy = LosingProxy(f"https://{bmc.address}:{bmc.port}", str(env.lab.ca_path), cert, key)
    port = await proxy.start()
    creds = await RedfishCredentials.aload(env.names["redfish"])
    await creds.model_copy(update={"ca_bundle": str(cert)}).asave("lossy", overwrite=True)
    lab_package = env.lab.repository.package_for(bmc.spec.model, "bios")
    package = Package(
        component=ComponentKind.BIOS,
        uri=env.lab.repository.url(lab_package.file),
        version=lab_package.version,
        file=lab_package.file,
    )

    @flow(name="start-with-a-lost-answer")
    async def start_once():
        retrying = start_firmware_update.with_options(retry_delay_seconds=0)
        return await retrying("127.0.0.1", port, "lossy", package, ApplyTime.ON_RESET)

    try:
        started = await asyncio.wait_for(start_once(), timeout=120)
    finally:
        await proxy.stop()
    assert proxy.dropped == 1
    assert "lost" in (started.adopted or "")
    assert [j.id for j in bmc.jobs.all()] == [started.job_id]  # one job, the one adopted
    assert env.lab.request_counts()[bmc.key][SIMPLE_UPDATE] == 1
