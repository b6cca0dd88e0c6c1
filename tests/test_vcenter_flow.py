"""vcenter-sync and the maintenance-mode tasks: lab iDRACs + discovery + a real vcsim."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from prefect import flow

from blocks import InventoryStore, RedfishCredentials, VCenterCredentials
from clients.errors import DeadlineExceeded, PreconditionError
from clients.inventory import Inventory
from clients.vsphere import MaintenanceOptions
from flows.discovery import discovery
from flows.vcenter_sync import vcenter_sync
from lab.fleet import build_fleet
from lab.server import Lab
from lab.vcsim import Vcsim, VcsimBuildError, VcsimHost, VcsimSpec, build_vcsim
from tasks.vcenter import (
    enter_maintenance_mode,
    exit_maintenance_mode,
    read_host,
    wait_host_connected,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

FLEET = {"subnet": "127.10.41.0/24", "port": 0, "bmcs": [{"count": 6, "model": "R640"}]}


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory, prefect_harness):
    """Six lab iDRACs discovered into a fresh inventory (module-wide, read-only for tests)."""
    password = "lab-" + secrets.token_hex(8)
    fleet = build_fleet({**FLEET, "password": password}, seed=41)
    base = tmp_path_factory.mktemp("vcenter-lab")
    url = f"sqlite:///{base / 'inventory.db'}"
    with Lab(fleet=fleet, state_dir=base / "lab") as lab:
        RedfishCredentials(
            username=fleet.username, password=password, ca_bundle=str(lab.ca_path)
        ).save("vcenter-test-redfish", overwrite=True)
        InventoryStore(url=url).save("vcenter-test-inventory-base", overwrite=True)
        summary = asyncio.run(
            discovery(
                ranges=["127.10.41.1-6"],
                ports=[lab.bmcs[0].port],
                credentials_block="vcenter-test-redfish",
                inventory_block="vcenter-test-inventory-base",
                read_firmware=False,
                resume_minutes=0,
            )
        )
    assert summary.found == 6
    return fleet, base / "inventory.db"


@pytest.fixture()
def inventory_block(lab_inventory, tmp_path) -> str:
    """A private copy of the discovered inventory for one test."""
    _, db = lab_inventory
    copy = tmp_path / "inventory.db"
    copy.write_bytes(db.read_bytes())
    InventoryStore(url=f"sqlite:///{copy}").save("vcenter-test-inventory", overwrite=True)
    return "vcenter-test-inventory"


def _inventory(name: str) -> Inventory:
    store = InventoryStore.load(name)
    return Inventory(url=store.url.get_secret_value())


@pytest.fixture()
def vc(lab_inventory, tmp_path):
    try:
        binary = build_vcsim()
    except VcsimBuildError as exc:
        pytest.skip(f"vcsim cannot be built here: {exc}")
    fleet, _ = lab_inventory
    # Two clusters of three lab servers, plus two hosts the inventory does not know.
    spec = VcsimSpec.from_fleet(fleet, cluster_size=3)
    spec.hosts = [
        VcsimHost(name="esx-foreign.lab", service_tag="ZZZ9999"),
        VcsimHost(name="esx-notag.lab", service_tag=""),
    ]
    with Vcsim(spec=spec, state_dir=tmp_path / "vcsim", binary=binary) as running:
        VCenterCredentials(
            host=running.host,
            port=running.port,
            username=running.username,
            password=running.password,
            ca_bundle=str(running.ca_path),
            poll_interval=0.05,
        ).save("vcenter-test", overwrite=True)
        yield running


def test_sync_links_lab_servers_by_service_tag(lab_inventory, inventory_block, vc) -> None:
    fleet, _ = lab_inventory
    label = f"{vc.host}:{vc.port}"

    report = vcenter_sync(vcenter_block="vcenter-test", inventory_block=inventory_block)

    assert report.hosts == 8 and report.linked == 6
    assert sorted(report.new) == sorted(b.host_name for b in fleet.bmcs)
    assert {u.name: u.reason for u in report.unmatched} == {
        "esx-foreign.lab": "no server with service tag ZZZ9999 in the inventory",
        "esx-notag.lab": "host reports no service tag",
    }
    first = fleet.bmcs[0]
    with _inventory(inventory_block) as inventory:
        record = inventory.get(first.service_tag)
        stored = {h.name: h for h in inventory.esxi_hosts(label)}
    assert record is not None and record.vcenter_host == first.host_name
    # Every host is stored, the unmatched ones too (unlinked).
    assert len(stored) == 8 and not any(h.gone for h in stored.values())
    assert stored[first.host_name].server_identity == first.service_tag
    assert stored[first.host_name].moid == vc.host_moids[first.host_name]
    assert stored["esx-foreign.lab"].server_identity is None
    assert stored["esx-foreign.lab"].service_tag == "ZZZ9999"
    assert stored["esx-notag.lab"].server_identity is None
    assert record.attributes["vcenter"] == {
        "server": label,
        "name": first.host_name,
        "moid": vc.host_moids[first.host_name],
        "cluster": "cluster-01",
        "version": "7.0.3",
        "build": "21930508",
        "connection_state": "connected",
        "maintenance": False,
    }

    # Nothing changed in vCenter: nothing changes in the inventory.
    again = vcenter_sync(vcenter_block="vcenter-test", inventory_block=inventory_block)
    assert (again.new, again.updated, len(again.unchanged)) == ([], [], 6)

    vc.set_host(first.host_name, in_maintenance=True)
    third = vcenter_sync(vcenter_block="vcenter-test", inventory_block=inventory_block)
    assert third.updated == [first.host_name]
    with _inventory(inventory_block) as inventory:
        assert inventory.get(first.service_tag).attributes["vcenter"]["maintenance"] is True


@flow
def _enter(host: str, max_unavailable: int, timeout_s: float = 30.0):
    return enter_maintenance_mode(
        host, "vcenter-test", max_unavailable_per_cluster=max_unavailable, timeout_s=timeout_s
    )


@flow
def _exit(host: str):
    return exit_maintenance_mode(host, "vcenter-test", timeout_s=30.0)


def test_maintenance_by_service_tag_respects_cluster_capacity(lab_inventory, vc) -> None:
    fleet, _ = lab_inventory
    a, b, c = fleet.bmcs[:3]  # all three in cluster-01
    vc.set_host(a.host_name, enter_mm_delay_s=0.3)

    result = _enter(a.service_tag, 1)
    assert (result.changed, result.in_maintenance, result.cluster) == (True, True, "cluster-01")
    assert vc.host_state(a.host_name)["in_maintenance"] is True
    # Re-running is a no-op.
    assert _enter(a.service_tag, 1).changed is False

    state = _enter(b.service_tag, 1, return_state=True)
    assert state.is_failed()
    with pytest.raises(PreconditionError, match="max_unavailable_per_cluster=1"):
        state.result()
    assert vc.host_state(b.host_name)["in_maintenance"] is False

    # A host that stopped responding counts as unavailable too.
    vc.set_host(c.host_name, connection_state="notResponding")
    with pytest.raises(PreconditionError, match="2 unavailable"):
        _enter(b.service_tag, 2)
    vc.set_host(c.host_name, connection_state="connected")
    assert _enter(b.service_tag, 2).in_maintenance is True

    # The other cluster is not affected by cluster-01's hosts.
    d = fleet.bmcs[3]
    assert _enter(vc.host_moids[d.host_name], 1).cluster == "cluster-02"

    for bmc in (a, b, d):
        left = _exit(bmc.host_name)
        assert (left.changed, left.in_maintenance) == (True, False)
        assert vc.host_state(bmc.host_name)["in_maintenance"] is False
    assert _exit(a.host_name).changed is False


def test_read_host_and_enter_with_evacuation_options(lab_inventory, vc) -> None:
    fleet, _ = lab_inventory
    bmc = fleet.bmcs[3]  # cluster-02

    @flow
    def _read_enter_read():
        before = read_host(bmc.service_tag, "vcenter-test")
        options = MaintenanceOptions(evacuate_powered_off_vms=True, vsan_mode="evacuateAllData")
        entered = enter_maintenance_mode(bmc.service_tag, "vcenter-test", 1, 30.0, options)
        return before, entered, read_host(bmc.host_name, "vcenter-test")

    before, entered, after = _read_enter_read()
    assert (before.name, before.in_maintenance) == (bmc.host_name, False)
    assert (entered.changed, entered.in_maintenance) == (True, True)
    assert after.in_maintenance is True
    assert vc.host_state(bmc.host_name)["in_maintenance"] is True
    assert _exit(bmc.host_name).changed is True


def test_slow_enter_fails_at_the_deadline(lab_inventory, vc) -> None:
    fleet, _ = lab_inventory
    bmc = fleet.bmcs[4]
    vc.set_host(bmc.host_name, enter_mm_delay_s=30)
    started = time.monotonic()
    state = _enter(bmc.service_tag, 1, timeout_s=1.0, return_state=True)
    assert state.is_failed()
    with pytest.raises(DeadlineExceeded):
        state.result()
    assert time.monotonic() - started < 15
    assert vc.host_state(bmc.host_name)["in_maintenance"] is False


def test_wait_host_connected_after_a_reboot(lab_inventory, vc) -> None:
    fleet, _ = lab_inventory
    bmc = fleet.bmcs[5]
    vc.set_host(bmc.host_name, connection_state="notResponding", reconnect_after_s=1.0)

    @flow
    def _wait():
        return wait_host_connected(bmc.service_tag, "vcenter-test", timeout_s=20)

    host = _wait()
    assert host.connection_state == "connected"
    assert host.service_tag == bmc.service_tag
    assert vc.host_state(bmc.host_name)["connection_state"] == "connected"


def test_sync_refuses_an_unknown_block(inventory_block) -> None:
    state = vcenter_sync(
        vcenter_block="no-such-vcenter", inventory_block=inventory_block, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(PreconditionError, match="no-such-vcenter"):
        state.result()


def test_inventory_copy_is_private(inventory_block) -> None:
    with _inventory(inventory_block) as inventory:
        assert all(r.vcenter_host is None for r in inventory.list())
