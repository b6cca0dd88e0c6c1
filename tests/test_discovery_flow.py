"""Discovery end to end: the flow against the lab's iDRACs over real HTTPS on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from blocks import InventoryStore, RedfishCredentials
from clients.discovery import ProbeOutcome, Scanner
from clients.inventory import ServerStatus
from flows.discovery import discovery
from lab.fleet import build_fleet
from lab.server import Lab
from tests.helpers import free_port, self_signed_cert

SUBNET = "127.10.7.0/24"
# 127.10.7.1-6 healthy, .7 wrong password, .8 slow, .9 hung, .10 not listening;
# .11-.14 have nothing at all (closed).
FLEET = {
    "subnet": SUBNET,
    "port": 0,
    "bmcs": [
        {"count": 6, "model": "R640"},
        {"model": "R750", "password": "not-the-fleet-password"},
        {"model": "R740", "faults": {"latency_s": 0.4}},
        {"model": "R650", "faults": {"hang": True}},
        {"model": "R640", "faults": {"not_listening": True}},
    ],
}
SCAN = "127.10.7.1-14"


@pytest.fixture(scope="module")
def fleet_password() -> str:
    import secrets

    return "lab-" + secrets.token_hex(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, fleet_password):
    fleet = build_fleet({**FLEET, "password": fleet_password}, seed=7)
    with Lab(fleet=fleet, state_dir=tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture()
def blocks(prefect_harness, lab, fleet_password, tmp_path):
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    RedfishCredentials(
        username=lab.fleet.username, password=fleet_password, ca_bundle=str(lab.ca_path)
    ).save("lab", overwrite=True)
    InventoryStore(url=url).save("test-inventory", overwrite=True)
    return {"credentials": "lab", "inventory": "test-inventory", "url": url}


def _inventory(url: str):
    return InventoryStore(url=url).get_client()


async def _discover(lab, blocks, ranges=SCAN, **kw):
    return await discovery(
        ranges=[ranges] if isinstance(ranges, str) else ranges,
        ports=[lab.bmcs[0].port],
        credentials_block=blocks["credentials"],
        inventory_block=blocks["inventory"],
        connect_timeout=1.0,
        read_timeout=2.0,
        resume_minutes=kw.pop("resume_minutes", 0),
        **kw,
    )


async def test_mixed_fleet_found_with_identity_and_counts(lab, blocks):
    summary = await _discover(lab, blocks)

    assert summary.endpoints == 14
    assert summary.found == 7  # six healthy + the slow one
    assert summary.auth_failed == 1
    assert summary.no_answer == 6  # hung, not listening, four closed
    assert (summary.not_redfish, summary.tls_errors, summary.errors) == (0, 0, 0)
    specs = {b.address: b for b in lab.fleet.bmcs}
    with _inventory(blocks["url"]) as inv:
        for address in [f"127.10.7.{i}" for i in range(1, 9)]:
            spec = specs[address]
            rec = inv.get(spec.service_tag)
            assert rec is not None, address
            assert rec.bmc_address == address
            if address == "127.10.7.7":  # wrong password: only the unauthenticated root was read
                assert rec.status == ServerStatus.AUTH_FAILED
                assert rec.model is None
                continue
            assert rec.status == ServerStatus.ONLINE
            assert rec.model == f"PowerEdge {spec.model.removeprefix('PowerEdge ')}"
            assert rec.serial == spec.board_serial
            assert rec.bios_version == spec.bios_version
            assert rec.bmc_firmware_version == spec.idrac_version
            kinds = {c.kind for c in rec.firmware}
            assert {"idrac", "bios", "cpld", "raid", "nic", "backplane"} <= kinds
        assert inv.get("127.10.7.9") is None  # the hung BMC never identified itself
    # every session the flow opened was closed again
    assert all(len(b.sessions) == 0 for b in lab.bmcs)


async def test_hung_bmc_costs_no_more_than_the_timeout(lab, fleet_password):
    scanner = Scanner(
        username=lab.fleet.username,
        password=fleet_password,
        verify=RedfishCredentials(
            username="x", password="y", ca_bundle=str(lab.ca_path)
        ).ssl_context(),
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    port = lab.bmcs[0].port
    [hung, healthy] = await scanner.scan([("127.10.7.9", port), ("127.10.7.1", port)])
    assert hung.outcome is ProbeOutcome.NO_ANSWER
    assert hung.elapsed_s <= 5  # connect + read timeouts (0.5 + 0.5): gave up, no hang
    assert healthy.outcome is ProbeOutcome.FOUND


async def test_moved_bmc_is_moved_not_duplicated(lab, blocks):
    await _discover(lab, blocks)
    moved = lab.bmc("127.10.7.3")
    tag = moved.spec.service_tag
    lab.move_bmc("127.10.7.3", "127.10.7.13")
    try:
        summary = await _discover(lab, blocks)
        assert summary.found == 7
        with _inventory(blocks["url"]) as inv:
            rows = [r for r in inv.list() if r.service_tag == tag]
            assert len(rows) == 1
            assert rows[0].bmc_address == "127.10.7.13"
            assert rows[0].status == ServerStatus.ONLINE
            assert len([r for r in inv.list() if r.bmc_address == "127.10.7.3"]) == 0
    finally:
        lab.move_bmc("127.10.7.13", "127.10.7.3")


async def test_resume_reuses_finished_chunks(lab, blocks):
    first = await _discover(lab, blocks, chunk_size=4, resume_minutes=5)
    before = sum(sum(c.values()) for c in lab.request_counts().values())
    second = await _discover(lab, blocks, chunk_size=4, resume_minutes=5)
    after = sum(sum(c.values()) for c in lab.request_counts().values())
    assert second.found == first.found == 7
    assert after == before  # every chunk came from the cache: no request reached a BMC


async def test_refresh_false_skips_authenticated_reads_of_known_servers(lab, blocks):
    await _discover(lab, blocks)
    healthy = "127.10.7.2"
    key = f"{healthy}:{lab.bmcs[0].port}"
    before = dict(lab.request_counts()[key])
    await _discover(lab, blocks, ranges=healthy, refresh=False)
    after_known = dict(lab.request_counts()[key])
    new = {k: after_known.get(k, 0) - before.get(k, 0) for k in after_known}
    assert {k for k, v in new.items() if v} == {"GET /redfish/v1"}
    await _discover(lab, blocks, ranges=healthy, refresh=True)
    refreshed = lab.request_counts()[key]
    assert refreshed.get("POST /redfish/v1/SessionService/Sessions", 0) > after_known.get(
        "POST /redfish/v1/SessionService/Sessions", 0
    )


def _consecutive_free_ports(n: int) -> int:
    for _ in range(50):
        base = free_port("127.0.0.1")
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


class _Listener:
    """A bare TCP listener that proves whether anything tried to connect."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1


