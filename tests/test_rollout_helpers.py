"""What a rolling update's flows share: the slot scheduler, the run's inventory handle,
the learned step durations, and the job progress artifact written beside the polling."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from blocks.inventory import InventoryStore
from clients.inventory import Inventory, ServerRecord, ServerStatus
from clients.redfish.jobs import DellJob
from flows.rollout import ComponentResult, Outcome, RolloutOptions, rolling
from tasks.firmware import job_progress
from tasks.inventory import RunInventory
from tests.test_inventory import T0, obs

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _server(tag: str) -> ServerRecord:
    return ServerRecord(
        id=1,
        identity=tag,
        service_tag=tag,
        status=ServerStatus.ONLINE,
        first_seen=T0,
        last_seen=T0,
        bmc_address="127.10.0.1",
        bmc_port=443,
    )


def _ok(server: ServerRecord) -> list[ComponentResult]:
    return [ComponentResult(server=server.identity, component="bios", result=Outcome.UPDATED)]


@flow(name="rolling-after")
async def _roll_with_bookkeeping() -> tuple[list[str], list[ComponentResult]]:
    order: list[str] = []
    second_started = asyncio.Event()

    async def work(server: ServerRecord) -> list[ComponentResult]:
        order.append(f"work {server.identity}")
        if server.identity == "B":
            second_started.set()
        if server.identity == "C":
            raise RuntimeError("boom")
        return _ok(server)

    async def after(server: ServerRecord, rows: list[ComponentResult]) -> None:
        if server.identity == "A":
            # Only possible when A's bookkeeping runs after its slot went to B.
            await asyncio.wait_for(second_started.wait(), timeout=10)
        order.append(f"after {server.identity}")

    servers = [_server(t) for t in "ABC"]
    rows = await rolling(servers, work, max_parallel=1, max_failures=5, after=after)
    return order, rows


async def test_bookkeeping_after_a_server_runs_outside_its_slot():
    order, rows = await _roll_with_bookkeeping()
    assert order.index("work B") < order.index("after A")
    assert {r.server: r.result for r in rows} == {
        "A": Outcome.UPDATED,
        "B": Outcome.UPDATED,
        "C": Outcome.FAILED,
    }
    assert "RuntimeError: boom" in rows[-1].message


async def test_run_inventory_notes_are_on_disk_when_the_call_returns(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    await InventoryStore(url=url).asave("run-inventory-test", overwrite=True)
    with Inventory(url=url) as inventory:
        inventory.upsert(obs("127.10.9.1", service_tag="NOTE001"))

    def attributes() -> dict[str, Any]:
        with Inventory(url=url) as other:  # another connection, as a later run would read
            record = other.get("NOTE001")
            assert record is not None
            return dict(record.attributes or {})

    async with await RunInventory.open("run-inventory-test") as run:
        await run.note("NOTE001", "firmware-job", {"run": "r1", "job": None})
        assert attributes()["pending:firmware-job"] == {"run": "r1", "job": None}
        await run.note("NOTE001", "firmware-job", None)
        assert "pending:firmware-job" not in attributes()
        counts = await run.record([obs("127.10.9.1", service_tag="NOTE001", model="R640")])
    assert counts["updated"] == 1
    with Inventory(url=url) as inventory:
        record = inventory.get("NOTE001")
    assert record is not None and record.model == "R640"


def test_expected_step_duration_is_the_fastest_seen_but_not_an_odd_one():
    opts = RolloutOptions(**dict.fromkeys(RolloutOptions.__dataclass_fields__))  # type: ignore[arg-type]
    opts.took, opts.packages = {}, {}
    assert opts.expected("R640", "bios", "start") is None
    for took in (3.3, 3.1, 3.4):
        opts.learn(took, "R640", "bios", "start")
    assert opts.expected("R640", "bios", "start") == 3.1
    opts.learn(0.1, "R640", "bios", "start")  # a job found already staged
    assert opts.expected("R640", "bios", "start") == pytest.approx(3.2 / 2)
    assert opts.expected("R650", "bios", "start") is None  # another model learns on its own


def _job(state: str, percent: int | None) -> DellJob:
    return DellJob(id="JID_1", state=state, percent_complete=percent)


@flow(name="job-progress")
async def _follow_a_job(key: str) -> None:
    async with job_progress(key, "JID_1") as report:
        assert report is not None
        for state, percent in [
            ("Downloading", 0),
            ("Downloading", 20),  # same state within 5 s: not written
            ("Downloading", 40),
            ("Scheduled", None),  # no percentage: nothing to show
            ("Running", 100),
        ]:
            await report(_job(state, percent))


async def test_job_progress_is_written_in_the_background_and_complete_at_the_end():
    await _follow_a_job("firmware-progress-test")
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["firmware-progress-test"]))
        )
    assert len(artifacts) == 1
    assert artifacts[0].data == 100.0
    assert artifacts[0].description == "JID_1: Running"


def test_planned_components_without_a_row_are_reported_not_attempted():
    from clients.firmware.repository import Package
    from clients.redfish.jobs import RepoUpdate
    from clients.redfish.models import ComponentKind
    from flows.firmware_update import _with_unattempted

    server = _server("PLAN001")
    bios = Package(uri="http://127.0.0.1/b.exe", file="b.exe", component=ComponentKind.BIOS)
    nic = Package(
        uri="http://127.0.0.1/n.exe", file="n.exe", component=ComponentKind.NIC, version="22.5"
    )
    failed = ComponentResult(server="PLAN001", component="bios", result=Outcome.FAILED)
    rows = _with_unattempted(
        server, [(bios, "2.1"), (nic, "22.4")], [failed], "not attempted: bios failed"
    )
    assert [(r.component, r.result, r.before, r.target, r.message) for r in rows] == [
        ("bios", Outcome.FAILED, None, None, ""),
        ("nic", Outcome.SKIPPED, "22.4", "22.5", "not attempted: bios failed"),
    ]
    # A catalog's plan is the iDRAC's own list of updates.
    idrac = RepoUpdate(
        target="DCIM:INSTALLED#iDRAC.Embedded.1-1#IDRACinfo",
        component_id="25227",
        package_version="7.10.30.00",
        installed_versions=("7.00.00.174",),
    )
    [row] = _with_unattempted(server, [idrac], [], "not attempted: maintenance mode failed")
    assert (row.component, row.result, row.before, row.target) == (
        "idrac",
        Outcome.SKIPPED,
        "7.00.00.174",
        "7.10.30.00",
    )
