"""VSphereClient against a real vcsim (govmomi simulator built from Debian's sources)."""

from __future__ import annotations

import re
import ssl
import time
from pathlib import Path

import pytest

from clients.errors import (
    AuthError,
    DeadlineExceeded,
    JobFailedError,
    NotFoundError,
    PreconditionError,
    TlsError,
    TransportError,
)
from clients.vsphere import MaintenanceOptions, VSphereClient, service_tag_of
from lab.vcsim import Vcsim, VcsimBuildError, VcsimCluster, VcsimHost, VcsimSpec, build_vcsim
from tests.helpers import free_port
from tests.soap_recorder import SoapRecorder


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    try:
        return build_vcsim()
    except VcsimBuildError as exc:
        pytest.skip(f"vcsim cannot be built here: {exc}")


def _spec() -> VcsimSpec:
    return VcsimSpec(
        clusters=[
            VcsimCluster(
                name="prod-a",
                hosts=[
                    VcsimHost(name="esx-a1.lab", service_tag="8CYCZ23", model="PowerEdge R640"),
                    VcsimHost(name="esx-a2.lab", service_tag="4HXKT53", model="PowerEdge R750"),
                    VcsimHost(name="esx-a3.lab", service_tag="", serial_number="j7pq2x3"),
                ],
            )
        ],
        hosts=[
            VcsimHost(
                name="esx-solo.lab", service_tag="", esxi_version="8.0.2", esxi_build="22380479"
            )
        ],
    )


@pytest.fixture()
def vc(vcsim_binary: Path, tmp_path: Path):
    with Vcsim(spec=_spec(), state_dir=tmp_path / "vcsim", binary=vcsim_binary) as running:
        yield running


def _client(vc: Vcsim, **kw) -> VSphereClient:
    kw.setdefault("verify", vc.ssl_context())
    kw.setdefault("interval_s", 0.05)
    kw.setdefault("password", vc.password)
    kw.setdefault("host", vc.host)
    kw.setdefault("port", vc.port)
    return VSphereClient(user=vc.username, timeout=10, **kw)


def test_hosts_carry_dell_identity_cluster_and_version(vc: Vcsim) -> None:
    with _client(vc) as client:
        hosts = {h.name: h for h in client.hosts()}

    assert sorted(hosts) == ["esx-a1.lab", "esx-a2.lab", "esx-a3.lab", "esx-solo.lab"]
    a1 = hosts["esx-a1.lab"]
    assert (a1.service_tag, a1.serial_number, a1.vendor, a1.model) == (
        "8CYCZ23",
        "8CYCZ23",
        "Dell Inc.",
        "PowerEdge R640",
    )
    assert (a1.cluster, a1.moid) == ("prod-a", vc.host_moids["esx-a1.lab"])
    assert a1.cluster_moid == vc.cluster_moids["prod-a"]
    assert (a1.esxi_version, a1.build, a1.connection_state) == ("7.0.3", "21930508", "connected")
    assert a1.in_maintenance is False
    # No ServiceTag entry: the serial number stands in (upper-cased).
    assert hosts["esx-a3.lab"].service_tag == "J7PQ2X3"
    solo = hosts["esx-solo.lab"]
    assert (solo.cluster, solo.service_tag, solo.esxi_version) == (None, None, "8.0.2")


def test_enter_and_exit_maintenance_wait_for_the_task(vc: Vcsim) -> None:
    vc.set_host("esx-a1.lab", enter_mm_delay_s=0.6, exit_mm_delay_s=0.3)
    moid = vc.host_moids["esx-a1.lab"]
    with _client(vc) as client:
        started = time.monotonic()
        assert client.enter_maintenance(moid, timeout_s=10) is True
        assert time.monotonic() - started >= 0.6  # it waited for the task, not just the call
        assert vc.host_state("esx-a1.lab")["in_maintenance"] is True
        assert client.cluster_unavailable("prod-a") == ["esx-a1.lab"]
        # Check-then-act: already there, nothing sent.
        assert client.enter_maintenance(moid, timeout_s=10) is False

        assert client.exit_maintenance(moid, timeout_s=10) is True
        assert vc.host_state("esx-a1.lab")["in_maintenance"] is False
        assert client.exit_maintenance(moid, timeout_s=10) is False
        assert client.cluster_unavailable("prod-a") == []


def test_slow_enter_hits_the_deadline_and_the_host_stays_out(vc: Vcsim) -> None:
    vc.set_host("esx-a2.lab", enter_mm_delay_s=30)
    moid = vc.host_moids["esx-a2.lab"]
    with _client(vc) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.enter_maintenance(moid, timeout_s=1)
        assert time.monotonic() - started < 5
        assert "enter maintenance mode on esx-a2.lab" in str(caught.value)
        assert client.host(moid).in_maintenance is False
    assert vc.host_state("esx-a2.lab")["in_maintenance"] is False


def _enter_request(sent: bytes) -> str:
    """The EnterMaintenanceMode_Task request among the recorded bytes, its attributes dropped."""
    text = sent.decode()
    body = text[
        text.index("<EnterMaintenanceMode_Task") : text.index("</EnterMaintenanceMode_Task>")
    ]
    return re.sub(r"<(\w+)[^>]*>", r"<\1>", body)


