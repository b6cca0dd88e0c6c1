"""The reboot flows end to end: the escalating chain, single methods, bugs, stops, job history.

One lab for the module (sshd per machine, ipmi_sim BMCs, an APC PDU, a fake
Bugzilla); each test breaks paths by re-registering a machine's entry or by
saving a block with wrong credentials under another name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from typer.testing import CliRunner

from clients.errors import PreconditionError
from deployments.jobs_cli import app as jobs_app
from flows.reboot import (
    ipmi_power_flow,
    ping_flow,
    reboot_flow,
    ssh_reboot_flow,
)
from flows.reboot_chain import RebootResult
from lab.machines import MachineFaults
from tests.reboot_lab import (
    FAST,
    RebootLab,
    result_of,
    save_blocks,
    save_ipmi_block,
    start_reboot_lab,
    unreachable_pdu,
)

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("ipmi_sim", "/usr/sbin/snmpd", "/usr/sbin/sshd")),
        reason="needs ipmi_sim, snmpd and sshd (scripts/system-deps.sh)",
    ),
]

runner = CliRunner()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RebootLab]:
    with start_reboot_lab(tmp_path_factory.mktemp("reboot-lab"), count=8) as running:
        yield running


@pytest.fixture
async def blocks(lab: RebootLab, tmp_path: Path) -> RebootLab:
    await save_blocks(lab, tmp_path)
    # Broken variants a test can point a machine at.
    await lab.ssh.save_credentials("bad-ssh", private_key=_other_key())
    await save_ipmi_block(lab, "bad-ipmi", password="wrong-" + lab.ipmi_password[:8])
    return lab


def _other_key() -> str:
    from tests.ssh_lab import make_key_pair

    return make_key_pair().private


def _broken(lab: RebootLab, name: str, *, pdu_ok: bool = False) -> None:
    """Bad SSH key, wrong IPMI password, and (unless ``pdu_ok``) an unreachable PDU."""
    entry = lab.entry(name).model_dump()
    lab.register(
        lab.entry(
            name,
            ssh=entry["ssh"] | {"credentials": "bad-ssh"},
            ipmi=entry["ipmi"] | {"credentials": "bad-ipmi"},
            pdu=entry["pdu"] if pdu_ok else unreachable_pdu(lab, name),
        )
    )


async def test_chain_escalates_until_a_method_really_reboots(blocks: RebootLab) -> None:
    lab, name = blocks, "m1.lab.test"
    _broken(lab, name, pdu_ok=True)  # bad SSH key, wrong IPMI password, PDU fine
    before = lab.snapshot(name)["cycles"]
    state = await reboot_flow(
        name, deadlines=FAST, inventory_block=lab.inventory_block, return_state=True
    )
    assert state.is_completed(), state.message
    result = result_of(state)
    assert result.rebooted and result.method == "snmp"
    assert [(a.method, a.outcome.value) for a in result.attempts] == [
        ("ssh", "failed"),
        ("ipmi-reset", "failed"),
        ("ipmi-cycle", "failed"),
        ("snmp", "rebooted"),
    ]
    assert lab.snapshot(name)["cycles"] == before + 1
    acted = [(e["source"], e["event"]) for e in lab.snapshot(name)["events"]]
    assert [a for a in acted if a[0] in ("ssh", "ipmi", "pdu")] == [("pdu", "cycle")]
    assert "rebooted by snmp" in state.message


async def test_a_method_that_does_not_take_the_machine_down_counts_as_failed(
    blocks: RebootLab,
) -> None:
    lab, name = blocks, "m2.lab.test"
    lab.register(lab.entry(name))
    lab.ssh.lab.set_faults(name, MachineFaults(ignore_sources={"ssh"}))
    try:
        state = await reboot_flow(
            name, deadlines=FAST, inventory_block=lab.inventory_block, return_state=True
        )
    finally:
        lab.ssh.lab.set_faults(name, MachineFaults())
    result = result_of(state)
    assert [(a.method, a.outcome.value) for a in result.attempts] == [
        ("ssh", "did-not-go-down"),
        ("ipmi-reset", "rebooted"),
    ]
    assert "still answering 3 s after" in (result.attempts[0].error or "")
    assert state.is_completed()


async def test_all_methods_failing_files_one_bug_then_comments(
    blocks: RebootLab, caplog: pytest.LogCaptureFixture
) -> None:
    lab, name = blocks, "m3.lab.test"
    _broken(lab, name)
    caplog.set_level(logging.DEBUG)
    first = await reboot_flow(
        name, deadlines=FAST, inventory_block=lab.inventory_block, requested_by="alice",
        return_state=True,
    )  # fmt: skip
    assert first.is_failed()
    result = result_of(first)
    assert [a.outcome.value for a in result.attempts] == ["failed"] * 4
    bugs = lab.bugzilla.bugs()
    mine = [b for b in bugs if name in b["summary"]]
    assert len(mine) == 1
    assert result.bug_url and result.bug_url.endswith(f"show_bug.cgi?id={mine[0]['id']}")
    assert result.bug_url in first.message
    [description] = lab.bugzilla.comments(mine[0]["id"])
    assert "alice" in description["text"] and "ipmi-cycle" in description["text"]

    second = await reboot_flow(
        name, deadlines=FAST, inventory_block=lab.inventory_block, return_state=True
    )
    assert second.is_failed() and result_of(second).bug_url == result.bug_url
    assert len([b for b in lab.bugzilla.bugs() if name in b["summary"]]) == 1
    assert len(lab.bugzilla.comments(mine[0]["id"])) == 2
    for secret in lab.secrets:
        assert secret not in caplog.text


async def test_unknown_machine_is_refused_before_anything(blocks: RebootLab) -> None:
    state = await reboot_flow(
        "nope.lab.test", deadlines=FAST, inventory_block=blocks.inventory_block,
        return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    with pytest.raises(PreconditionError, match="not in the inventory: only managed machines"):
        await state.result()


async def test_single_method_flows_and_ping(blocks: RebootLab) -> None:
    lab, name = blocks, "m4.lab.test"
    lab.register(lab.entry(name))
    lab.ssh.wait_ssh(name)
    reach = await ping_flow(name, inventory_block=lab.inventory_block)
    assert reach.reachable and reach.method == "tcp"
    before = lab.snapshot(name)["cycles"]
    state = await ssh_reboot_flow(
        name, deadlines=FAST, inventory_block=lab.inventory_block, return_state=True
    )
    assert state.is_completed(), state.message
    assert lab.snapshot(name)["cycles"] == before + 1
    assert await ipmi_power_flow(name, "status", inventory_block=lab.inventory_block) == "on"


async def test_stop_request_stops_the_chain_between_methods(blocks: RebootLab) -> None:
    lab, name = blocks, "m5.lab.test"
    lab.register(lab.entry(name))
    # SSH "works" but the machine ignores it: the chain waits 3 s for it to go down.
    lab.ssh.lab.set_faults(name, MachineFaults(ignore_sources={"ssh"}))
    chain = asyncio.create_task(
        reboot_flow(name, deadlines=FAST, inventory_block=lab.inventory_block, return_state=True)
    )
    try:
        run_id = await _running_run(name)
        out = await asyncio.to_thread(runner.invoke, jobs_app, ["cancel", run_id])
        assert out.exit_code == 0 and "stop after its current step" in out.output
        state = await chain
    finally:
        lab.ssh.lab.set_faults(name, MachineFaults())
    assert state.is_cancelled(), state
    result = result_of(state)
    assert [a.method for a in result.attempts] == ["ssh"]  # ipmi never ran
    assert result.stopped and "stop requested" in result.stopped
    events = [e["source"] for e in lab.snapshot(name)["events"]]
    assert "ipmi" not in events


async def _running_run(machine: str) -> str:
    async with get_client() as client:
        for _ in range(200):
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"machine:{machine}"]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
                )
            )
            if runs:
                return str(runs[0].id)
            await asyncio.sleep(0.05)
    raise AssertionError(f"no running run for {machine}")


@flow(name="two-reboots")
async def _two(a: str, b: str, inventory_block: str) -> list[RebootResult]:
    states = await asyncio.gather(
        *(
            reboot_flow(m, deadlines=FAST, inventory_block=inventory_block,
                        requested_by="history-test", return_state=True)
            for m in (a, b)
        )
    )  # fmt: skip
    return [result_of(s) for s in states]


async def test_two_reboots_of_one_machine_never_overlap_and_history_shows_them(
    blocks: RebootLab,
) -> None:
    lab, name = blocks, "m6.lab.test"
    lab.register(lab.entry(name))
    first, second = await _two(name, name, lab.inventory_block)
    assert first.rebooted and second.rebooted
    spans = sorted(
        (a.started_at.timestamp(), a.started_at.timestamp() + a.duration_s)
        for r in (first, second)
        for a in r.attempts
    )
    assert spans[0][1] <= spans[1][0]  # the second waited for the first's lease
    out = await asyncio.to_thread(
        runner.invoke, jobs_app, ["jobs", name, "--inventory-block", lab.inventory_block, "--json"]
    )
    assert out.exit_code == 0, out.output
    rows = [r for r in json.loads(out.stdout) if r["flow"] == "reboot"]
    assert len(rows) >= 2
    for row in rows:
        assert (row["state"], row["machines"], row["by"]) == ("Completed", name, "history-test")
        assert row["end"] != "-" and row["end"] >= row["start"]
        assert row["summary"].startswith("rebooted by ssh in ")


async def test_reboots_of_different_machines_run_together(blocks: RebootLab) -> None:
    """m8 is rebooted from start to end while m7's chain is in the middle of an attempt.

    m7 ignores SSH, so its chain sits in the "must stop answering" wait of its
    SSH attempt (lease held) until the test resets it by hand; m8's reboot runs
    meanwhile. No timing race: m7 cannot finish before the test lets it.
    """
    lab = blocks
    entry = lab.entry("m8.lab.test").model_dump()
    lab.register(
        lab.entry("m7.lab.test"),
        # m8's PDU outlet is switched off / on with a pause (a PDU without "reboot").
        lab.entry("m8.lab.test", ssh=None, ipmi=None,
                  pdu=entry["pdu"] | {"mode": "off_on", "off_delay_s": 0.5}),
    )  # fmt: skip
    machines = lab.ssh.lab
    patient = FAST.model_copy(update={"down_s": 120.0})

    def ssh_ignored() -> bool:
        events = machines.snapshot("m7.lab.test")["events"]
        return any(e["source"] == "ssh" and e["event"].endswith("ignored") for e in events)

    @flow(name="reboot-beside-a-busy-machine")
    async def beside_busy() -> tuple[RebootResult, RebootResult, bool]:
        busy = asyncio.create_task(
            reboot_flow("m7.lab.test", deadlines=patient,
                        inventory_block=lab.inventory_block, return_state=True)
        )  # fmt: skip
        for _ in range(600):  # until m7's chain waits for its ignored SSH reboot
            if busy.done() or await asyncio.to_thread(ssh_ignored):
                break
            await asyncio.sleep(0.05)
        other = await reboot_flow(
            "m8.lab.test", deadlines=FAST, inventory_block=lab.inventory_block,
            return_state=True,
        )  # fmt: skip
        m7_still_busy = not busy.done()
        await asyncio.to_thread(machines.act, "m7.lab.test", "reset")
        return result_of(await busy), result_of(other), m7_still_busy

    machines.set_faults("m7.lab.test", MachineFaults(ignore_sources={"ssh"}))
    try:
        first, second, m7_still_busy = await beside_busy()
    finally:
        machines.set_faults("m7.lab.test", MachineFaults())
    assert second.rebooted and second.method == "snmp"
    assert [a.outcome.value for a in second.attempts] == ["skipped"] * 3 + ["rebooted"]
    assert m7_still_busy  # m8 was rebooted entirely while m7's chain held m7's lease
    assert first.rebooted and first.method == "ssh"  # it went down when the test reset it
    m8_end = second.attempts[-1].started_at.timestamp() + second.attempts[-1].duration_s
    assert first.attempts[0].started_at.timestamp() < m8_end
    pdu_events = [e["event"] for e in lab.snapshot("m8.lab.test")["events"] if e["source"] == "pdu"]
    assert pdu_events[-2:] == ["off", "on"]


async def test_methods_the_machine_lacks_are_refused_before_anything(blocks: RebootLab) -> None:
    from flows.reboot import ilo_reboot_flow

    blocks.register(blocks.entry("m1.lab.test", ilo=None))
    state = await ilo_reboot_flow(
        "m1.lab.test", deadlines=FAST, inventory_block=blocks.inventory_block, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(PreconditionError, match=r"none of the methods \(ilo\) is configured"):
        await state.result()


async def test_a_missing_block_fails_that_method_only(blocks: RebootLab) -> None:
    lab, name = blocks, "m4.lab.test"
    entry = lab.entry(name).model_dump()
    lab.register(lab.entry(name, ssh=entry["ssh"] | {"credentials": "no-such-block"}))
    state = await reboot_flow(
        name, deadlines=FAST, inventory_block=lab.inventory_block, return_state=True
    )
    result = result_of(state)
    assert state.is_completed() and result.method == "ipmi-reset"
    assert result.attempts[0].outcome.value == "failed"
    assert "no-such-block" in (result.attempts[0].error or "")
