"""PDU outlet reboots over SNMP, against a real net-snmp snmpd and the reboot lab."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State
from pydantic import SecretStr, ValidationError
from pysnmp.hlapi.v3arch import asyncio as hlapi

from blocks.snmp import SnmpCredentials
from clients.errors import AuthError, NotFoundError, PreconditionError, TransportError
from clients.snmp import APC, SENTRY3, PduClient, RebootMode, V2cAuth, V3Auth
from tasks.pdu import pdu_outlet_state, snmp_reboot
from tests.helpers import PingWatch
from tests.pdu_lab import PduLab, pdu_labs

M1, M2 = "m1.lab.test", "m2.lab.test"
MakeLab = Callable[..., PduLab]


@pytest.fixture()
def make_lab(tmp_path: Path) -> Iterator[MakeLab]:
    with pdu_labs(tmp_path) as make:
        yield make


def client(env: PduLab, access: str = "rw", **kw: object) -> PduClient:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("retries", 0)
    return PduClient(host=env.host, port=env.port, auth=env.auth(access), model=env.model, **kw)  # type: ignore[arg-type]


async def task_run_counts(flow_state: State) -> list[int]:
    """How many times each task of a finished flow run ran (1: no retry)."""
    flow_run_id = flow_state.state_details.flow_run_id
    assert flow_run_id is not None
    async with get_client() as api:
        runs = await api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [run.run_count for run in runs]


def machine_events(env: PduLab, name: str) -> list[tuple[str, str]]:
    return [(e["event"], e["source"]) for e in env.lab.snapshot(name)["events"]]


@flow
async def reboot_flow(
    host: str,
    port: int,
    credentials: str,
    model: str,
    outlet: str,
    mode: RebootMode = "single",
    off_delay_s: float = 5.0,
) -> str:
    return await snmp_reboot(
        host,
        port=port,
        credentials=credentials,
        model=model,
        outlet=outlet,
        mode=mode,
        off_delay_s=off_delay_s,
    )


@flow
async def fast_retry_reboot_flow(
    host: str, port: int, credentials: str, model: str, outlet: str
) -> str:
    task = snmp_reboot.with_options(retry_delay_seconds=0)
    return await task(host, port=port, credentials=credentials, model=model, outlet=outlet)


@flow
async def state_flow(host: str, port: int, credentials: str, model: str, outlet: str) -> str:
    return await pdu_outlet_state(
        host, port=port, credentials=credentials, model=model, outlet=outlet
    )


async def test_apc_reboot_task_takes_the_machine_down_and_back(
    prefect_harness: None, make_lab: MakeLab, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_lab(model="apc", boot_s=4.0)  # down ~0.5 s: plenty for the watcher
    block = await env.save_block("rw")
    caplog.set_level(logging.DEBUG)
    with PingWatch(*env.ping_address(M1)) as ping:
        assert ping.wait_for([True], timeout_s=2)
        done = await reboot_flow(env.host, env.port, block, "apc", env.outlet_of(M1))
        assert ping.wait_for([True, False, True], timeout_s=5), ping.changes
    assert done == "reboot"
    snap = env.lab.snapshot(M1)
    assert snap["cycles"] == 1 and snap["answering"] and snap["powered"]
    assert machine_events(env, M1) == [
        ("cycle", "pdu"), ("down", "machine"), ("on", "cycle"), ("up", "machine"),
    ]  # fmt: skip
    assert machine_events(env, M2) == []  # the other outlet's machine is untouched
    [entry] = env.pdu.sets()
    assert entry["oid"] == ".1.3.6.1.4.1.318.1.1.4.4.2.1.3.1"
    assert (entry["value"], entry["action"], entry["result"]) == ("3", "cycle", "DONE")
    assert "outlet 1 reboot" in caplog.text  # the client's log was captured...
    assert env.rwcommunity not in caplog.text  # ...and holds no community


async def test_sentry3_reboot_in_one_set_cycles_the_machine_once(
    prefect_harness: None, make_lab: MakeLab
) -> None:
    env = make_lab(model="sentry3", outlets={"AA1": M2, "AB2": M1}, boot_s=4.0)
    block = await env.save_block("rw")
    with PingWatch(*env.ping_address(M1)) as ping:
        assert ping.wait_for([True], timeout_s=2)
        done = await reboot_flow(env.host, env.port, block, "sentry3", "AB2")  # mode "single"
        assert ping.wait_for([True, False, True], timeout_s=5), ping.changes
    assert done == "reboot"
    # One SET: outletControlAction of tower A, infeed B, outlet 2 = reboot(3).
    [entry] = env.pdu.sets()
    assert entry["oid"] == ".1.3.6.1.4.1.1718.3.2.3.1.11.1.2.2"
    assert (entry["outlet"], entry["machine"]) == ("AB2", M1)
    assert (entry["value"], entry["action"], entry["result"]) == ("3", "cycle", "DONE")
    # The PDU cut the power and restored it by itself: one reboot, from the PDU.
    assert machine_events(env, M1) == [
        ("cycle", "pdu"), ("down", "machine"), ("on", "cycle"), ("up", "machine"),
    ]  # fmt: skip
    snap = env.lab.snapshot(M1)
    assert snap["cycles"] == 1 and snap["answering"] and snap["powered"]
    assert machine_events(env, M2) == []  # the other outlet's machine is untouched
    async with client(env, "ro") as pdu:  # outletStatus reads on(1) again
        assert await pdu.outlet_state("AB2") == "on"


async def test_sentry3_off_on_reboot_of_a_tower_outlet(
    prefect_harness: None, make_lab: MakeLab
) -> None:
    env = make_lab(model="sentry3", outlets={"AA1": M1, "BA2": M2}, boot_s=4.0)
    block = await env.save_block("rw")
    with PingWatch(*env.ping_address(M2)) as ping:
        assert ping.wait_for([True], timeout_s=2)
        done = await reboot_flow(
            env.host, env.port, block, "sentry3", "BA2", mode="off_on", off_delay_s=0.3
        )
        assert ping.wait_for([True, False, True], timeout_s=5), ping.changes
    assert done == "off_on"
    off, on = env.pdu.sets()
    control = ".1.3.6.1.4.1.1718.3.2.3.1.11.2.1.2"  # tower B=2, infeed A=1, outlet 2
    assert (off["oid"], off["value"], off["action"]) == (control, "2", "off")
    assert (on["oid"], on["value"], on["action"]) == (control, "1", "on")
    assert on["t"] - off["t"] >= 0.3
    events = machine_events(env, M2)
    assert events[:2] == [("off", "pdu"), ("down", "machine")]
    assert events[2:] == [("on", "pdu"), ("up", "machine")]
    assert env.lab.snapshot(M2)["cycles"] == 1
    assert machine_events(env, M1) == []


async def test_outlet_state_follows_the_machine_power(
    prefect_harness: None, make_lab: MakeLab
) -> None:
    apc = make_lab(model="apc")
    block = await apc.save_block("ro")  # reading needs only the read-only community
    assert await state_flow(apc.host, apc.port, block, "apc", "2") == "on"
    apc.lab.act(M2, "off")
    assert await state_flow(apc.host, apc.port, block, "apc", "2") == "off"
    assert await state_flow(apc.host, apc.port, block, "apc", "1") == "on"

    sentry = make_lab(model="sentry3", outlets={"AA1": M1, "AB3": None})
    async with client(sentry, "v3") as pdu:  # SNMPv3 authPriv
        assert await pdu.outlet_state("AA1") == "on"
        sentry.lab.act(M1, "off")
        assert await pdu.outlet_state("AA1") == "off"
        await pdu.set_outlet("AA1", "on")
        assert await pdu.outlet_state("AA1") == "on"
        assert await pdu.outlet_state("AB3") == "on"  # nothing plugged in, still switchable
        await pdu.set_outlet("AB3", "off")
        assert await pdu.outlet_state("AB3") == "off"
    assert sentry.lab.snapshot(M1)["powered"]


async def test_task_switches_an_off_outlet_on_instead_of_cycling(
    prefect_harness: None, make_lab: MakeLab
) -> None:
    env = make_lab(model="apc", machines=1)
    block = await env.save_block("v3")
    env.lab.act(M1, "off")
    done = await reboot_flow(env.host, env.port, block, "apc", "1")
    assert done == "on (outlet was off)"
    assert [s["action"] for s in env.pdu.sets()] == ["on"]
    env.lab.wait_answering(M1, True, timeout_s=5)


async def test_wrong_community_fails_fast_clearly_and_touches_nothing(
    prefect_harness: None, make_lab: MakeLab, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_lab(model="apc", machines=1)
    wrong = "wrong-" + env.rwcommunity  # the agent drops it: no answer at all
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    async with PduClient(
        host=env.host, port=env.port, auth=V2cAuth(community=wrong), model="apc",
        timeout=0.3, retries=0,
    ) as pdu:  # fmt: skip
        with pytest.raises(TransportError) as caught:
            await pdu.reboot("1")
    assert time.monotonic() - started < 10  # gave up after its 0.3 s timeout, no hang
    assert "no answer (wrong community or unreachable)" in str(caught.value)
    assert caught.value.retryable

    name = "pdu-wrong-community"
    await SnmpCredentials(community=SecretStr(wrong), timeout=0.3, retries=0).asave(
        name, overwrite=True
    )
    state = await fast_retry_reboot_flow(env.host, env.port, name, "apc", "1", return_state=True)
    assert await task_run_counts(state) == [2]  # no answer is transient: retried once
    with pytest.raises(TransportError) as by_task:
        await state.aresult()
    assert "Retry 1/1" in caplog.text  # Prefect's task log was captured
    for text in (str(caught.value), repr(caught.value), str(by_task.value), caplog.text):
        assert wrong not in text and env.rwcommunity not in text
    assert machine_events(env, M1) == [] and env.pdu.sets() == []


async def test_read_only_community_cannot_switch(prefect_harness: None, make_lab: MakeLab) -> None:
    env = make_lab(model="sentry3", machines=1)
    async with client(env, "ro") as pdu:
        assert await pdu.outlet_state("AA1") == "on"  # reading is allowed
        with pytest.raises(AuthError) as caught:
            await pdu.set_outlet("AA1", "reboot")
    assert caught.value.code == "noAccess" and not caught.value.retryable
    assert env.rocommunity not in str(caught.value)
    async with client(env, "rw") as pdu:  # notWritable, because there is no such outlet
        with pytest.raises(NotFoundError, match="no such outlet"):
            await pdu.set_outlet("AA9", "off")

    block = await env.save_block("ro")
    state = await reboot_flow(env.host, env.port, block, "sentry3", "AA1", return_state=True)
    assert await task_run_counts(state) == [1]  # never retried
    with pytest.raises(AuthError):
        await state.aresult()
    assert machine_events(env, M1) == [] and env.pdu.sets() == []


async def test_bad_outlets_are_refused_before_any_packet() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.2)
        port = sink.getsockname()[1]
        bad = [("apc", "AA1"), ("apc", "0"), ("apc", "-1"), ("sentry3", "1"), ("sentry3", "aa1"),
               ("sentry3", "AA0"), ("sentry3", "A1"), ("sentry3", "AAA1")]  # fmt: skip
        for model, outlet in bad:
            auth = V2cAuth(community="unused-community")
            async with PduClient(host="127.0.0.1", port=port, auth=auth, model=model) as pdu:
                for call in (pdu.reboot(outlet), pdu.outlet_state(outlet)):
                    with pytest.raises(PreconditionError, match="outlet"):
                        await call
                with pytest.raises(PreconditionError, match="mode"):
                    await pdu.reboot("1" if model == "apc" else "AA1", mode="twice")  # type: ignore[arg-type]
        with pytest.raises(socket.timeout):
            sink.recv(2048)  # nothing was ever sent
    with pytest.raises(PreconditionError, match="unknown PDU model"):
        PduClient(host="127.0.0.1", auth=V2cAuth(community="x"), model="raritan")


async def test_bad_outlet_through_the_task_is_not_retried(
    prefect_harness: None, make_lab: MakeLab
) -> None:
    env = make_lab(model="apc", machines=1)
    block = await env.save_block("rw")
    with pytest.raises(PreconditionError, match="APC outlets are positive integers"):
        await reboot_flow(env.host, env.port, block, "apc", "AA1")
    assert env.pdu.sets() == [] and machine_events(env, M1) == []


async def test_v3_wrong_keys_and_users_are_auth_errors(make_lab: MakeLab) -> None:
    env = make_lab(model="apc", machines=1)
    user = env.v3_user
    for auth, code in [
        (V3Auth(user=user.name, auth_key="not-the-key", priv_key=user.priv_key), "WrongDigest"),
        (V3Auth(user="nobody", auth_key=user.auth_key, priv_key=user.priv_key), "UnknownUserName"),
    ]:
        async with PduClient(
            host=env.host, port=env.port, auth=auth, model="apc", timeout=1, retries=0
        ) as pdu:
            with pytest.raises(AuthError) as caught:
                await pdu.reboot("1")
        assert caught.value.code == code
        assert user.auth_key not in str(caught.value)
    async with client(env, "v3") as pdu:
        await pdu.reboot("1")
    assert [s["action"] for s in env.pdu.sets()] == ["cycle"]


async def test_the_lab_pdu_serves_walks(make_lab: MakeLab) -> None:
    env = make_lab(model="apc", outlets={1: M1, 2: M2, 8: None})
    engine = hlapi.SnmpEngine()
    try:
        target = await hlapi.UdpTransportTarget.create((env.host, env.port), timeout=1, retries=0)
        rows = []
        async for err, status, _i, binds in hlapi.walk_cmd(
            engine, hlapi.CommunityData(env.rocommunity, mpModel=1), target, hlapi.ContextData(),
            hlapi.ObjectType(hlapi.ObjectIdentity("1.3.6.1.4.1.318.1.1.4.4.2.1")),
            lookupMib=False, lexicographicMode=False,
        ):  # fmt: skip
            assert err is None and not int(status)
            rows += [(str(oid), value.prettyPrint()) for oid, value in binds]
    finally:
        engine.close_dispatcher()
    base = "1.3.6.1.4.1.318.1.1.4.4.2.1"
    assert rows == [
        (f"{base}.1.1", "1"), (f"{base}.1.2", "2"), (f"{base}.1.8", "8"),
        (f"{base}.3.1", "1"), (f"{base}.3.2", "1"), (f"{base}.3.8", "1"),
        (f"{base}.4.1", M1), (f"{base}.4.2", M2), (f"{base}.4.8", ""),
    ]  # fmt: skip


def test_profiles_and_block_validation() -> None:
    assert APC.control_oid(12) == "1.3.6.1.4.1.318.1.1.4.4.2.1.3.12"
    assert SENTRY3.control_oid("CB7") == "1.3.6.1.4.1.1718.3.2.3.1.11.3.2.7"
    assert SENTRY3.status_oid("AA1") == "1.3.6.1.4.1.1718.3.2.3.1.5.1.1.1"
    with pytest.raises(ValidationError, match="community"):
        SnmpCredentials(version="2c")
    auth_key, priv_key = SecretStr("secret-auth"), SecretStr("secret-priv")
    with pytest.raises(ValidationError, match="user"):
        SnmpCredentials(version="3", auth_key=auth_key)
    with pytest.raises(ValidationError, match="auth_key"):
        SnmpCredentials(version="3", user="ops", priv_key=priv_key)
    creds = SnmpCredentials(version="3", user="ops", auth_key=auth_key, priv_key=priv_key)
    pdu = creds.get_client("127.0.0.1", port=1161, model="sentry3")
    assert "secret" not in repr(creds) + repr(pdu) + repr(creds.auth())
    assert pdu.profile is SENTRY3 and pdu.target == "udp:127.0.0.1:1161"
    with pytest.raises(PreconditionError):
        asyncio.run(pdu.reboot("AA1", off_delay_s=-1))
