"""The vCenter maintenance window: whose maintenance it is, hosts that do not come back,
evacuation options. Lab iDRACs + lab repository + a real vcsim."""

from __future__ import annotations

import logging

from prefect import flow

from blocks import VCenterCredentials
from clients.inventory import Inventory
from clients.vsphere import MaintenanceOptions, VSphereClient
from flows.firmware_update import rolling_firmware_update
from flows.maintenance_window import NOT_BACK, maintenance_window
from flows.rollout import rollout_options
from tests.fw_env import FAST, faults
from tests.soap_recorder import SoapRecorder


async def _rollout(env, targets, **kw):
    state = await rolling_firmware_update(
        source=env.source(),
        targets=targets,
        components=["bios"],
        credentials_block=env.names["redfish"],
        vcenter_block=env.names["vcenter"],
        inventory_block=env.names["inventory"],
        deadlines=kw.pop("deadlines", FAST),
        lease_wait_s=120,
        return_state=True,
        **kw,
    )
    return state, await state.result(raise_on_failure=False)


def _rows(summary):
    return {(r.server, r.component): r for r in summary.rows}


def _operator_enters_maintenance(env, host: str) -> None:
    """What an operator does in the vSphere client: straight to vCenter, no rackflow."""
    vc = env.vc
    with VSphereClient(
        host=vc.host, port=vc.port, user=vc.username, password=vc.password, verify=vc.ssl_context()
    ) as client:
        assert client.enter_maintenance(vc.host_moids[host], timeout_s=30) is True


async def test_a_host_an_operator_put_in_maintenance_stays_there(env_factory, caplog):
    caplog.set_level(logging.INFO)
    env = await env_factory(count=1, cluster_size=1)
    tag = env.tags[0]
    host = env.host_of[tag]
    _operator_enters_maintenance(env, host)
    assert env.in_maintenance() == {host}

    state, summary = await _rollout(env, [tag])

    assert state.is_completed(), state.message
    assert env.bmc(tag).bios_version == env.target("bios")  # the update went ahead
    assert _rows(summary)[(tag, "bios")].result == "updated"
    assert env.in_maintenance() == {host}  # and the operator's maintenance was kept
    assert "pending:maintenance" not in env.record(tag).attributes  # not rackflow's to undo
    assert f"host {host} is already in maintenance mode and rackflow did not put it there" in (
        caplog.text
    )
    assert f"host {host} was already in maintenance mode (not entered by rackflow)" in caplog.text


async def test_a_crashed_runs_note_makes_the_host_rackflows_to_take_out(env_factory):
    env = await env_factory(count=1, cluster_size=1)
    tag = env.tags[0]
    host = env.host_of[tag]
    # An earlier run entered maintenance mode, noted it, and died before leaving.
    _operator_enters_maintenance(env, host)
    with Inventory(url=env.inventory_url) as inventory:
        inventory.annotate(
            tag, attributes={"pending:maintenance": {"run": "earlier-run", "host": host}}
        )

    state, _ = await _rollout(env, [tag])

    assert state.is_completed(), state.message
    assert env.bmc(tag).bios_version == env.target("bios")
    assert env.in_maintenance() == set()  # rackflow finished what it had started
    assert "pending:maintenance" not in env.record(tag).attributes


async def test_host_that_never_returns_stays_in_maintenance_and_is_reported(env_factory):
    # one host per cluster: the dead host keeps its cluster's only maintenance slot
    env = await env_factory(count=2, faults={0: faults(host_never_returns=True)}, cluster_size=1)
    bad, good = env.tags
    state, summary = await _rollout(
        env,
        env.tags,
        max_failures=2,
        deadlines=FAST.model_copy(update={"host_back_s": 4.0}),
    )
    assert state.is_failed()
    rows = _rows(summary)
    assert rows[(bad, "bios")].result == "failed"
    reported = rows[(bad, "*")]  # the window's error, as the rollout's table shows it
    assert reported.result == "failed"
    head = f"{bad}: host {env.host_of[bad]} {NOT_BACK}"
    assert head in reported.message
    assert NOT_BACK == (
        "did NOT come back: left in maintenance mode on purpose; fix the server, then re-run"
    )
    assert f"{bad} bios: " in reported.message  # the original reason follows
    assert head in (state.message or "")  # and the run's state says it too
    assert "not done after" in reported.message
    assert rows[(good, "bios")].result == "updated"
    assert NOT_BACK not in rows[(good, "bios")].message
    assert env.in_maintenance() == {env.host_of[bad]}
    assert env.record(bad).attributes["pending:maintenance"]["host"] == env.host_of[bad]


async def test_the_window_sends_the_runs_evacuation_options(env_factory):
    env = await env_factory(count=1, cluster_size=1)
    tag = env.tags[0]
    host = env.host_of[tag]
    vc = env.vc
    with SoapRecorder(vc) as recorder:
        await VCenterCredentials(
            host=recorder.host,
            port=recorder.port,
            username=vc.username,
            password=vc.password,
            ca_bundle=str(vc.ca_path),
        ).asave("mw-recorded-vcenter", overwrite=True)

        @flow(name="maintenance-window-options")
        async def window(options: MaintenanceOptions | None) -> tuple[bool, set[str]]:
            server = env.record(tag)
            async with rollout_options(
                [server],
                max_parallel=1,
                credentials_block=env.names["redfish"],
                vcenter_block="mw-recorded-vcenter",
                inventory_block=env.names["inventory"],
                apply_time="OnReset",
                deadlines=FAST,
                max_unavailable_per_cluster=1,
                dry_run=False,
            ) as opts:
                if options is not None:
                    opts.maintenance = options  # the run's setting (RolloutOptions.maintenance)
                async with maintenance_window(server, opts, needed=True) as opened:
                    return opened.entered, env.in_maintenance()

        entered, during = await window(None)
        default = recorder.sent().decode()
        recorder.clear()
        assert (entered, during) == (True, {host})
        assert "<EnterMaintenanceMode_Task" in default and "maintenanceSpec" not in default

        options = MaintenanceOptions(evacuate_powered_off_vms=True, vsan_mode="noAction")
        entered, during = await window(options)
        sent = recorder.sent().decode()
    assert (entered, during) == (True, {host})
    assert env.in_maintenance() == set()  # left again at the end
    assert "evacuateAllData" not in sent
    assert ">noAction</objectAction>" in sent
    assert ">true</evacuatePoweredOffVms>" in sent