@pytest.mark.parametrize(
    ("ranges", "extra", "message"),
    [
        (["127.10.9.1", "127.10.9.300"], {}, "'127.10.9.300' is not an IPv4 address"),
        (["127.10.9.1", "127.10.9.9-127.10.9.2"], {}, "is reversed"),
        (["127.10.9.1", "fd00::5"], {}, "IPv6 is not supported yet"),
        (["127.10.9.1", "127.20.0.0/15"], {}, "more than 65,536"),
        (["127.10.9.1"], {"ports": ["0"]}, "outside 1-65535"),
        (["127.10.9.1"], {"concurrency": 0}, "concurrency: must be positive"),
        (["127.10.9.1"], {"credentials_block": "no-such-block"}, "no-such-block"),
    ],
)
async def test_bad_input_is_refused_before_any_packet(blocks, ranges, extra, message):
    listener = _Listener("127.10.9.1")
    try:
        params = {
            "ranges": ranges,
            "ports": [listener.port],
            "credentials_block": blocks["credentials"],
            "inventory_block": blocks["inventory"],
            **extra,
        }
        state = await discovery(**params, return_state=True)
        assert state.is_failed()
        with pytest.raises(Exception, match=message.replace("(", r"\(")):
            await state.result()
        await asyncio.sleep(0.05)
        assert listener.connections() == 0
    finally:
        listener.sock.close()


async def test_tls_unknown_certificate_fails_verification(prefect_harness, tmp_path, caplog):
    fleet = build_fleet(
        {"subnet": "127.10.8.0/24", "port": 0, "tls": "self-signed", "bmcs": [{"count": 2}]}
    )
    with Lab(fleet=fleet, state_dir=tmp_path / "lab") as insecure_lab:
        other_ca, _ = self_signed_cert(tmp_path, "127.0.0.1")
        await RedfishCredentials(
            username=fleet.username, password=fleet.password, ca_bundle=str(other_ca)
        ).asave("tls-strict", overwrite=True)
        await RedfishCredentials(
            username=fleet.username, password=fleet.password, verify_tls=False
        ).asave("tls-off", overwrite=True)
        url = f"sqlite:///{tmp_path / 'inv.db'}"
        await InventoryStore(url=url).asave("tls-inv", overwrite=True)
        port = insecure_lab.bmcs[0].port
        common = {
            "ranges": ["127.10.8.1-2"],
            "ports": [port],
            "inventory_block": "tls-inv",
            "resume_minutes": 0,
        }

        strict = await discovery(credentials_block="tls-strict", **common)
        assert (strict.tls_errors, strict.found) == (2, 0)

        relaxed = await discovery(credentials_block="tls-off", **common)
        assert relaxed.found == 2
        assert sum("TLS verification is OFF" in r.getMessage() for r in caplog.records) == 1
        assert insecure_lab.bmc("127.10.8.1").spec.service_tag in {
            s.service_tag for s in relaxed.servers
        }


async def test_single_host_fleet_scanned_by_port_range(prefect_harness, tmp_path):
    base = _consecutive_free_ports(3)
    fleet = build_fleet(
        {"subnet": "127.0.0.1/32", "single_host": True, "port": base, "bmcs": [{"count": 3}]}
    )
    with Lab(fleet=fleet, state_dir=tmp_path / "lab") as mac_lab:
        await RedfishCredentials(
            username=fleet.username, password=fleet.password, ca_bundle=str(mac_lab.ca_path)
        ).asave("mac", overwrite=True)
        ports = sorted(b.port for b in mac_lab.bmcs)
        assert ports == list(range(ports[0], ports[0] + 3))
        await InventoryStore(url=f"sqlite:///{tmp_path / 'inv.db'}").asave(
            "mac-inv", overwrite=True
        )
        summary = await discovery(
            ranges=["127.0.0.1"],
            ports=[f"{ports[0]}-{ports[-1]}"],
            credentials_block="mac",
            inventory_block="mac-inv",
            resume_minutes=0,
        )
        assert summary.found == 3
        assert {s.port for s in summary.servers} == set(ports)
