"""The simulated iDRAC fleet, over real HTTPS on 127.10.x.y loopback addresses."""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from clients.errors import PreconditionError
from lab.fleet import Faults, FleetSpec, build_fleet, load_fleet
from lab.server import Lab

PASSWORD = "lab-test-pw"
SESSIONS = "/redfish/v1/SessionService/Sessions"
EXAMPLE = Path(__file__).resolve().parent.parent / "lab" / "fleets" / "example.yaml"
StartLab = Callable[..., Lab]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-state")


@pytest.fixture
def start_lab(state_dir: Path) -> Iterator[StartLab]:
    labs: list[Lab] = []

    def start(count: int = 2, *, subnet: str = "127.10.1.0/24", port: int = 0, **kw: object) -> Lab:
        fleet = kw.pop("fleet", None) or FleetSpec.generate(
            count=count, subnet=subnet, port=port, password=PASSWORD, **kw
        )
        lab = Lab(fleet=fleet, state_dir=state_dir)  # type: ignore[arg-type]
        lab.start()
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


def client(lab: Lab, **kw: object) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(lab.ca_path))
    return httpx.Client(verify=verify, timeout=kw.pop("timeout", 5.0), **kw)  # type: ignore[arg-type]


def url(lab: Lab, index: int, path: str = "/redfish/v1") -> str:
    return f"https://{lab.bmcs[index].key}{path}"


def login(http: httpx.Client, base: str, password: str = PASSWORD) -> httpx.Response:
    return http.post(f"{base}{SESSIONS}", json={"UserName": "root", "Password": password})


