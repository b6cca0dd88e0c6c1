"""Firmware work on the simulated iDRACs, over real HTTPS (and the lab repository over HTTP)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree as ET

import httpx
import pytest

from lab.dup import make_package
from lab.fleet import Durations, Faults, FleetSpec
from lab.server import Lab

T = TypeVar("T")
PASSWORD = "lab-fw-pw"
V1 = "/redfish/v1"
MGR = f"{V1}/Managers/iDRAC.Embedded.1"
SYSTEM = f"{V1}/Systems/System.Embedded.1"
SIMPLE_UPDATE = f"{V1}/UpdateService/Actions/UpdateService.SimpleUpdate"
RESET = f"{SYSTEM}/Actions/ComputerSystem.Reset"
LC_STATUS = f"{MGR}/Oem/Dell/DellLCService/Actions/DellLCService.GetRemoteServicesAPIStatus"
DELETE_QUEUE = f"{MGR}/Oem/Dell/DellJobService/Actions/DellJobService.DeleteJobQueue"
SWI = f"{SYSTEM}/Oem/Dell/DellSoftwareInstallationService/Actions/DellSoftwareInstallationService"
SPEED = 50.0
StartLab = Callable[..., Lab]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-fw-state")


@pytest.fixture
def start_lab(state_dir: Path, request: pytest.FixtureRequest) -> Iterator[StartLab]:
    labs: list[Lab] = []

    def start(count: int = 1, *, subnet: str = "", faults: Faults | None = None, **kw: Any) -> Lab:
        durations = Durations(**kw.pop("durations", {}))
        fleet = kw.pop("fleet", None) or FleetSpec.generate(
            count=count,
            subnet=subnet,
            port=0,
            password=PASSWORD,
            speed=kw.pop("speed", SPEED),
            durations=durations,
            faults=faults,
            **kw,
        )
        lab = Lab(fleet=fleet, state_dir=state_dir / request.node.name, repository=True)
        lab.start()
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


def client(lab: Lab, **kw: Any) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(lab.ca_path))
    kw.setdefault("auth", ("root", PASSWORD))
    return httpx.Client(verify=verify, timeout=kw.pop("timeout", 5.0), **kw)


def base(lab: Lab, index: int = 0) -> str:
    return f"https://{lab.bmcs[index].key}"


def wait_for(fetch: Callable[[], T], until: Callable[[T], bool], timeout_s: float = 10.0) -> T:
    """Poll until a condition holds (monotonic deadline); return the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def package_uri(lab: Lab, component: str, index: int = 0) -> tuple[str, str]:
    assert lab.repository is not None
    pkg = lab.repository.package_for(lab.bmcs[index].spec.model, component)
    return lab.repository.url(pkg.file), pkg.version


def simple_update(http: httpx.Client, url: str, uri: str, apply_time: str = "OnReset") -> str:
    resp = http.post(
        f"{url}{SIMPLE_UPDATE}",
        json={
            "ImageURI": uri,
            "TransferProtocol": "HTTP",
            "@Redfish.OperationApplyTime": apply_time,
        },
    )
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    assert location.startswith(f"{V1}/TaskService/Tasks/JID_")
    job_id = location.rsplit("/", 1)[1]
    assert len(job_id) == 16 and job_id[4:].isdigit()
    return job_id


def job(http: httpx.Client, url: str, job_id: str) -> dict[str, Any]:
    return http.get(f"{url}{MGR}/Jobs/{job_id}").json()


def wait_job(
    http: httpx.Client, url: str, job_id: str, states: set[str], timeout_s: float = 10.0
) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []

    def fetch() -> dict[str, Any]:
        doc = job(http, url, job_id)
        if not seen or seen[-1] != doc["JobState"]:
            seen.append(doc["JobState"])
        return doc

    return wait_for(fetch, lambda d: d["JobState"] in states, timeout_s), seen


def installed(http: httpx.Client, url: str, fqdd: str) -> tuple[str, list[str]]:
    members = http.get(
        f"{url}{V1}/UpdateService/FirmwareInventory", params={"$expand": "*($levels=1)"}
    ).json()["Members"]
    mine = [m for m in members if m["Id"].endswith(f"__{fqdd}")]
    version = next(m["Version"] for m in mine if m["Id"].startswith("Installed-"))
    return version, [m["Id"] for m in mine]


