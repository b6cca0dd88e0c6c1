"""Rebooting through HPE iLO (Redfish over HTTPS) against the lab's iLO personality."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from prefect import flow

from clients.errors import AuthError, PreconditionError, RemoteError, TlsError
from clients.ilo import FINISHED_POST, IloClient
from lab.machines.ilo import GRACEFUL_FAULT
from tasks.ilo import ilo_reboot

if TYPE_CHECKING:
    from tests.ilo_xen_lab import IloXenLab

pytest_plugins = ["tests.ilo_xen_lab"]  # the ilo_xen fixture


@flow(name="test-ilo-reboot")
async def reboot_flow(address: str, port: int, credentials: str, force_after_s: float) -> str:
    return await ilo_reboot(
        address, port=port, credentials=credentials, force_after_s=force_after_s, poll_s=0.02
    )


def _client(lab: IloXenLab, name: str, **kw) -> IloClient:
    address, port = lab.ilo.endpoints[name]
    return lab.ilo_credentials(**kw).get_client(address, port=port)


async def test_graceful_restart_reboots_the_machine(prefect_harness, ilo_xen, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    name = ilo_xen.names[0]
    address, port = ilo_xen.ilo.endpoints[name]
    await ilo_xen.ilo_credentials().asave("ilo-lab", overwrite=True)
    before = ilo_xen.snapshot(name)

    how = await reboot_flow(address, port, "ilo-lab", force_after_s=5.0)

    assert how == "GracefulRestart"
    await ilo_xen.wait_cycle(name, before["cycles"])
    after = ilo_xen.snapshot(name)
    assert after["cycles"] == before["cycles"] + 1
    events = ilo_xen.events(name, len(before["events"]))
    assert events[:3] == [("reboot", "ilo"), ("down", "machine"), ("up", "machine")]
    bmc = ilo_xen.ilo.bmc(name)
    assert bmc.resets == ["GracefulRestart"]
    assert bmc.sessions == {}  # logged out
    # The other machine was not touched.
    assert ilo_xen.snapshot(ilo_xen.names[1])["cycles"] == 0
    assert ilo_xen.ilo_password not in caplog.text


async def test_ignored_graceful_restart_is_forced(ilo_xen) -> None:
    name = ilo_xen.names[1]
    ilo_xen.set_faults(name, GRACEFUL_FAULT)
    before = ilo_xen.snapshot(name)
    started = time.monotonic()

    async with _client(ilo_xen, name) as ilo:
        how = await ilo.reboot(force_after_s=0.4, poll_s=0.02)

    assert how == "ForceRestart"
    assert time.monotonic() - started >= 0.4
    await ilo_xen.wait_cycle(name, before["cycles"])
    events = ilo_xen.events(name, len(before["events"]))
    assert events[:2] == [("reboot ignored", GRACEFUL_FAULT), ("reset", "ilo")]
    assert ilo_xen.snapshot(name)["cycles"] == before["cycles"] + 1
    assert ilo_xen.ilo.bmc(name).resets == ["GracefulRestart", "ForceRestart"]


async def test_wrong_password_is_auth_error_and_touches_nothing(
    prefect_harness, ilo_xen, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    name = ilo_xen.names[0]
    address, port = ilo_xen.ilo.endpoints[name]
    wrong = "wrong-" + ilo_xen.ilo_password
    await ilo_xen.ilo_credentials(password=wrong).asave("ilo-wrong", overwrite=True)
    before = ilo_xen.snapshot(name)

    with pytest.raises(AuthError) as caught:
        await reboot_flow(address, port, "ilo-wrong", force_after_s=1.0)

    assert caught.value.status == 401
    assert caught.value.code == "Base.1.4.NoValidSession"
    after = ilo_xen.snapshot(name)
    assert after["events"] == before["events"] and after["cycles"] == before["cycles"]
    bmc = ilo_xen.ilo.bmc(name)
    assert bmc.resets == [] and bmc.logins == 0
    assert bmc.failed_logins == 1  # AuthError is not retried (accounts lock out)
    assert wrong not in str(caught.value) and wrong not in caplog.text


async def test_powered_off_server_is_powered_on(ilo_xen) -> None:
    name = ilo_xen.names[0]
    ilo_xen.lab.act(name, "off")
    async with _client(ilo_xen, name) as ilo:
        assert await ilo.power_state() == "Off"
        assert await ilo.post_state() == "PowerOff"
        how = await ilo.reboot(force_after_s=1.0, poll_s=0.02)
        assert how == "On"
        assert await ilo.post_state() == "InPost"
    await ilo_xen.wait_cycle(name, 0)


async def test_status_reset_types_and_refusals(ilo_xen) -> None:
    name = ilo_xen.names[0]
    async with _client(ilo_xen, name) as ilo:
        status = await ilo.status()
        assert (status.power_state, status.post_state) == ("On", FINISHED_POST)
        with pytest.raises(PreconditionError):
            await ilo.reset("Reboot")  # not an iLO reset type: refused before any request
        with pytest.raises(RemoteError) as caught:
            await ilo.reset("On")  # already on
        assert caught.value.status == 400
        assert caught.value.code == "iLO.2.14.InvalidOperationForSystemState"
        await ilo.reset("ForceOff")
        assert await ilo.status() == type(status)(power_state="Off", post_state="PowerOff")
        with pytest.raises(RemoteError):
            await ilo.reset("ForceRestart")  # nothing to restart while off
    assert ilo_xen.events(name)[-2:] == [("off", "ilo"), ("down", "machine")]


async def test_basic_auth_and_ilo_error_bodies(ilo_xen) -> None:
    name = ilo_xen.names[0]
    address, port = ilo_xen.ilo.endpoints[name]
    base = f"https://{address}:{port}"
    async with httpx.AsyncClient(verify=ilo_xen.ilo_credentials().ssl_context()) as http:
        root = (await http.get(f"{base}/redfish/v1/")).json()
        assert root["Vendor"] == "HPE" and root["Oem"]["Hpe"]["Manager"][0]["ManagerType"]
        denied = await http.get(f"{base}/redfish/v1/Systems/1/")
        assert denied.status_code == 401
        info = denied.json()["error"]["@Message.ExtendedInfo"][0]
        assert info["MessageId"] == "Base.1.4.NoValidSession"
        basic = await http.get(
            f"{base}/redfish/v1/Systems/1", auth=(ilo_xen.ilo_user, ilo_xen.ilo_password)
        )
        assert basic.json()["Oem"]["Hpe"]["PostState"] == FINISHED_POST


async def test_untrusted_certificate_is_tls_error(ilo_xen) -> None:
    name = ilo_xen.names[0]
    address, port = ilo_xen.ilo.endpoints[name]
    creds = ilo_xen.ilo_credentials()
    creds.ca_bundle = None  # system store: the lab CA is not in it
    async with creds.get_client(address, port=port) as ilo:
        with pytest.raises(TlsError):
            await ilo.status()
    assert ilo_xen.ilo.bmc(name).logins == 0