def test_evacuation_options_reach_vcenter(vc: Vcsim) -> None:
    moid = vc.host_moids["esx-a1.lab"]
    with SoapRecorder(vc) as recorder:
        with _client(vc, host=recorder.host, port=recorder.port) as client:
            # Default: what rackflow always sent (no maintenanceSpec; vCenter's vSAN default).
            assert client.enter_maintenance(moid, timeout_s=10) is True
            request = _enter_request(recorder.sent())
            assert "<evacuatePoweredOffVms>false</evacuatePoweredOffVms>" in request
            assert "maintenanceSpec" not in request
            assert client.exit_maintenance(moid, timeout_s=10) is True

            recorder.clear()
            options = MaintenanceOptions(evacuate_powered_off_vms=True, vsan_mode="evacuateAllData")
            assert client.enter_maintenance(moid, timeout_s=10, options=options) is True
            request = _enter_request(recorder.sent())
    assert "<evacuatePoweredOffVms>true</evacuatePoweredOffVms>" in request
    assert (
        "<maintenanceSpec><vsanMode><objectAction>evacuateAllData</objectAction></vsanMode>"
        in request
    )
    # vcsim decoded the spec and ran the task
    assert vc.host_state("esx-a1.lab")["in_maintenance"] is True


def test_maintenance_options_refuse_an_unknown_vsan_mode() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        MaintenanceOptions(vsan_mode="evacuateEverything")
    assert MaintenanceOptions() == MaintenanceOptions(
        evacuate_powered_off_vms=False, vsan_mode=None
    )


def test_task_faults_map_to_rackflow_errors(vc: Vcsim) -> None:
    vc.set_host("esx-a1.lab", enter_mm_fault="InsufficientResourcesFault")
    vc.set_host("esx-a2.lab", connection_state="notResponding")
    with _client(vc) as client:
        with pytest.raises(JobFailedError) as failed:
            client.enter_maintenance(vc.host_moids["esx-a1.lab"], timeout_s=5)
        assert failed.value.state == "error"
        assert "InsufficientResourcesFault" in failed.value.messages[0]
        # vCenter refuses maintenance on a host it cannot reach.
        with pytest.raises(PreconditionError, match="connection state"):
            client.enter_maintenance(vc.host_moids["esx-a2.lab"], timeout_s=5)
        with pytest.raises(NotFoundError):
            client.host("host-999999")
    assert vc.host_state("esx-a1.lab")["in_maintenance"] is False


def test_wait_connected_follows_a_reconnect_and_has_a_deadline(vc: Vcsim) -> None:
    vc.set_host("esx-a3.lab", connection_state="notResponding", reconnect_after_s=0.8)
    moid = vc.host_moids["esx-a3.lab"]
    with _client(vc) as client:
        assert client.host(moid).connection_state == "notResponding"
        assert "esx-a3.lab" in client.cluster_unavailable("prod-a")
        host = client.wait_connected(moid, timeout_s=10)
        assert host.connection_state == "connected"

        vc.set_host("esx-a3.lab", connection_state="disconnected")
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.wait_connected(moid, timeout_s=0.5)
        assert 0.5 <= time.monotonic() - started < 10  # waited its timeout, then gave up


def test_wrong_password_is_an_auth_error(vc: Vcsim) -> None:
    with pytest.raises(AuthError) as caught:
        _client(vc, password="not-the-password").connect()
    assert caught.value.code == "InvalidLogin"
    assert "not-the-password" not in str(caught.value)


def test_untrusted_certificate_is_a_tls_error(vc: Vcsim) -> None:
    with pytest.raises(TlsError):
        _client(vc, verify=ssl.create_default_context()).connect()
    # Verification off is explicit, and then it connects.
    with _client(vc, verify=False) as client:
        assert len(client.hosts()) == 4


def test_nothing_listening_is_a_transport_error() -> None:
    client = VSphereClient(
        host="127.0.0.1", port=free_port(), user="u", password="p", verify=False, timeout=2
    )
    with pytest.raises(TransportError) as caught:
        client.connect()
    assert caught.value.retryable is True


def test_service_tag_prefers_service_tag_then_serial_then_enclosure() -> None:
    from pyVmomi import vim

    def info(serial: str, **ids: str):
        return vim.host.SystemInfo(
            vendor="Dell Inc.",
            model="PowerEdge R640",
            uuid="x",
            serialNumber=serial,
            otherIdentifyingInfo=[
                vim.host.SystemIdentificationInfo(
                    identifierValue=value,
                    identifierType=vim.ElementDescription(key=key, label=key, summary=key),
                )
                for key, value in ids.items()
            ],
        )

    assert service_tag_of(info("SERIAL1", ServiceTag="tag0001")) == "TAG0001"
    assert service_tag_of(info("serial1", AssetTag="x")) == "SERIAL1"
    assert service_tag_of(info("", EnclosureSerialNumberTag="ENC0001")) == "ENC0001"
    assert service_tag_of(info("Not Specified", ServiceTag=" ")) is None
    assert service_tag_of(None) is None


def test_vcsim_rejects_a_bad_spec_change(vc: Vcsim) -> None:
    from lab.vcsim import VcsimError

    with pytest.raises(VcsimError, match="400"):
        vc.set_host("esx-a1.lab", enter_mm_fault="NoSuchFault")
    with pytest.raises(VcsimError, match="404"):
        vc.set_host("no-such-host", in_maintenance=True)
