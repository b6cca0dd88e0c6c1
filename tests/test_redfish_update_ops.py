"""DellUpdates: job queue, host reset and power, LC readiness, repository updates, inventory."""

from __future__ import annotations

import pytest

from clients.errors import DeadlineExceeded, PreconditionError, RemoteError
from clients.redfish.models import ComponentKind
from clients.redfish.update import DellUpdates
from clients.redfish.update_wait import ExpectedPace
from tests.redfish_update_fake import (
    DELETE_QUEUE,
    INSTALL,
    FakeTime,
    FakeUpdateIdrac,
    update_client_for,
)


def cim_instance(installed: list[str], **props: str) -> str:
    """One DCIM_RepoUpdateSWID instance, shaped like a real iDRAC9 PackageList entry."""
    plain = "".join(
        f'<PROPERTY NAME="{k}" TYPE="string"><VALUE>{v}</VALUE></PROPERTY>\n'
        for k, v in props.items()
    )
    values = "".join(f"<VALUE>{v}</VALUE>" for v in installed)
    key = props.get("Target", "")
    return (
        '<VALUE.NAMEDINSTANCE><INSTANCENAME CLASSNAME="DCIM_RepoUpdateSWID">'
        f'<KEYBINDING NAME="InstanceID"><KEYVALUE>{key}</KEYVALUE></KEYBINDING>'
        '</INSTANCENAME>\n<INSTANCE CLASSNAME="DCIM_RepoUpdateSWID">\n'
        f'{plain}<PROPERTY NAME="JobID" TYPE="string"><VALUE/></PROPERTY>\n'
        '<PROPERTY.ARRAY NAME="ComponentInstalledVersion" TYPE="string">'
        f"<VALUE.ARRAY>{values}</VALUE.ARRAY></PROPERTY.ARRAY>\n"
        "</INSTANCE></VALUE.NAMEDINSTANCE>\n"
    )


IDRAC_DUP = "iDRAC-with-Lifecycle-Controller_Firmware_Y0CWW_WN64_7.10.30.00_A00.EXE"
PACKAGE_LIST = (
    '<?xml version="1.0"?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    '<MESSAGE ID="4711" PROTOCOLVERSION="1.0"><SIMPLEREQ>\n'
    + cim_instance(
        ["2.18.1"],
        Criticality="2",
        DisplayName="BIOS",
        PackagePath="FOLDER01/1/BIOS_8R8XJ_WN64_2.19.1.EXE",
        PackageName="BIOS_8R8XJ_WN64_2.19.1.EXE",
        PackageVersion="2.19.1",
        RebootType="HOST",
        Target="DCIM:INSTALLED#741__BIOS.Setup.1-1",
        ComponentID="159",
        ComponentType="BIOS",
    )
    + cim_instance(
        ["7.00.00.174"],
        Criticality="1",
        DisplayName="Integrated Dell Remote Access Controller",
        PackagePath=f"FOLDER02/1/{IDRAC_DUP}",
        PackageName=IDRAC_DUP,
        PackageVersion="7.10.30.00",
        RebootType="IDRAC",
        Target="DCIM:INSTALLED#iDRAC.Embedded.1-1#IDRACinfo",
        ComponentID="25227",
        ComponentType="FRMW",
    )
    + cim_instance(
        ["21.5.9", "21.5.9"],
        Criticality="3",
        DisplayName="Intel(R) Ethernet 10G 2P X710",
        PackageVersion="22.31.6",
        RebootType="HOST",
        Target="DCIM:INSTALLED#701__NIC.Integrated.1-1-1",
        ComponentID="104684",
    )
    + "</SIMPLEREQ></MESSAGE></CIM>\n"
)


def updates(fake: FakeUpdateIdrac, time: FakeTime | None = None):
    bmc = update_client_for(fake)
    time = time or FakeTime()
    return bmc, DellUpdates(bmc, clock=time.clock, sleep=time.sleep)


# -- job queue ------------------------------------------------------------------------


@pytest.mark.parametrize("expand", [True, False])
async def test_pending_jobs_are_the_unfinished_ones(expand: bool) -> None:
    fake = FakeUpdateIdrac()
    fake.settings.expand_jobs = expand
    done = fake.add_job([("Completed", 100, "Job completed successfully.", "RED001")])
    failed = fake.add_job([("Failed", 100, "Unable to transfer image", "RED007")])
    scheduled = fake.add_job([("Scheduled", 0, "Task successfully scheduled.", "JCP001")])
    running = fake.add_job([("Running", None, "Applying.", "RED004")])
    bmc, dell = updates(fake)
    async with bmc:
        everything = await dell.jobs()
        pending = await dell.pending_jobs()
    assert [j.id for j in everything] == [done, failed, scheduled, running]
    assert [(j.id, j.state) for j in pending] == [(scheduled, "Scheduled"), (running, "Running")]
    assert pending[1].percent_complete is None


