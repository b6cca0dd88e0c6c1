"""IPMI power and reboot against real ipmi_sim BMCs wired to the reboot lab's machines.

Each test owns one machine of a module-wide lab, so the tests stay independent
while the BMCs start once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from pydantic import SecretStr, ValidationError

from blocks.ipmi import IpmiCredentials
from clients.errors import (
    AuthError,
    PreconditionError,
    RemoteError,
    ServerError,
    TransportError,
)
from clients.ipmi import IpmiClient
from tasks.ipmi import ipmi_power, ipmi_reboot
from tests.helpers import PingWatch, free_port
from tests.ipmi_lab import IpmiLab, needs_ipmi_sim, start_ipmi_lab

pytestmark = [pytest.mark.usefixtures("prefect_harness"), needs_ipmi_sim]

RESET, CYCLE, POWER, AUTH, HUNG, BOOTING = (f"m{i}.lab.test" for i in range(1, 7))
SLOW_BOOT_S = 1.0  # POWER boots slower: "on" must visibly wait for the boot


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiLab]:
    with start_ipmi_lab(
        tmp_path_factory.mktemp("ipmi"),
        count=6,
        boot_overrides={POWER: SLOW_BOOT_S, BOOTING: 5.0},
    ) as running:
        yield running


@flow
async def power_flow(address: str, port: int, block: str, action: str) -> str:
    return await ipmi_power(address, port=port, credentials=block, action=action)


@flow
async def reboot_flow(address: str, port: int, block: str, mode: str) -> str:
    # mode: str on purpose, so the task's own check is what refuses a bad one.
    result: str = await ipmi_reboot(address, port=port, credentials=block, mode=mode)  # type: ignore[call-overload]
    return result


@flow
async def power_flow_one_retry(address: str, port: int, block: str) -> str:
    quick = ipmi_power.with_options(retries=1, retry_delay_seconds=0)
    return await quick(address, port=port, credentials=block, action="status")


async def run_counts(flow_run_id: UUID | None) -> list[int]:
    """How many attempts each task of a flow run made."""
    assert flow_run_id is not None
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [r.run_count for r in runs]


def events(lab: IpmiLab, name: str) -> list[tuple[str, str]]:
    return [(e["event"], e["source"]) for e in lab.snapshot(name)["events"]]


async def test_reset_takes_the_machine_down_and_it_comes_back(lab: IpmiLab) -> None:
    await lab.save_credentials("ipmi-reset")
    address, port = lab.endpoint(RESET)
    before = lab.snapshot(RESET)["cycles"]

    with PingWatch(lab.address(RESET), lab.ping_port(RESET)) as ping:
        assert await reboot_flow(address, port, "ipmi-reset", "reset") == "on"
        assert ping.wait_for([True, False, True]), ping.changes

    assert ping.changes == [True, False, True]
    assert lab.snapshot(RESET)["cycles"] == before + 1
    assert events(lab, RESET)[-3:] == [("reset", "ipmi"), ("down", "machine"), ("up", "machine")]
    assert lab.set_calls(RESET) == [["set", "reset", "1"]]
    assert lab.snapshot(AUTH)["cycles"] == 0  # another machine's BMC is not involved


async def test_cycle_powers_off_and_on_and_the_machine_comes_back(lab: IpmiLab) -> None:
    await lab.save_credentials("ipmi-cycle")
    address, port = lab.endpoint(CYCLE)
    before = lab.snapshot(CYCLE)["cycles"]

    with PingWatch(lab.address(CYCLE), lab.ping_port(CYCLE)) as ping:
        # The task waits until the BMC reports power on again (ipmi_sim's own ~1 s pause).
        assert await reboot_flow(address, port, "ipmi-cycle", "cycle") == "on"
        assert ping.wait_for([True, False, True]), ping.changes

    assert ping.changes == [True, False, True]
    snap = lab.snapshot(CYCLE)
    assert snap["cycles"] == before + 1 and snap["powered"]
    # ipmi_sim carries out a cycle as power off, then power on.
    assert lab.set_calls(CYCLE) == [["set", "power", "0"], ["set", "power", "1"]]
    assert events(lab, CYCLE)[-4:] == [
        ("off", "ipmi"),
        ("down", "machine"),
        ("on", "ipmi"),
        ("up", "machine"),
    ]


async def test_status_off_on_soft_follow_the_machine(
    lab: IpmiLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await lab.save_credentials("ipmi-power")
    address, port = lab.endpoint(POWER)
    ping = PingWatch(lab.address(POWER), lab.ping_port(POWER))

    assert await power_flow(address, port, "ipmi-power", "status") == "on"
    assert await power_flow(address, port, "ipmi-power", "on") == "on"  # no-op, said so
    assert "power already on: nothing sent" in caplog.text
    assert lab.set_calls(POWER) == []

    assert await power_flow(address, port, "ipmi-power", "off") == "off"
    assert not lab.snapshot(POWER)["powered"] and not ping.answers()
    assert await power_flow(address, port, "ipmi-power", "status") == "off"
    with pytest.raises(PreconditionError, match="power is off"):
        await reboot_flow(address, port, "ipmi-power", "reset")  # nothing sent

    assert await power_flow(address, port, "ipmi-power", "on") == "on"
    lab.lab.wait_answering(POWER, True, timeout_s=10)
    assert ping.answers()
    ev = lab.snapshot(POWER)["events"]
    on_t = next(e["t"] for e in ev if (e["event"], e["source"]) == ("on", "ipmi"))
    up_t = next(e["t"] for e in ev if e["event"] == "up" and e["t"] >= on_t)
    assert up_t - on_t >= SLOW_BOOT_S * 0.9  # answered only after its boot delay

    # Soft off: the OS shuts down, then the power goes off.
    assert await power_flow(address, port, "ipmi-power", "soft") in ("on", "off")
    lab.lab.wait_answering(POWER, False, timeout_s=10)
    deadline = time.monotonic() + 10
    while lab.snapshot(POWER)["powered"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert await power_flow(address, port, "ipmi-power", "status") == "off"
    assert lab.set_calls(POWER) == [
        ["set", "power", "0"],
        ["set", "power", "1"],
        ["set", "shutdown", "1"],
    ]
    assert await power_flow(address, port, "ipmi-power", "on") == "on"
    lab.lab.wait_answering(POWER, True, timeout_s=10)


async def test_soft_off_refused_by_a_booting_machine_is_a_bmc_error(lab: IpmiLab) -> None:
    await lab.save_credentials("ipmi-booting")
    address, port = lab.endpoint(BOOTING)
    lab.lab.act(BOOTING, "reset", source="test")  # powered, no OS yet for 5 s

    state = await power_flow(address, port, "ipmi-booting", "soft", return_state=True)
    error = await state.result(raise_on_failure=False)  # type: ignore[misc]

    # ipmi_sim answers 0xFF when its chassis control fails: not retried (not idempotent).
    assert isinstance(error, ServerError) and error.status == 0xFF and not error.retryable
    assert await run_counts(state.state_details.flow_run_id) == [1]
    assert lab.bmcs.calls(BOOTING)[-1]["error"] == f"{BOOTING} is booting: no OS to soft"
    assert lab.snapshot(BOOTING)["phase"] == "booting"


async def test_wrong_password_is_refused_untouched_and_never_shown(
    lab: IpmiLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "pw-wrong-" + lab.password[-8:]
    await lab.save_credentials("ipmi-wrong", password=wrong)
    address, port = lab.endpoint(AUTH)
    before = lab.snapshot(AUTH)

    state = await reboot_flow(address, port, "ipmi-wrong", "reset", return_state=True)
    error = await state.result(raise_on_failure=False)  # type: ignore[misc]

    assert isinstance(error, AuthError)
    assert "rackadmin" in str(error) and "Incorrect password" in str(error)
    assert await run_counts(state.state_details.flow_run_id) == [1]  # never retried
    after = lab.snapshot(AUTH)
    assert (after["events"], after["cycles"], after["answering"]) == (
        before["events"],
        before["cycles"],
        True,
    )
    assert lab.set_calls(AUTH) == []
    assert caplog.text, "the run logged"
    for secret in (wrong, lab.password):
        assert secret not in caplog.text
        assert secret not in str(error) and secret not in repr(error)


async def test_user_privilege_reads_but_the_bmc_refuses_a_reset(lab: IpmiLab) -> None:
    await lab.save_credentials("ipmi-user", privilege="user")
    address, port = lab.endpoint(AUTH)

    assert await power_flow(address, port, "ipmi-user", "status") == "on"
    state = await reboot_flow(address, port, "ipmi-user", "reset", return_state=True)
    error = await state.result(raise_on_failure=False)  # type: ignore[misc]

    assert type(error) is RemoteError and error.status == 0xD4
    assert await run_counts(state.state_details.flow_run_id) == [1]
    assert lab.set_calls(AUTH) == []
    assert lab.snapshot(AUTH)["answering"]


async def test_cipher_suite_17_is_refused_by_a_sha1_only_bmc(lab: IpmiLab) -> None:
    await lab.save_credentials("ipmi-suite17", cipher_suite=17)
    address, port = lab.endpoint(AUTH)
    with pytest.raises(PreconditionError, match="cipher suite 17"):
        await power_flow(address, port, "ipmi-suite17", "status")
    with pytest.raises(ValidationError, match="cipher suite 5 unsupported"):
        lab.credentials(cipher_suite=5)
    with lab.client(AUTH) as bmc:  # the default (3) works and says which suite it got
        assert (bmc.power_status(), bmc.suite_in_use) == ("on", 3)


async def test_bad_action_or_mode_is_refused_before_anything_is_loaded(lab: IpmiLab) -> None:
    address, port = lab.endpoint(AUTH)
    # No such block: the error proves the check came before loading it.
    with pytest.raises(PreconditionError, match="'explode' is not one of"):
        await power_flow(address, port, "no-such-ipmi-block", "explode")
    with pytest.raises(PreconditionError, match="'off' is not one of"):
        await reboot_flow(address, port, "no-such-ipmi-block", "off")
    assert lab.set_calls(AUTH) == []


async def test_unreachable_bmc_fails_fast_and_is_retried(lab: IpmiLab) -> None:
    await lab.save_credentials("ipmi-fast", timeout=0.5)
    address = lab.address(HUNG)
    closed = free_port(address)  # nothing listens there (UDP refused at once)

    started = time.monotonic()
    state = await power_flow_one_retry(address, closed, "ipmi-fast", return_state=True)
    error = await state.result(raise_on_failure=False)  # type: ignore[misc]
    assert isinstance(error, TransportError) and "refused" in str(error)
    assert await run_counts(state.state_details.flow_run_id) == [2]  # transient: retried
    assert time.monotonic() - started < 10


def test_hung_bmc_times_out_then_recovers(lab: IpmiLab) -> None:
    lab.bmcs.pause(HUNG)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError, match="no answer to RMCP presence ping within 0.5 s"):
            with lab.client(HUNG, timeout=0.5) as bmc:
                bmc.power_status()
        assert time.monotonic() - started < 10  # gave up at its 0.5 s timeout, no hang
        assert lab.snapshot(HUNG)["answering"]  # a hung BMC does not touch the host
    finally:
        lab.bmcs.resume(HUNG)
    with lab.client(HUNG) as bmc:
        assert bmc.power_status() == "on"


def test_client_refuses_unsupported_settings_without_io() -> None:
    common: dict[str, Any] = {"address": "127.0.0.1", "user": "u", "password": "s3cret-pw"}
    with pytest.raises(PreconditionError, match="pyghmi negotiates suite 17 or 3"):
        IpmiClient(cipher_suite=1, **common)
    with pytest.raises(PreconditionError, match="'root' is not one of"):
        IpmiClient(privilege="root", **common)  # type: ignore[arg-type]
    client = IpmiClient(**common)
    with pytest.raises(PreconditionError, match="unknown|not one of"):
        client.power("explode")  # refused before any session is needed
    assert "s3cret-pw" not in repr(client)


def test_block_builds_a_client_without_io() -> None:
    creds = IpmiCredentials(
        user="ops", password=SecretStr("s3cret-pw"), privilege="operator", port=6230
    )
    client = creds.get_client("127.0.0.9")
    assert (client.target, client.privilege, client.cipher_suite) == (
        "127.0.0.9:6230",
        "operator",
        3,
    )
    assert creds.get_client("127.0.0.9", port=7000).port == 7000
    assert "s3cret-pw" not in repr(creds) and "s3cret-pw" not in repr(client)
