"""Reboot runs as jobs of a machine: history by any name, who asked, waiting runs, stops,
the attempts artifact, watching without ICMP, and bounded method calls.

One reboot lab for the module (sshd per machine, ipmi_sim BMCs, an APC PDU);
runs of a machine are read back the way an operator would: ``rackflow jobs
--json``, the Prefect API, the lab's record of what was done to the machine.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import State
from pydantic import SecretStr
from typer.testing import CliRunner

from blocks.inventory import InventoryStore
from clients.errors import PreconditionError
from clients.inventory import Inventory
from deployments.cli import app
from flows.reboot import chain, ilo_reboot_flow, reboot_flow
from flows.reboot_chain import RebootMethod, attempts_key
from lab.machines.sshd import SshFaults
from tests.reboot_lab import FAST, RebootLab, result_of, save_blocks, start_reboot_lab
from tests.test_lease import RELEASE, entered, hold_until_released, running_runs

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("ipmi_sim", "/usr/sbin/snmpd", "/usr/sbin/sshd")),
        reason="needs ipmi_sim, snmpd and sshd (scripts/system-deps.sh)",
    ),
]

SSH_THEN_IPMI = [RebootMethod.SSH, RebootMethod.IPMI_RESET]
runner = CliRunner()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RebootLab]:
    with start_reboot_lab(tmp_path_factory.mktemp("reboot-jobs-lab"), count=4) as running:
        yield running


@pytest.fixture
async def blocks(lab: RebootLab, tmp_path: Path) -> RebootLab:
    await save_blocks(lab, tmp_path)
    return lab


def _run_id(state: State) -> str:
    return str(state.state_details.flow_run_id)


async def _jobs(*args: str) -> tuple[list[dict[str, str]], str]:
    """``rackflow jobs ARGS --json``: the rows, and what was said on stderr."""
    out = await asyncio.to_thread(runner.invoke, app, ["jobs", *args, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout), out.stderr


async def test_jobs_by_fqdn_finds_the_runs_of_a_machine_filed_under_its_service_tag(
    blocks: RebootLab, tmp_path: Path
) -> None:
    lab, name, tag = blocks, "m1.lab.test", "JOBS7Q2"
    # A machine known by both: the inventory's id (and the lease, the tag) is the service tag.
    url = f"sqlite:///{tmp_path / 'tagged.db'}"
    with Inventory(url=url) as inventory:
        inventory.register([lab.entry(name, service_tag=tag, ilo=None)])
    await InventoryStore(url=SecretStr(url)).asave("tagged-inv", overwrite=True)
    done = await reboot_flow(
        name, methods=[RebootMethod.IPMI_RESET], deadlines=FAST, requested_by="alice",
        inventory_block="tagged-inv", return_state=True,
    )  # fmt: skip
    assert done.is_completed(), done.message
    refused = await ilo_reboot_flow(
        name, deadlines=FAST, inventory_block="tagged-inv", return_state=True
    )
    assert refused.is_failed()  # no iLO: refused before anything, yet in the history

    rows, said = await _jobs(name, "--inventory-block", "tagged-inv")
    assert said == ""
    # Runs filed under the FQDN (other tests' runs on m1.lab.test) are its history too.
    by_id = {r["id"]: r for r in rows if tag in r["machines"].split(",")}
    assert set(by_id) == {_run_id(done), _run_id(refused)}
    ok, no = by_id[_run_id(done)], by_id[_run_id(refused)]
    assert (ok["flow"], ok["state"], ok["machines"], ok["by"]) == (
        "reboot",
        "Completed",
        tag,
        "alice",
    )
    assert ok["summary"].startswith("rebooted by ipmi-reset") and ok["end"] != "-"
    assert (no["flow"], no["state"], no["by"]) == ("ilo-reboot", "Failed", "local")
    assert "none of the methods (ilo) is configured" in no["summary"]
    assert set(by_id) <= {r["id"] for r in (await _jobs(tag, "--inventory-block", "tagged-inv"))[0]}

    # No inventory to ask: the name as typed, said so (runs filed under the tag are not found).
    rows, said = await _jobs(name, "--inventory-block", "no-such-inventory")
    assert "could not look m1.lab.test up in the inventory" in said
    assert "showing runs tagged machine:m1.lab.test" in said
    assert not set(by_id) & {r["id"] for r in rows}


def test_attempts_artifact_keys_are_per_machine_and_valid() -> None:
    assert attempts_key("m2.lab.test") == "reboot-attempts-m2-lab-test"
    assert attempts_key("8CYCZ23") == "reboot-attempts-8cycz23"
    assert attempts_key("Web01.Example.COM.") == "reboot-attempts-web01-example-com"
    assert attempts_key("esx/01 & a") == "reboot-attempts-esx-01-a"


async def test_attempts_artifact_holds_every_attempt_of_the_run(blocks: RebootLab) -> None:
    lab, name = blocks, "m2.lab.test"
    entry = lab.entry(name).model_dump()
    lab.register(lab.entry(name, ssh=entry["ssh"] | {"credentials": "no-such-block"}))
    state = await reboot_flow(
        name, methods=SSH_THEN_IPMI, deadlines=FAST, inventory_block=lab.inventory_block,
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert {a.key for a in artifacts} == {"reboot-attempts-m2-lab-test"}
    latest = max(artifacts, key=lambda a: a.created)
    rows: list[dict[str, Any]] = json.loads(latest.data)
    assert [(r["method"], r["outcome"]) for r in rows] == [
        ("ssh", "failed"),
        ("ipmi-reset", "rebooted"),
    ]
    assert "no-such-block" in rows[0]["error"] and rows[1]["error"] == ""
    assert latest.description == f"Reboot attempts on {name}"


async def test_a_waiting_chain_is_in_the_history_busy_names_the_holder_and_cancel_stops_it(
    blocks: RebootLab,
) -> None:
    lab, name = blocks, "m3.lab.test"
    lab.register(lab.entry(name))
    events_before = len(lab.snapshot(name)["events"])
    RELEASE[name] = asyncio.Event()
    holder = asyncio.create_task(hold_until_released(name))  # another job on the machine
    try:
        holder_id = await entered(name)
        waiting = asyncio.create_task(
            reboot_flow(name, deadlines=FAST, inventory_block=lab.inventory_block,
                        return_state=True)
        )  # fmt: skip
        [waiting_id] = set(await running_runs(name, 2)) - {holder_id}
        busy = await reboot_flow(
            name, deadlines=FAST, lease_wait_s=1.0, inventory_block=lab.inventory_block,
            return_state=True,
        )  # fmt: skip
        assert busy.is_failed()
        assert "machine busy with" in busy.message and holder_id in busy.message
        assert waiting_id not in busy.message  # the holder, not the other run waiting

        out = await asyncio.to_thread(runner.invoke, app, ["cancel", waiting_id])
        assert out.exit_code == 0 and "stop after its current step" in out.output
        stopped = await waiting
    finally:
        RELEASE[name].set()
        await holder
    assert stopped.is_cancelled(), stopped
    result = result_of(stopped)
    assert result.attempts == [] and not result.rebooted
    assert "stop requested (rackflow cancel) while waiting" in (result.stopped or "")
    assert len(lab.snapshot(name)["events"]) == events_before  # nothing was done to it

    rows, _ = await _jobs(name, "--inventory-block", lab.inventory_block)
    states = {r["id"]: (r["state"], r["summary"]) for r in rows}
    assert states[holder_id][0] == "Completed"
    assert states[waiting_id][0] == "Cancelled" and "while waiting" in states[waiting_id][1]
    assert states[_run_id(busy)][0] == "Failed"
    assert "machine busy with" in states[_run_id(busy)][1]


def no_icmp() -> None:
    """The ICMP capability probe of a worker that may not send ICMP (not root)."""
    return None


@flow(name="reboot-on-a-worker-without-icmp")
async def reboot_without_icmp(machine: str, inventory_block: str) -> State:
    return await chain(
        machine, [RebootMethod.IPMI_RESET], deadlines=FAST, file_bug=False, requested_by=None,
        lease_wait_s=30.0, inventory_block=inventory_block, icmp=no_icmp,
    )  # fmt: skip


async def test_without_icmp_the_chain_watches_the_ssh_port_or_refuses_up_front(
    blocks: RebootLab,
) -> None:
    lab, name = blocks, "m4.lab.test"
    # ping: auto, no port (the default). On loopback ICMP always answers, so only
    # watching the SSH port (sshd goes away while the machine is down) can see the cycle.
    lab.register(lab.entry(name, ping=None))
    lab.ssh.wait_ssh(name)
    cycles = lab.snapshot(name)["cycles"]
    state = await reboot_without_icmp(name, lab.inventory_block, return_state=True)
    assert state.is_completed(), state.message
    result = result_of(state)
    assert [(a.method, a.outcome.value) for a in result.attempts] == [("ipmi-reset", "rebooted")]
    assert lab.snapshot(name)["cycles"] == cycles + 1

    lab.register(lab.entry(name, ping=None, ssh=None))  # nothing to connect to either
    lab.fleet.lab.wait_answering(name, True, timeout_s=10)
    events = len(lab.snapshot(name)["events"])
    refused = await reboot_without_icmp(name, lab.inventory_block, return_state=True)
    assert refused.is_failed()
    with pytest.raises(PreconditionError, match="ICMP sockets are not permitted here.*no TCP port"):
        await refused.result()
    assert len(lab.snapshot(name)["events"]) == events  # refused before anything was touched
    rows, _ = await _jobs(name, "--inventory-block", lab.inventory_block)
    assert _run_id(refused) in {r["id"] for r in rows}


async def test_each_method_call_is_bounded_and_ssh_commands_get_command_s(
    blocks: RebootLab,
) -> None:
    lab, name = blocks, "m4.lab.test"
    lab.register(lab.entry(name))
    lab.ssh.wait_ssh(name)
    # `reboot` and `shutdown` block forever without acting (a stuck init).
    lab.fleet.sshd.set_faults(name, SshFaults(stall={"reboot", "shutdown"}))
    try:
        short_commands = FAST.model_copy(update={"command_s": 0.5, "method_s": 60.0})
        by_command = await reboot_flow(
            name, methods=SSH_THEN_IPMI, deadlines=short_commands,
            inventory_block=lab.inventory_block, return_state=True,
        )  # fmt: skip
        lab.ssh.wait_ssh(name, timeout_s=10)
        assert FAST.command_s == 20.0 and FAST.method_s == 5.0  # the budget ends it first
        by_budget = await reboot_flow(
            name, methods=SSH_THEN_IPMI, deadlines=FAST,
            inventory_block=lab.inventory_block, return_state=True,
        )  # fmt: skip
    finally:
        lab.fleet.sshd.set_faults(name, SshFaults())
    first, second = result_of(by_command), result_of(by_budget)
    assert [(a.method, a.outcome.value) for a in first.attempts] == [
        ("ssh", "failed"),
        ("ipmi-reset", "rebooted"),
    ]
    refused = first.attempts[0].error or ""
    for command in ("'reboot'", "'shutdown -r now'"):  # each command got command_s, no more
        assert f"{command}: no exit after 0.5 s" in refused
    assert [(a.method, a.outcome.value) for a in second.attempts] == [
        ("ssh", "failed"),
        ("ipmi-reset", "rebooted"),
    ]
    error = second.attempts[0].error or ""
    assert "ssh call (deadlines.method_s budget" in error and "not done after 5.0 s" in error