async def test_clear_job_queue_deletes_every_job() -> None:
    fake = FakeUpdateIdrac()
    fake.add_job([("Scheduled", 0, "Task successfully scheduled.", "JCP001")])
    fake.add_job([("Running", 10, "Applying.", "RED004")])
    bmc, dell = updates(fake)
    async with bmc:
        await dell.clear_job_queue()
        left = await dell.pending_jobs()
    assert left == [] and fake.jobs == {}
    assert fake.posts == [(DELETE_QUEUE, {"JobID": "JID_CLEARALL"})]


async def test_clear_one_job_and_unknown_job_is_an_error() -> None:
    fake = FakeUpdateIdrac()
    keep = fake.add_job([("Scheduled", 0, "Task successfully scheduled.", "JCP001")])
    drop = fake.add_job([("Scheduled", 0, "Task successfully scheduled.", "JCP001")])
    bmc, dell = updates(fake)
    async with bmc:
        await dell.clear_job_queue(drop)
        with pytest.raises(RemoteError) as info:
            await dell.clear_job_queue("JID_999999999999")
    assert list(fake.jobs) == [keep]
    assert info.value.status == 400 and info.value.code == "IDRAC.2.8.SUP011"


# -- host power -----------------------------------------------------------------------


async def test_reset_posts_reset_type_and_power_goes_off_then_on() -> None:
    fake = FakeUpdateIdrac()
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        assert await dell.power_state() == "On"
        await dell.reset("GracefulRestart")
        off = await dell.wait_power_state("Off", timeout_s=60, interval_s=2)
        on = await dell.wait_power_state("On", timeout_s=60, interval_s=2)
    assert (off, on) == ("Off", "On")
    assert fake.posts == [
        (
            "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset",
            {"ResetType": "GracefulRestart"},
        )
    ]


async def test_unknown_reset_type_is_refused_before_posting() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        with pytest.raises(PreconditionError, match="GracefulRestart"):
            await dell.reset("Reboot")
    assert fake.posts == []


async def test_host_that_never_comes_back_hits_the_deadline() -> None:
    fake = FakeUpdateIdrac()
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        await dell.reset("ForceOff")
        with pytest.raises(DeadlineExceeded, match="host power On"):
            await dell.wait_power_state("On", timeout_s=30, interval_s=10)
    assert time.now - 1000.0 == pytest.approx(30)


async def test_power_wait_survives_a_bmc_outage() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        await dell.reset("PowerCycle")
        fake.outage = ["connect", "503"]
        assert await dell.wait_power_state("On", timeout_s=60, interval_s=1) == "On"


# -- Lifecycle Controller -------------------------------------------------------------


async def test_wait_lc_ready_polls_until_ready() -> None:
    fake = FakeUpdateIdrac()
    fake.lc_script = ["NotReady", "NotReady"]
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        fake.outage = ["connect"]
        status = await dell.wait_lc_ready(timeout_s=120, interval_s=5)
    assert status.ready and status.server_status == "OutOfPOST"
    assert time.sleeps == [5, 5, 5]


async def test_lc_never_ready_names_the_last_status() -> None:
    fake = FakeUpdateIdrac()
    fake.lc_script = ["NotReady"] * 100
    bmc, dell = updates(fake)
    async with bmc:
        assert not (await dell.lc_status()).ready
        with pytest.raises(DeadlineExceeded, match="last: NotReady/NotReady"):
            await dell.wait_lc_ready(timeout_s=20, interval_s=5)


async def test_host_up_needs_the_lc_ready_with_the_host_not_powered_off() -> None:
    fake = FakeUpdateIdrac()
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        # Read before the shutdown went through ("On"), then off for good: the LC of a
        # host that stayed off says Ready (ServerStatus PoweredOff), which is not "back".
        fake.power_script = ["On"] + ["Off"] * 50
        fake.server_status = "PoweredOff"
        with pytest.raises(DeadlineExceeded, match="host power On"):
            await dell.wait_host_up(timeout_s=30, interval_s=5)
        assert time.now - 1000.0 == pytest.approx(30)
        fake.power_script, fake.server_status = ["Off", "On"], None
        status = await dell.wait_host_up(timeout_s=60, interval_s=5)
    assert status.ready and status.server_status == "OutOfPOST"