def wait_until(check: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_service_root_fingerprints_an_idrac_without_credentials(start_lab: StartLab) -> None:
    lab = start_lab(1)
    bmc = lab.bmcs[0]
    with client(lab) as http:
        root = http.get(url(lab, 0)).json()
    assert root["Product"] == "Integrated Dell Remote Access Controller"
    assert root["Vendor"] == "Dell"
    assert re.fullmatch(r"1\.\d+\.\d+", root["RedfishVersion"])
    assert root["Oem"]["Dell"]["ServiceTag"] == bmc.service_tag
    assert re.fullmatch(r"d0:94:66(:[0-9a-f]{2}){3}", root["Oem"]["Dell"]["ManagerMACAddress"])
    assert root["Links"]["Sessions"]["@odata.id"] == SESSIONS
    assert root["UpdateService"]["@odata.id"] == "/redfish/v1/UpdateService"


def test_system_and_manager_identity(start_lab: StartLab) -> None:
    lab = start_lab(1)
    spec = lab.bmcs[0].spec
    with client(lab, auth=("root", PASSWORD)) as http:
        members = http.get(url(lab, 0, "/redfish/v1/Systems")).json()["Members"]
        system = http.get(url(lab, 0, members[0]["@odata.id"])).json()
        manager = http.get(url(lab, 0, "/redfish/v1/Managers/iDRAC.Embedded.1")).json()
    assert members[0]["@odata.id"] == "/redfish/v1/Systems/System.Embedded.1"
    assert system["Model"] == "PowerEdge R640"
    assert system["SKU"] == spec.service_tag and len(spec.service_tag) == 7
    assert system["SerialNumber"].startswith("CN") and system["SerialNumber"] != spec.service_tag
    assert system["BiosVersion"] == "2.19.1"
    assert system["PowerState"] == "On"
    assert system["Status"]["Health"] == "OK" and system["Status"]["HealthRollup"] == "OK"
    assert system["UUID"].startswith("4c4c4544-")  # "DELL"
    assert system["ProcessorSummary"]["Count"] == 2
    assert system["MemorySummary"]["TotalSystemMemoryGiB"] == 384
    assert system["HostName"] == "node0001.lab.example"
    assert manager["FirmwareVersion"] == "7.00.00.174"
    assert manager["Model"] == "14G Monolithic"


def test_sessions_have_eight_slots_and_delete_frees_one(start_lab: StartLab) -> None:
    lab = start_lab(1)
    base = url(lab, 0, "")
    with client(lab) as http:
        created = [login(http, base) for _ in range(8)]
        assert [r.status_code for r in created] == [201] * 8
        first = created[0]
        assert first.headers["Location"].startswith(f"{SESSIONS}/")
        token = first.headers["X-Auth-Token"]
        systems = http.get(f"{base}/redfish/v1/Systems", headers={"X-Auth-Token": token})
        assert systems.status_code == 200

        ninth = login(http, base)
        assert ninth.status_code == 503
        info = ninth.json()["error"]["@Message.ExtendedInfo"]
        assert "RAC0218" in info[0]["MessageId"]

        gone = http.delete(f"{base}{first.headers['Location']}", headers={"X-Auth-Token": token})
        assert gone.status_code == 200
        stale = http.get(f"{base}/redfish/v1/Systems", headers={"X-Auth-Token": token})
        assert stale.status_code == 401
        assert login(http, base).status_code == 201
        assert login(http, base).status_code == 503
    assert len(lab.bmcs[0].sessions) == 8


def test_basic_auth_and_wrong_credentials(start_lab: StartLab) -> None:
    lab = start_lab(1)
    base = url(lab, 0, "")
    with client(lab) as http:
        good = http.get(f"{base}/redfish/v1/Systems", auth=("root", PASSWORD))
        bad = http.get(f"{base}/redfish/v1/Systems", auth=("root", "wrong"))
        anonymous = http.get(f"{base}/redfish/v1/Systems")
        bad_login = login(http, base, password="wrong")
        bad_token = http.get(f"{base}/redfish/v1/Systems", headers={"X-Auth-Token": "nope"})
    assert good.status_code == 200
    assert bad.status_code == anonymous.status_code == bad_login.status_code == 401
    assert bad_token.status_code == 401
    assert bad_login.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"].startswith("Base.")
    assert "X-Auth-Token" not in bad_login.headers


def test_session_expires_after_thirty_lab_minutes(start_lab: StartLab) -> None:
    lab = start_lab(1, speed=3600.0)  # 30 lab minutes = 0.5 s
    base = url(lab, 0, "")
    with client(lab) as http:
        token = login(http, base).headers["X-Auth-Token"]
        assert http.get(f"{base}/redfish/v1/Systems", headers={"X-Auth-Token": token}).is_success
        time.sleep(0.7)
        expired = http.get(f"{base}/redfish/v1/Systems", headers={"X-Auth-Token": token})
    assert expired.status_code == 401
    assert len(lab.bmcs[0].sessions) == 0


def test_firmware_inventory_members_and_expand(start_lab: StartLab) -> None:
    lab = start_lab(1)
    inventory = url(lab, 0, "/redfish/v1/UpdateService/FirmwareInventory")
    with client(lab, auth=("root", PASSWORD)) as http:
        plain = http.get(inventory).json()
        expanded = http.get(inventory, params={"$expand": "*($levels=1)"}).json()
        member = http.get(url(lab, 0, plain["Members"][1]["@odata.id"])).json()
    ids = [m["@odata.id"].rsplit("/", 1)[1] for m in plain["Members"]]
    assert plain["Members@odata.count"] == len(ids)
    assert "Installed-25227-7.00.00.174__iDRAC.Embedded.1-1" in ids
    assert "Current-25227-7.00.00.174__iDRAC.Embedded.1-1" in ids
    assert any(i.startswith("Previous-25227-") for i in ids)
    assert "Installed-159-2.19.1__BIOS.Setup.1-1" in ids
    assert "Installed-27763-1.0.6__CPLD.Embedded.1" in ids
    fqdds = {i.split("__", 1)[1] for i in ids}
    assert {
        "RAID.Integrated.1-1",
        "NIC.Integrated.1-1-1",
        "Enclosure.Internal.0-1:RAID.Integrated.1-1",
        "PSU.Slot.1",
        "LC.Embedded.1",
    } <= fqdds
    assert any(f.startswith("Disk.Bay.") for f in fqdds)
    full = expanded["Members"]
    assert [m["Id"] for m in full] == ids
    bios = next(m for m in full if m["Id"].startswith("Installed-159-"))
    assert bios["Version"] == "2.19.1" and bios["Updateable"] is True
    assert bios["Oem"]["Dell"]["DellSoftwareInventory"]["FQDD"] == "BIOS.Setup.1-1"
    assert member["Id"] == ids[1] and member["SoftwareId"] == "159"


def test_hang_accepts_and_never_answers(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.2.0/24")
    lab.set_faults(lab.bmcs[1].address, Faults(hang=True))
    bmc = lab.bmcs[1]
    with socket.create_connection((bmc.address, bmc.port), timeout=2) as raw:
        raw.settimeout(0.3)
        with pytest.raises(TimeoutError):
            raw.recv(1)
    started = time.monotonic()
    with client(lab, timeout=0.5) as http, pytest.raises(httpx.TimeoutException):
        http.get(url(lab, 1))
    assert time.monotonic() - started >= 0.45
    assert wait_until(lambda: bmc.hung_connections == 2)
    with client(lab) as http:
        assert http.get(url(lab, 0)).status_code == 200


def test_not_listening_refuses_connections(start_lab: StartLab) -> None:
    fleet = build_fleet(
        {
            "subnet": "127.10.3.0/24",
            "port": 0,
            "password": PASSWORD,
            "bmcs": [{"model": "R640"}, {"model": "R750", "faults": {"not_listening": True}}],
        }
    )
    lab = start_lab(fleet=fleet)
    dark = lab.bmcs[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dark.address, dark.port), timeout=2).close()
    with client(lab) as http:
        with pytest.raises(httpx.ConnectError):
            http.get(url(lab, 1))
        assert http.get(url(lab, 0)).status_code == 200
    lab.set_faults(dark.address, Faults())
    with client(lab) as http:
        assert http.get(url(lab, 1)).json()["Oem"]["Dell"]["ServiceTag"] == dark.service_tag


def test_error_rate_one_answers_5xx_and_latency_delays(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.4.0/24")
    lab.set_faults(lab.bmcs[0].address, Faults(error_rate=1.0))
    lab.set_faults(lab.bmcs[1].address, Faults(latency_s=0.4))
    with client(lab, auth=("root", PASSWORD)) as http:
        statuses = {http.get(url(lab, 0, "/redfish/v1/Systems")).status_code for _ in range(20)}
        failed = http.get(url(lab, 0))
        started = time.monotonic()
        slow = http.get(url(lab, 1))
        elapsed = time.monotonic() - started
        lab.set_faults(lab.bmcs[0].address, Faults())
        healed = http.get(url(lab, 0, "/redfish/v1/Systems"))
    assert statuses <= {500, 503} and statuses
    assert failed.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"]
    assert slow.status_code == 200 and elapsed >= 0.4
    assert healed.status_code == 200


def test_move_bmc_keeps_identity_at_new_address(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.5.0/24")
    bmc = lab.bmcs[0]
    old, port = bmc.address, bmc.port
    with client(lab) as http:
        assert http.get(f"https://{old}:{port}/redfish/v1").status_code == 200
    lab.move_bmc(old, "127.10.5.77")
    with client(lab) as http:
        root = http.get(f"https://127.10.5.77:{port}/redfish/v1").json()
        with pytest.raises(httpx.ConnectError):
            http.get(f"https://{old}:{port}/redfish/v1")
    assert root["Oem"]["Dell"]["ServiceTag"] == bmc.service_tag
    assert lab.bmc("127.10.5.77") is bmc and bmc.key == f"127.10.5.77:{port}"
    with pytest.raises(PreconditionError):
        lab.move_bmc("127.10.5.77", lab.bmcs[1].address)


def test_request_counts_per_endpoint(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.6.0/24")
    with client(lab, auth=("root", PASSWORD)) as http:
        for _ in range(3):
            http.get(url(lab, 0))
        http.get(url(lab, 0, "/redfish/v1/Systems/System.Embedded.1"))
        http.get(url(lab, 0, "/redfish/v1/Systems/System.Embedded.1/"))
        http.get(url(lab, 0, "/redfish/v1/NoSuchThing"))
    counts = lab.request_counts()
    assert counts[lab.bmcs[0].key] == {
        "GET /redfish/v1": 3,
        "GET /redfish/v1/Systems/{id}": 2,
        "GET /redfish/v1/NoSuchThing": 1,
    }
    assert counts[lab.bmcs[1].key] == {}


def test_self_signed_mode_fails_verification_against_lab_ca(start_lab: StartLab) -> None:
    lab = start_lab(1, subnet="127.10.7.0/24", tls="self-signed")
    with client(lab) as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        http.get(url(lab, 0))
    with httpx.Client(verify=False) as http:  # noqa: S501 - the --insecure path under test
        assert http.get(url(lab, 0)).json()["Vendor"] == "Dell"


def test_single_host_mode_uses_consecutive_ports(start_lab: StartLab) -> None:
    for _attempt in range(10):
        base = _free_port_run(3)
        try:
            lab = start_lab(3, single_host=True, port=base)
        except OSError:
            continue
        break
    else:
        pytest.fail("no free run of 3 ports on 127.0.0.1")
    assert [b.key for b in lab.bmcs] == [f"127.0.0.1:{base + i}" for i in range(3)]
    with client(lab) as http:
        tags = [http.get(url(lab, i)).json()["Oem"]["Dell"]["ServiceTag"] for i in range(3)]
    assert tags == [b.service_tag for b in lab.bmcs]
    assert lab.bmc("127.0.0.1", base + 1) is lab.bmcs[1]


def _free_port_run(n: int) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1]) if s.getsockname()[1] + n < 65535 else 20000


def test_admin_api_lists_moves_and_sets_faults(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.8.0/24")
    bmc = lab.bmcs[1]
    with httpx.Client(base_url=lab.admin_url, timeout=5) as admin:
        listed = admin.get("/lab/bmcs").json()["bmcs"]
        hurt = admin.post(f"/lab/bmcs/{bmc.address}/faults", json={"error_rate": 1.0})
        moved = admin.post(f"/lab/bmcs/{bmc.address}/move", json={"address": "127.10.8.99"})
        bad = admin.post("/lab/bmcs/127.10.8.250/faults", json={})
    assert [b["service_tag"] for b in listed] == [b.service_tag for b in lab.bmcs]
    assert "password" not in str(listed).lower()
    assert hurt.json()["faults"]["error_rate"] == 1.0
    assert moved.json()["address"] == "127.10.8.99" and bmc.address == "127.10.8.99"
    assert bad.status_code == 400
    with client(lab) as http:
        assert http.get(f"https://{bmc.key}/redfish/v1").status_code in (500, 503)


def test_own_credentials_bmc_refuses_fleet_password(start_lab: StartLab) -> None:
    fleet = load_fleet(EXAMPLE)
    data = fleet.model_dump()
    data["bmcs"] = [
        {**b, "address": b["address"].replace("127.10.0.", "127.10.9."), "port": 0}
        for b in data["bmcs"]
        if b["faults"]["latency_s"] == 0
    ]
    lab = start_lab(fleet=FleetSpec.model_validate(data))
    odd = next(b for b in lab.bmcs if b.spec.password)
    with client(lab) as http:
        refused = login(http, f"https://{odd.key}", password=fleet.password)
        accepted = login(http, f"https://{odd.key}", password=odd.spec.password or "")
    assert refused.status_code == 401 and accepted.status_code == 201


def test_stop_closes_held_and_open_connections(state_dir: Path) -> None:
    fleet = FleetSpec.generate(count=2, subnet="127.10.12.0/24", port=0, password=PASSWORD)
    lab = Lab(fleet=fleet, state_dir=state_dir)
    lab.start()
    lab.set_faults("127.10.12.1", Faults(hang=True))
    held = socket.create_connection(("127.10.12.1", lab.bmcs[0].port), timeout=2)
    lab.stop()
    with held:
        assert held.recv(1) == b""  # closed by the lab, not left hanging
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.10.12.2", lab.bmcs[1].port), timeout=2).close()


def test_ca_is_cached_and_reused(start_lab: StartLab, state_dir: Path) -> None:
    first = start_lab(1, subnet="127.10.10.0/24")
    pem = first.ca_path.read_bytes()
    second = start_lab(1, subnet="127.10.11.0/24")
    assert second.ca_path.read_bytes() == pem
    with client(second) as http:
        assert http.get(url(second, 0)).status_code == 200
