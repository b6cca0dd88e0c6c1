"""Restarting VMs through XenAPI (the real ``XenAPI`` package) against the lab's fake XAPI."""

from __future__ import annotations

import logging
import time

import pytest
from prefect import flow

from clients.errors import AuthError, NotFoundError, TlsError, TransportError
from clients.xen import XenClient
from lab.machines.xen_fake import CLEAN_FAULT
from tasks.xen import xenapi_reboot
from tests.helpers import free_port

pytest_plugins = ["tests.ilo_xen_lab"]  # the ilo_xen fixture


@flow(name="test-xen-reboot")
async def reboot_flow(vm_uuid: str, credentials: str, shutdown_timeout_s: float) -> str:
    return await xenapi_reboot(
        vm_uuid, credentials=credentials, shutdown_timeout_s=shutdown_timeout_s
    )


async def test_reboot_vm_takes_the_machine_down_and_up(prefect_harness, ilo_xen, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    name = ilo_xen.names[0]
    vm = ilo_xen.xen.vm_uuids[name]
    await ilo_xen.xen_credentials().asave("xen-lab", overwrite=True)
    before = ilo_xen.snapshot(name)

    how = await reboot_flow(vm, "xen-lab", shutdown_timeout_s=5.0)

    assert how == "clean shutdown, start"
    await ilo_xen.wait_cycle(name, before["cycles"])
    events = ilo_xen.events(name, len(before["events"]))
    assert events == [
        ("soft", "xen"),
        ("down", "machine"),
        ("on", "xen"),
        ("up", "machine"),
    ]
    xen = ilo_xen.xen
    assert (xen.logins, xen.logouts, xen.open_sessions) == (1, 1, 0)
    assert ilo_xen.snapshot(ilo_xen.names[1])["cycles"] == 0
    assert ilo_xen.xen_password not in caplog.text


async def test_hanging_clean_shutdown_falls_back_to_hard(ilo_xen) -> None:
    name = ilo_xen.names[1]
    vm = ilo_xen.xen.vm_uuids[name]
    ilo_xen.set_faults(name, CLEAN_FAULT)
    started = time.monotonic()

    with ilo_xen.xen_credentials().get_client() as xen:
        how = xen.reboot_vm(vm, shutdown_timeout_s=0.3)
        assert not xen.logged_in

    assert how.startswith("hard shutdown (clean shutdown failed: ")
    assert "timed out" in how and how.endswith(", start")
    assert time.monotonic() - started >= 0.3
    await ilo_xen.wait_cycle(name, 0)
    assert ilo_xen.events(name)[:4] == [
        ("soft ignored", CLEAN_FAULT),
        ("off", "xen"),
        ("down", "machine"),
        ("on", "xen"),
    ]
    assert ilo_xen.xen.open_sessions == 0


async def test_clean_shutdown_timeout_error_falls_back_to_hard(ilo_xen) -> None:
    name = ilo_xen.names[0]
    vm = ilo_xen.xen.vm_uuids[name]
    ilo_xen.set_faults(name, CLEAN_FAULT)
    ilo_xen.xen.clean_shutdown_timeout_s = 2.0  # lab seconds: 0.2 s here, before our 5 s

    with ilo_xen.xen_credentials().get_client() as xen:
        how = xen.reboot_vm(vm, shutdown_timeout_s=5.0)

    assert how == "hard shutdown (clean shutdown failed: VM_SHUTDOWN_TIMEOUT), start"
    await ilo_xen.wait_cycle(name, 0)
    assert ("off", "xen") in ilo_xen.events(name)
    assert ilo_xen.xen.open_sessions == 0


async def test_halted_vm_is_only_started(ilo_xen) -> None:
    name = ilo_xen.names[0]
    ilo_xen.lab.act(name, "off")
    with ilo_xen.xen_credentials().get_client() as xen:
        assert xen.power_state(ilo_xen.xen.vm_uuids[name]) == "Halted"
        how = xen.reboot_vm(ilo_xen.xen.vm_uuids[name], shutdown_timeout_s=1.0)
    assert how == "was halted, start"
    await ilo_xen.wait_cycle(name, 0)
    assert ilo_xen.xen.open_sessions == 0


async def test_wrong_password_is_auth_error_and_leaves_no_session(
    prefect_harness, ilo_xen, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    name = ilo_xen.names[0]
    wrong = "wrong-" + ilo_xen.xen_password
    await ilo_xen.xen_credentials(password=wrong).asave("xen-wrong", overwrite=True)
    before = ilo_xen.snapshot(name)

    with pytest.raises(AuthError) as caught:
        await reboot_flow(ilo_xen.xen.vm_uuids[name], "xen-wrong", shutdown_timeout_s=1.0)

    assert caught.value.code == "SESSION_AUTHENTICATION_FAILED"
    assert ilo_xen.xen.calls == ["session.login_with_password"]  # not retried
    assert ilo_xen.xen.open_sessions == 0 and ilo_xen.xen.logins == 0
    assert ilo_xen.snapshot(name)["events"] == before["events"]
    assert wrong not in str(caught.value) and wrong not in caplog.text


async def test_unknown_vm_uuid_is_not_found_and_logs_out(ilo_xen) -> None:
    missing = "00000000-1111-2222-3333-444444444444"
    with ilo_xen.xen_credentials().get_client() as xen:
        with pytest.raises(NotFoundError) as caught:
            xen.reboot_vm(missing, shutdown_timeout_s=1.0)
    assert caught.value.code == "UUID_INVALID"
    assert missing in str(caught.value)
    xen_peer = ilo_xen.xen
    assert (xen_peer.logins, xen_peer.logouts, xen_peer.open_sessions) == (1, 1, 0)
    assert all(s["cycles"] == 0 for s in map(ilo_xen.snapshot, ilo_xen.names))


async def test_https_pool_master_verified_against_the_lab_ca(ilo_xen_tls) -> None:
    lab = ilo_xen_tls
    name = lab.names[0]
    assert lab.xen.url.startswith("https://")
    with lab.xen_credentials().get_client() as xen:
        how = xen.reboot_vm(lab.xen.vm_uuids[name], shutdown_timeout_s=5.0)
    assert how == "clean shutdown, start"
    await lab.wait_cycle(name, 0)

    untrusted = lab.xen_credentials()
    untrusted.ca_bundle = None  # system store: the lab CA is not in it
    with untrusted.get_client() as xen, pytest.raises(TlsError):
        xen.reboot_vm(lab.xen.vm_uuids[name], shutdown_timeout_s=1.0)
    assert lab.xen.open_sessions == 0 and lab.xen.logins == 1


def test_unreachable_pool_master_is_transport_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with XenClient(url=url, username="root", password="x-secret", timeout_s=2.0) as xen:
        with pytest.raises(TransportError) as caught:
            xen.power_state("00000000-1111-2222-3333-444444444444")
    assert caught.value.retryable and "x-secret" not in str(caught.value)