async def test_expected_pace_reads_more_often_around_the_expected_end_only() -> None:
    time = FakeTime()
    pace = ExpectedPace(10.0, 2.0, clock=time.clock, sleep=time.sleep)
    for _ in range(12):
        await pace(2.0)
    # regular until 9.5 s, every 0.5 s until 11 s, then regular again
    assert time.sleeps == [2.0, 2.0, 2.0, 2.0, 1.5, 0.5, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
    unknown = FakeTime()
    regular = ExpectedPace(None, 2.0, clock=unknown.clock, sleep=unknown.sleep)
    for _ in range(3):
        await regular(2.0)
    assert unknown.sleeps == [2.0, 2.0, 2.0]


# -- repository updates ---------------------------------------------------------------


async def test_install_from_repository_dry_run_body_and_job() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        job_id = await dell.install_from_repository(
            host="127.0.0.1:8099",
            share_name="repo",
            catalog_file="Catalog.xml.gz",
            apply_update=False,
        )
        job = await dell.wait_for_job(job_id, timeout_s=60, interval_s=1)
    assert job.job_type == "RepositoryUpdate" and job.state == "Completed"
    assert fake.posts[0] == (
        f"{INSTALL}/DellSoftwareInstallationService.InstallFromRepository",
        {
            "IPAddress": "127.0.0.1:8099",
            "ShareType": "HTTP",
            "ShareName": "repo",
            "CatalogFile": "Catalog.xml.gz",
            "ApplyUpdate": "False",
            "RebootNeeded": False,
            "IgnoreCertWarning": "Off",
        },
    )


@pytest.mark.parametrize(
    ("kwargs", "subject"),
    [({"share_type": "FTP"}, "share_type"), ({"host": "http://127.0.0.1/repo"}, "host")],
)
async def test_install_from_repository_refuses_bad_shares(kwargs: dict, subject: str) -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    args = {"host": "127.0.0.1", "share_name": "repo", "apply_update": True} | kwargs
    async with bmc:
        with pytest.raises(PreconditionError) as info:
            await dell.install_from_repository(**args)
    assert info.value.subject == subject and fake.posts == []


async def test_repo_update_list_parses_the_cim_package_list() -> None:
    fake = FakeUpdateIdrac()
    fake.settings.package_list = PACKAGE_LIST
    bmc, dell = updates(fake)
    async with bmc:
        updates_ = await dell.repo_update_list()
    assert [(u.kind, u.package_version, u.installed_version) for u in updates_] == [
        (ComponentKind.BIOS, "2.19.1", "2.18.1"),
        (ComponentKind.IDRAC, "7.10.30.00", "7.00.00.174"),
        (ComponentKind.NIC, "22.31.6", "21.5.9"),
    ]
    bios, idrac, nic = updates_
    assert bios.package_name == "BIOS_8R8XJ_WN64_2.19.1.EXE"
    assert (bios.criticality_label, bios.reboot_type, bios.fqdd) == (
        "Urgent",
        "HOST",
        "BIOS.Setup.1-1",
    )
    assert (idrac.fqdd, idrac.reboot_type, idrac.criticality_label) == (
        "iDRAC.Embedded.1-1",
        "IDRAC",
        "Recommended",
    )
    assert nic.installed_versions == ("21.5.9", "21.5.9") and nic.package_path is None


async def test_up_to_date_sup029_is_an_empty_list_not_an_error() -> None:
    fake = FakeUpdateIdrac()
    fake.settings.package_list = None
    bmc, dell = updates(fake)
    async with bmc:
        assert await dell.repo_update_list() == []


async def test_repo_update_list_other_errors_still_raise() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    fake.outage = []
    async with bmc:
        await bmc.login()
        fake.outage = ["500"]
        with pytest.raises(RemoteError) as info:
            await dell.repo_update_list()
    assert info.value.status == 500


# -- inventory ------------------------------------------------------------------------


async def test_installed_versions_group_by_kind_without_previous() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        versions = await dell.installed_versions()
    assert [c.version for c in versions[ComponentKind.IDRAC]] == ["7.00.00.174"]
    assert [c.fqdd for c in versions[ComponentKind.BACKPLANE]] == [
        "Enclosure.Internal.0-1:RAID.Integrated.1-1"
    ]
    assert versions[ComponentKind.BIOS][0].component_id == "159"
    assert set(versions) >= {
        ComponentKind.CPLD,
        ComponentKind.RAID,
        ComponentKind.NIC,
        ComponentKind.DISK,
    }