def test_repository_serves_packages_index_and_catalog(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.50.0/24")
    repo = lab.repository
    assert repo is not None and repo.base_url.startswith("http://127.0.0.1:")
    with httpx.Client(timeout=5) as http:
        index = http.get(repo.url("index.json")).json()["packages"]
        catalog = http.get(repo.url("Catalog.xml")).content
        gz = http.get(repo.url("Catalog.xml.gz")).content
        first = http.get(repo.url(index[0]["file"]))
    components = {p["component"] for p in index}
    assert components == {"idrac", "bios", "cpld", "raid", "nic", "backplane"}
    bios = next(p for p in index if p["component"] == "bios")
    assert bios["file"].startswith("BIOS_") and bios["file"].endswith(
        f"_WN64_{bios['version']}.EXE"
    )
    assert bios["component_id"] == "159" and bios["version"] == "2.19.2"
    assert any(p["file"].startswith("iDRAC-with-Lifecycle-Controller_Firmware_") for p in index)
    assert first.status_code == 200 and b'"component_id"' in first.content
    assert catalog.startswith(b"\xff\xfe") and gzip.decompress(gz) == catalog  # UTF-16 like Dell's
    manifest = ET.fromstring(catalog)  # noqa: S314 - our own lab's output
    assert manifest.get("baseLocation") == repo.host
    entry = next(c for c in manifest.iter("SoftwareComponent") if c.get("path") == bios["file"])
    assert entry.get("vendorVersion") == "2.19.2"
    assert entry.find("ComponentType").get("value") == "BIOS"  # type: ignore[union-attr]
    assert entry.find("SupportedDevices/Device").get("componentID") == "159"  # type: ignore[union-attr]
    assert {m.findtext("Display") for m in entry.iter("Model")} == {"R640", "R740"}  # 14G share
    pkg = make_package(
        component="bios", component_id="159", version="2.20.0", models=["R640"], name="BIOS"
    )
    repo.add_package(pkg)
    assert repo.target_version("PowerEdge R640", "bios") == "2.20.0"
    repo.remove(pkg.file)
    assert repo.target_version("R640", "bios") == "2.19.2"


def test_update_service_advertises_simple_update_and_validates(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.51.0/24")
    url = base(lab)
    with client(lab) as http:
        service = http.get(f"{url}{V1}/UpdateService").json()
        action = service["Actions"]["#UpdateService.SimpleUpdate"]
        bad_protocol = http.post(
            f"{url}{SIMPLE_UPDATE}", json={"ImageURI": "tftp://127.0.0.1/x.EXE"}
        )
        missing = http.post(f"{url}{SIMPLE_UPDATE}", json={})
        anonymous = http.post(f"{url}{SIMPLE_UPDATE}", json={}, auth=None)
    assert action["target"] == SIMPLE_UPDATE
    assert action["TransferProtocol@Redfish.AllowableValues"] == ["HTTP", "HTTPS"]
    assert bad_protocol.status_code == 400 and missing.status_code == 400
    assert anonymous.status_code == 401


def test_on_reset_job_waits_for_reboot_then_updates_inventory(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.52.0/24")
    url = base(lab)
    uri, target = package_uri(lab, "bios")
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "OnReset")
        scheduled, seen = wait_job(http, url, job_id, {"Scheduled", "Failed"})
        assert seen[-3:] == ["Downloading", "Downloaded", "Scheduled"] or seen[-2:] == [
            "Downloading",
            "Scheduled",
        ]
        assert scheduled["Message"] == "Task successfully scheduled."
        assert scheduled["MessageId"] == "JCP001"
        assert "PercentComplete" not in scheduled  # real iDRACs omit it at times
        assert scheduled["Name"] == "Firmware Update: BIOS"
        assert scheduled["JobType"] == "FirmwareUpdate"
        time.sleep(0.3)  # stays Scheduled without a reboot
        assert job(http, url, job_id)["JobState"] == "Scheduled"
        assert http.get(f"{url}{SYSTEM}").json()["BiosVersion"] == "2.19.1"

        assert http.post(f"{url}{RESET}", json={"ResetType": "GracefulRestart"}).status_code == 204
        powers: list[str] = []
        states: list[str] = []

        def fetch() -> dict[str, Any]:
            powers.append(http.get(f"{url}{SYSTEM}").json()["PowerState"])
            doc = job(http, url, job_id)
            states.append(doc["JobState"])
            return doc

        done = wait_for(fetch, lambda d: d["JobState"] in ("Completed", "Failed"))
        wait_for(lambda: http.get(f"{url}{SYSTEM}").json()["PowerState"], lambda p: p == "On")
        version, ids = installed(http, url, "BIOS.Setup.1-1")
        system = http.get(f"{url}{SYSTEM}").json()
    assert done["JobState"] == "Completed" and done["MessageId"] == "RED001"
    assert done["PercentComplete"] == 100 and "Running" in states
    assert "Off" in powers  # the reboot really powered the host off
    assert version == target == system["BiosVersion"] == "2.19.2"
    assert f"Installed-159-{target}__BIOS.Setup.1-1" in ids
    assert "Previous-159-2.19.1__BIOS.Setup.1-1" in ids


def test_immediate_host_update_reboots_the_host_itself(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.53.0/24")
    url = base(lab)
    uri, target = package_uri(lab, "nic")
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "Immediate")
        powers: list[str] = []

        def fetch() -> dict[str, Any]:
            powers.append(http.get(f"{url}{SYSTEM}").json()["PowerState"])
            return job(http, url, job_id)

        states: list[str] = []
        wait_for(
            lambda: states.append(fetch()["JobState"]) or states[-1],
            lambda s: s in ("Completed", "Failed"),
        )
        version, _ = installed(http, url, "NIC.Integrated.1-1-1")
        counts = lab.request_counts()[lab.bmcs[0].key]
    assert states[-1] == "Completed"
    assert "RebootPending" in states and "Off" in powers and powers[-1] == "On"
    assert states.index("RebootPending") < states.index("Completed")
    assert "RebootCompleted" in states or "Running" in states
    assert version == target
    assert f"POST {RESET}" not in " ".join(counts)  # nobody asked for the reboot


def test_idrac_update_resets_the_idrac(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.54.0/24", durations={"idrac_reset_s": 40.0})
    url = base(lab)
    uri, target = package_uri(lab, "idrac")
    with client(lab, auth=None, timeout=1.0) as http:
        login = http.post(
            f"{url}{V1}/SessionService/Sessions", json={"UserName": "root", "Password": PASSWORD}
        )
        token = {"X-Auth-Token": login.headers["X-Auth-Token"]}
        resp = http.post(
            f"{url}{SIMPLE_UPDATE}",
            json={"ImageURI": uri, "@Redfish.OperationApplyTime": "OnReset"},
            headers=token,
        )
        job_id = resp.headers["Location"].rsplit("/", 1)[1]
        observed: list[str] = []

        def probe() -> str:
            try:
                r = http.get(f"{url}{MGR}/Jobs/{job_id}", auth=("root", PASSWORD))
            except httpx.TransportError:
                observed.append("connect-error")
                return "connect-error"
            observed.append(str(r.status_code))
            return str(r.json()["JobState"]) if r.status_code == 200 else str(r.status_code)

        wait_for(probe, lambda s: s == "connect-error")
        last = wait_for(probe, lambda s: s in ("Completed", "Failed"))
        stale = http.get(f"{url}{MGR}", headers=token)
        task = http.get(f"{url}{V1}/TaskService/Tasks/{job_id}", auth=("root", PASSWORD))
        manager = http.get(f"{url}{MGR}", auth=("root", PASSWORD)).json()
    assert last == "Completed"
    assert "503" in observed[observed.index("connect-error") :]  # starting up after the reset
    assert stale.status_code == 401  # sessions were dropped by the reset
    assert task.status_code == 404  # TaskService lost the job across the reset
    assert manager["FirmwareVersion"] == target == "7.00.00.175"


def test_missing_image_and_wrong_model_fail_the_job(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.55.0/24")  # an R640 and an R740
    repo = lab.repository
    assert repo is not None
    url = base(lab)
    r750 = make_package(
        component="bios", component_id="159", version="1.14.0", models=["R750"], name="BIOS"
    )
    repo.add_package(r750)
    with client(lab) as http:
        missing = simple_update(http, url, repo.url("BIOS_NOPE1_WN64_9.9.9.EXE"))
        wrong = simple_update(http, url, repo.url(r750.file))
        not_dup = simple_update(http, url, repo.url("index.json"))
        failed = [
            wait_job(http, url, j, {"Failed", "Completed", "Scheduled"})[0]
            for j in (missing, wrong, not_dup)
        ]
        version, _ = installed(http, url, "BIOS.Setup.1-1")
    assert [f["JobState"] for f in failed] == ["Failed"] * 3
    assert failed[0]["Message"] == "Unable to transfer image"
    assert "not applicable" in failed[1]["Message"]
    assert "signature" in failed[2]["Message"]
    assert version == "2.19.1"
    assert repo.requests[f"GET {r750.file}"] == 1  # the iDRAC really downloaded it


def test_task_service_forgets_finished_tasks(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.56.0/24", durations={"task_retention_s": 30.0})
    url = base(lab)
    uri, _ = package_uri(lab, "bios")
    with client(lab) as http:
        job_id = simple_update(http, url, uri.replace(".EXE", ".MISSING"), "OnReset")
        task = wait_for(
            lambda: http.get(f"{url}{V1}/TaskService/Tasks/{job_id}").json(),
            lambda t: t.get("TaskState") == "Exception",
        )
        gone = wait_for(
            lambda: http.get(f"{url}{V1}/TaskService/Tasks/{job_id}").status_code,
            lambda status: status == 404,
        )
        dell = job(http, url, job_id)
    assert task["TaskStatus"] == "Critical" and task["Messages"][0]["Message"]
    assert gone == 404 and dell["JobState"] == "Failed"  # the Dell view keeps it


@pytest.mark.parametrize("component", ["bios", "idrac"])
def test_fault_job_fails(start_lab: StartLab, component: str) -> None:
    subnet = "127.10.57.0/24" if component == "bios" else "127.10.58.0/24"
    lab = start_lab(subnet=subnet, faults=Faults(job_fails=[component]))
    url = base(lab)
    uri, _ = package_uri(lab, component)
    fqdd = "BIOS.Setup.1-1" if component == "bios" else "iDRAC.Embedded.1-1"
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "Immediate")
        done, seen = wait_job(http, url, job_id, {"Failed", "Completed"})
        version, _ = installed(http, url, fqdd)
    assert done["JobState"] == "Failed" and "Running" in seen
    assert done["Message"]
    assert version in ("2.19.1", "7.00.00.174")


def test_fault_job_hangs_then_jcp052(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.59.0/24", faults=Faults(job_hangs=["all"], hang_s=30.0))
    url = base(lab)
    uri, _ = package_uri(lab, "bios")
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "Immediate")
        wait_job(http, url, job_id, {"Running"})
        lc = http.post(f"{url}{LC_STATUS}", json={}).json()
        started = time.monotonic()
        time.sleep(0.15)
        stuck = job(http, url, job_id)
        time.sleep(0.15)
        still = job(http, url, job_id)
        done, _ = wait_job(http, url, job_id, {"Failed", "Completed"})
        elapsed = time.monotonic() - started
    assert stuck["JobState"] == still["JobState"] == "Running"
    assert stuck["PercentComplete"] == still["PercentComplete"] < 100  # no progress
    assert lc["LCStatus"] == "NotReady"
    assert done["JobState"] == "Failed" and done["MessageId"] == "JCP052"
    assert "made no progress" in done["Message"]
    assert elapsed >= 0.4  # hang_s 30 lab s at speed 50 = 0.6 s


def test_fault_version_unchanged_after_completed(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.60.0/24", faults=Faults(version_unchanged=True))
    url = base(lab)
    uri, _ = package_uri(lab, "cpld")
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "Immediate")
        done, _ = wait_job(http, url, job_id, {"Failed", "Completed"})
        version, _ = installed(http, url, "CPLD.Embedded.1")
    assert done["JobState"] == "Completed"
    assert version == "1.0.6"  # "completed but unchanged"


def test_fault_host_never_returns(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.61.0/24", faults=Faults(host_never_returns=True))
    url = base(lab)
    uri, _ = package_uri(lab, "bios")
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "OnReset")
        wait_job(http, url, job_id, {"Scheduled"})
        assert http.post(f"{url}{RESET}", json={"ResetType": "ForceRestart"}).status_code == 204
        time.sleep(0.6)  # several reboot_s of lab time
        system = http.get(f"{url}{SYSTEM}").json()
        lc = http.post(f"{url}{LC_STATUS}", json={}).json()
        still = job(http, url, job_id)
        lab.set_faults(lab.bmcs[0].address, Faults())
        assert http.post(f"{url}{RESET}", json={"ResetType": "On"}).status_code == 204
        done, _ = wait_job(http, url, job_id, {"Completed", "Failed"})
    assert system["PowerState"] == "Off" and lc["ServerStatus"] == "PoweredOff"
    assert still["JobState"] == "Scheduled"
    assert done["JobState"] == "Completed"  # applied at the next boot once the host is fixed


def test_fault_busy_503_after_job_start(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.62.0/24", faults=Faults(busy_503_s=25.0))
    url = base(lab)
    uri, _ = package_uri(lab, "bios")
    with client(lab) as http:
        before = http.get(f"{url}{SYSTEM}")
        job_id = simple_update(http, url, uri, "OnReset")
        busy = http.get(f"{url}{SYSTEM}")
        healed = wait_for(lambda: http.get(f"{url}{SYSTEM}"), lambda r: r.status_code == 200)
        done, _ = wait_job(http, url, job_id, {"Scheduled", "Failed"})
    assert before.status_code == 200 and busy.status_code == 503
    assert busy.headers["Retry-After"].isdigit()
    assert healed.status_code == 200 and done["JobState"] == "Scheduled"


def test_reset_power_states_and_ignored_graceful(start_lab: StartLab) -> None:
    lab = start_lab(2, subnet="127.10.63.0/24")
    lab.set_faults(lab.bmcs[1].address, Faults(ignores_graceful=True))
    good, deaf = base(lab, 0), base(lab, 1)
    with client(lab) as http:
        allowed = http.get(f"{good}{SYSTEM}").json()["Actions"]["#ComputerSystem.Reset"]
        on_again = http.post(f"{good}{RESET}", json={"ResetType": "On"})
        bogus = http.post(f"{good}{RESET}", json={"ResetType": "Sideways"})
        assert http.post(f"{good}{RESET}", json={"ResetType": "ForceOff"}).status_code == 204
        off = http.get(f"{good}{SYSTEM}").json()["PowerState"]
        lc_off = http.post(f"{good}{LC_STATUS}", json={}).json()
        assert http.post(f"{good}{RESET}", json={"ResetType": "On"}).status_code == 204
        busy = http.post(f"{good}{RESET}", json={"ResetType": "On"})
        back = wait_for(
            lambda: http.post(f"{good}{LC_STATUS}", json={}).json(),
            lambda s: s["ServerStatus"] == "OutOfPOST" and s["Status"] == "Ready",
        )
        ignored = http.post(f"{deaf}{RESET}", json={"ResetType": "GracefulRestart"})
        time.sleep(0.3)
        still_on = http.get(f"{deaf}{SYSTEM}").json()["PowerState"]
        forced = http.post(f"{deaf}{RESET}", json={"ResetType": "ForceRestart"})
        went_off = wait_for(
            lambda: http.get(f"{deaf}{SYSTEM}").json()["PowerState"], lambda p: p == "Off"
        )
    assert "GracefulRestart" in allowed["ResetType@Redfish.AllowableValues"]
    assert on_again.status_code == 409 and bogus.status_code == 400 and busy.status_code == 409
    assert off == "Off" and lc_off["ServerStatus"] == "PoweredOff"
    assert back["LCStatus"] == "Ready" and back["Status"] == "Ready"
    assert ignored.status_code == 204 and still_on == "On"
    assert forced.status_code == 204 and went_off == "Off"


def test_lc_status_not_ready_while_rebooting(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.64.0/24", durations={"reboot_s": 40.0})
    url = base(lab)
    with client(lab) as http:
        idle = http.post(f"{url}{LC_STATUS}", json={}).json()
        old_path = http.post(
            f"{url}{V1}/Dell/Managers/iDRAC.Embedded.1/DellLCService/Actions/"
            "DellLCService.GetRemoteServicesAPIStatus",
            json={},
        )
        http.post(f"{url}{RESET}", json={"ResetType": "GracefulRestart"})
        statuses: list[tuple[str, str]] = []
        wait_for(
            lambda: statuses.append(_lc(http, url)) or statuses[-1],
            lambda s: s == ("Ready", "OutOfPOST") and len(statuses) > 3,
        )
    assert idle["Status"] == idle["LCStatus"] == "Ready" and idle["ServerStatus"] == "OutOfPOST"
    assert old_path.status_code == 200
    assert ("NotReady", "PoweredOff") in statuses and ("NotReady", "InPOST") in statuses
    assert statuses[-1] == ("Ready", "OutOfPOST")


def _lc(http: httpx.Client, url: str) -> tuple[str, str]:
    body = http.post(f"{url}{LC_STATUS}", json={}).json()
    return body["Status"], body["ServerStatus"]


def test_job_queue_lists_pending_and_deletes(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.65.0/24")
    url = base(lab)
    bios, _ = package_uri(lab, "bios")
    nic, _ = package_uri(lab, "nic")
    with client(lab) as http:
        first = simple_update(http, url, bios)
        second = simple_update(http, url, nic)
        for job_id in (first, second):
            wait_job(http, url, job_id, {"Scheduled"})
        listed = http.get(f"{url}{MGR}/Jobs", params={"$expand": "*($levels=1)"}).json()
        unknown = http.post(f"{url}{DELETE_QUEUE}", json={"JobID": "JID_000000000001"})
        one = http.post(f"{url}{DELETE_QUEUE}", json={"JobID": first})
        after_one = [m["@odata.id"] for m in http.get(f"{url}{MGR}/Jobs").json()["Members"]]
        cleared = http.post(f"{url}{DELETE_QUEUE}", json={"JobID": "JID_CLEARALL"})
        after_all = http.get(f"{url}{MGR}/Jobs").json()
        gone = http.get(f"{url}{MGR}/Jobs/{second}")
        http.post(f"{url}{RESET}", json={"ResetType": "ForceRestart"})
        time.sleep(0.5)
        version, _ = installed(http, url, "BIOS.Setup.1-1")
    states = {m["Id"]: m["JobState"] for m in listed["Members"]}
    assert states == {first: "Scheduled", second: "Scheduled"}
    assert unknown.status_code == 400
    assert one.status_code == 200 and after_one == [f"{MGR}/Jobs/{second}"]
    assert cleared.status_code == 200 and after_all["Members"] == []
    assert gone.status_code == 404
    assert version == "2.19.1"  # the deleted job was never applied


def _install(http: httpx.Client, url: str, lab: Lab, **body: Any) -> str:
    assert lab.repository is not None
    payload = {
        "IPAddress": lab.repository.host,
        "ShareType": "HTTP",
        "ShareName": "",
        "CatalogFile": "Catalog.xml",
        "ApplyUpdate": "False",
        "RebootNeeded": False,
        **body,
    }
    resp = http.post(f"{url}{SWI}.InstallFromRepository", json=payload)
    assert resp.status_code == 202, resp.text
    return resp.headers["Location"].rsplit("/", 1)[1]


def _update_list(http: httpx.Client, url: str) -> httpx.Response:
    return http.post(f"{url}{SWI}.GetRepoBasedUpdateList", json={})


def _packages(xml: str) -> list[dict[str, str]]:
    root = ET.fromstring(xml)  # noqa: S314 - our own lab's output
    return [
        {p.get("NAME", ""): p.findtext("VALUE") or "" for p in inst.iter("PROPERTY")}
        for inst in root.iter("INSTANCE")
    ]


def test_install_from_repository_dry_run_and_sup029(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.66.0/24")
    url = base(lab)
    assert lab.repository is not None
    with client(lab) as http:
        never_ran = _update_list(http, url)
        job_id = _install(http, url, lab, CatalogFile="Catalog.xml.gz")
        parent, _ = wait_job(http, url, job_id, {"Completed", "Failed"})
        listing = _update_list(http, url)
        jobs_after = http.get(f"{url}{MGR}/Jobs").json()["Members@odata.count"]
        for pkg in lab.repository.packages:
            lab.repository.remove(pkg.file)
        second = _install(http, url, lab)
        wait_job(http, url, second, {"Completed", "Failed"})
        up_to_date = _update_list(http, url)
        bios, _ = installed(http, url, "BIOS.Setup.1-1")
    assert never_ran.status_code == 400
    assert parent["JobState"] == "Completed" and parent["JobType"] == "RepositoryUpdate"
    updates = _packages(listing.json()["PackageList"])
    kinds = {u["ComponentID"]: u for u in updates}
    assert set(kinds) == {"25227", "159", "27763", "104298", "103314", "104444"}
    assert kinds["159"]["PackageVersion"] == "2.19.2"
    assert kinds["159"]["ComponentInstalledVersion"] == "2.19.1"
    assert kinds["159"]["RebootType"] == "HOST" and kinds["25227"]["RebootType"] == "IDRAC"
    assert kinds["159"]["PackageName"].startswith("BIOS_")
    assert jobs_after == 1  # a dry run spawns no update jobs
    assert up_to_date.status_code == 400
    info = up_to_date.json()["error"]["@Message.ExtendedInfo"][0]
    assert info["MessageId"].endswith("SUP029")
    assert bios == "2.19.1"


def test_install_from_repository_applies_every_component(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.67.0/24")
    url = base(lab)
    assert lab.repository is not None
    targets = {p.component: p.version for p in lab.repository.packages if p.applies_to("R640")}
    with client(lab, timeout=2.0) as http:
        job_id = _install(http, url, lab, ApplyUpdate="True", RebootNeeded=True)
        wait_job(http, url, job_id, {"Completed", "Failed"})

        def members() -> list[dict[str, Any]]:
            try:
                resp = http.get(f"{url}{MGR}/Jobs", params={"$expand": "*($levels=1)"})
            except httpx.TransportError:
                return []  # the iDRAC is resetting itself (its update goes last)
            return resp.json()["Members"] if resp.status_code == 200 else []

        final = wait_for(
            members,
            lambda ms: len(ms) == 7 and all(m["JobState"] in ("Completed", "Failed") for m in ms),
            timeout_s=20,
        )
        bios, _ = installed(http, url, "BIOS.Setup.1-1")
        idrac = http.get(f"{url}{MGR}").json()["FirmwareVersion"]
    names = sorted(m["Name"] for m in final if m["JobType"] == "FirmwareUpdate")
    assert [m["JobState"] for m in final] == ["Completed"] * 7
    assert names == sorted(
        f"Firmware Update: {n}" for n in ("iDRAC", "BIOS", "CPLD", "RAID", "Network", "Backplane")
    )
    assert bios == targets["bios"] and idrac == targets["idrac"]


def test_unrewritten_mirror_catalog_fails_packages_red132(start_lab: StartLab) -> None:
    lab = start_lab(subnet="127.10.68.0/24")
    url = base(lab)
    assert lab.repository is not None
    lab.repository.write_catalog("Mirror.xml", base_location="downloads.dell.com")
    with client(lab) as http:
        job_id = _install(http, url, lab, CatalogFile="Mirror.xml", ApplyUpdate="True")
        wait_job(http, url, job_id, {"Completed", "Failed"})
        children = wait_for(
            lambda: [
                m
                for m in http.get(f"{url}{MGR}/Jobs", params={"$expand": "*($levels=1)"}).json()[
                    "Members"
                ]
                if m["JobType"] == "FirmwareUpdate"
            ],
            lambda ms: len(ms) == 6 and all(m["JobState"] == "Failed" for m in ms),
        )
    assert {m["MessageId"] for m in children} == {"RED132"}
    assert lab.repository.requests["GET Mirror.xml"] == 1


def test_faults_from_yaml_and_admin_api(start_lab: StartLab, tmp_path: Path) -> None:
    from lab.fleet import load_fleet

    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"subnet: 127.10.69.0/24\nport: 0\nspeed: 50\npassword: {PASSWORD}\n"
        "durations: {download_s: 1, apply_s: 1, reboot_s: 2, idrac_reset_s: 2}\n"
        "bmcs:\n  - {model: R650, faults: {job_fails: true, ignores_graceful: true}}\n"
        "  - {model: R750}\n"
    )
    fleet = load_fleet(path)
    assert fleet.durations.apply_s == 1 and fleet.bmcs[0].faults.job_fails == ["all"]
    lab = start_lab(fleet=fleet)
    url = base(lab)
    uri, _ = package_uri(lab, "bios")
    with client(lab) as http:
        job_id = simple_update(http, url, uri, "OnReset")
        failed, _ = wait_job(http, url, job_id, {"Scheduled", "Failed"})
        ignored = http.post(f"{url}{RESET}", json={"ResetType": "GracefulShutdown"})
        time.sleep(0.1)
        still_on = http.get(f"{url}{SYSTEM}").json()["PowerState"]
    assert failed["JobState"] == "Scheduled"  # failure happens when applying
    assert ignored.status_code == 204 and still_on == "On"
    other = lab.bmcs[1]
    with httpx.Client(base_url=lab.admin_url, timeout=5) as admin:
        hurt = admin.post(
            f"/lab/bmcs/{other.address}/faults", json={"job_hangs": ["bios"], "hang_s": 5}
        )
        bad = admin.post(f"/lab/bmcs/{other.address}/faults", json={"job_fails": ["toaster"]})
        listed = admin.get("/lab/bmcs").json()["bmcs"]
        jobs = admin.get(f"/lab/bmcs/{lab.bmcs[0].address}/jobs").json()
        repository = admin.get("/lab/repository").json()
    assert hurt.status_code == 200 and hurt.json()["faults"]["job_hangs"] == ["bios"]
    assert bad.status_code == 422
    assert listed[0]["pending_jobs"] == 1 and listed[1]["faults"]["hang_s"] == 5
    assert other.faults.hangs("bios") and not other.faults.hangs("nic")
    assert [j["state"] for j in jobs] == ["Scheduled"] and jobs[0]["target"] == "BIOS.Setup.1-1"
    assert repository["base_url"] == lab.repository.base_url  # type: ignore[union-attr]
    assert {p["component"] for p in repository["packages"]} >= {"bios", "idrac"}


def test_hundred_bmcs_update_at_once(start_lab: StartLab) -> None:
    lab = start_lab(100, subnet="127.10.70.0/24", speed=100.0)
    assert lab.repository is not None
    repo = lab.repository

    async def update_all() -> list[str]:
        # Drive every BMC concurrently from one client loop, like a 100-server flow.
        verify = ssl.create_default_context(cafile=str(lab.ca_path))
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            verify=verify, auth=("root", PASSWORD), timeout=10, limits=limits
        ) as http:

            async def one(i: int) -> str:
                url = base(lab, i)
                pkg = repo.package_for(lab.bmcs[i].spec.model, "bios")
                resp = await http.post(
                    f"{url}{SIMPLE_UPDATE}",
                    json={
                        "ImageURI": repo.url(pkg.file),
                        "@Redfish.OperationApplyTime": "Immediate",
                    },
                )
                job_id = resp.headers["Location"].rsplit("/", 1)[1]
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    state = (await http.get(f"{url}{MGR}/Jobs/{job_id}")).json()["JobState"]
                    if state in ("Completed", "Failed"):
                        return str(state)
                    await asyncio.sleep(0.05)
                return "timeout"

            return list(await asyncio.gather(*(one(i) for i in range(100))))

    started = time.monotonic()
    states = asyncio.run(update_all())
    elapsed = time.monotonic() - started
    versions = {b.bios_version for b in lab.bmcs}
    assert states == ["Completed"] * 100
    assert versions == {repo.target_version(m, "bios") for m in ("R640", "R650")}
    assert elapsed < 15
