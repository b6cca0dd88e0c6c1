"""DellUpdates: SimpleUpdate, the Dell job view, and waits that survive an iDRAC reset."""

from __future__ import annotations

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
from clients.firmware import ApplyTime
from clients.redfish.jobs import STAGED_STATES, DellJob
from clients.redfish.update import DellUpdates
from tests.redfish_update_fake import (
    IMMEDIATE_STEPS,
    ONRESET_STEPS,
    SIMPLE_UPDATE,
    FakeTime,
    FakeUpdateIdrac,
    update_client_for,
)

SESSIONS = "/redfish/v1/SessionService/Sessions"
IMAGE = "http://127.0.0.1:8099/repo/BIOS_8R8XJ_WN64_2.19.1.EXE"


def login_attempts(fake: FakeUpdateIdrac) -> int:
    """Session POSTs, the ones refused during an outage included."""
    return sum(1 for method, path, _ in fake.log if method == "POST" and path == SESSIONS)


def updates(fake: FakeUpdateIdrac, time: FakeTime | None = None):
    bmc = update_client_for(fake)
    time = time or FakeTime()
    return bmc, DellUpdates(bmc, clock=time.clock, sleep=time.sleep)


# -- SimpleUpdate ---------------------------------------------------------------------


async def test_simple_update_posts_image_and_returns_job_id_from_location() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        job_id = await dell.simple_update(IMAGE, apply_time=ApplyTime.IMMEDIATE)
    assert job_id in fake.jobs
    assert job_id.startswith("JID_")
    assert fake.posts == [
        (
            SIMPLE_UPDATE,
            {
                "ImageURI": IMAGE,
                "TransferProtocol": "HTTP",
                "@Redfish.OperationApplyTime": "Immediate",
            },
        )
    ]


async def test_simple_update_refuses_protocol_the_idrac_does_not_offer() -> None:
    fake = FakeUpdateIdrac()
    fake.settings.protocols = ["HTTP"]
    bmc, dell = updates(fake)
    async with bmc:
        with pytest.raises(PreconditionError) as info:
            await dell.simple_update(
                "https://127.0.0.1:8099/repo/BIOS.EXE", transfer_protocol="HTTPS"
            )
    assert "HTTPS not offered" in str(info.value) and "HTTP" in info.value.reason
    assert fake.posts == []  # refused before acting
    assert fake.jobs == {}


async def test_simple_update_refuses_protocol_that_does_not_match_the_uri() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        with pytest.raises(PreconditionError, match="does not match"):
            await dell.simple_update(IMAGE, transfer_protocol="HTTPS")
        with pytest.raises(PreconditionError, match="OnReset or Immediate"):
            await dell.simple_update(IMAGE, apply_time="Later")
        with pytest.raises(PreconditionError, match="not an http"):
            await dell.simple_update("ftp://127.0.0.1/BIOS.EXE", transfer_protocol="FTP")
    assert fake.posts == []


async def test_simple_update_without_advertised_protocols_still_posts() -> None:
    fake = FakeUpdateIdrac()
    fake.settings.protocols = []
    bmc, dell = updates(fake)
    async with bmc:
        job_id = await dell.simple_update(IMAGE)
    assert fake.posts[0][1]["@Redfish.OperationApplyTime"] == "OnReset"
    assert job_id in fake.jobs


# -- reading jobs ---------------------------------------------------------------------


async def test_job_reads_dell_view_and_missing_percent_is_none() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job([("Downloaded", None, "Package successfully downloaded.", "RED002")])
    bmc, dell = updates(fake)
    async with bmc:
        job = await dell.job(job_id)
    assert job == DellJob(
        id=job_id,
        state="Downloaded",
        message="Package successfully downloaded.",
        message_id="RED002",
        percent_complete=None,
        job_type="FirmwareUpdate",
        name="Firmware Update: BIOS",
        source="dell",
    )
    assert not job.is_final


async def test_job_falls_back_to_task_service_when_the_dell_view_lacks_it() -> None:
    fake = FakeUpdateIdrac()
    fake.settings.dell_jobs = False
    job_id = fake.add_job([("Running", 40, "Installing.", "RED004")])
    bmc, dell = updates(fake)
    async with bmc:
        job = await dell.job(job_id)
    assert (job.source, job.state, job.percent_complete) == ("task", "Running", 40)
    assert fake.count("GET", f"/redfish/v1/TaskService/Tasks/{job_id}") == 1


async def test_job_unknown_to_both_views_is_not_found() -> None:
    fake = FakeUpdateIdrac()
    bmc, dell = updates(fake)
    async with bmc:
        with pytest.raises(NotFoundError):
            await dell.job("JID_000000000001")
        with pytest.raises(PreconditionError):
            await dell.job("../../Sessions")


# -- waiting --------------------------------------------------------------------------


async def test_onreset_wait_ends_at_scheduled_and_reports_progress() -> None:
    fake = FakeUpdateIdrac()
    fake.next_steps = list(ONRESET_STEPS)
    bmc, dell = updates(fake)
    seen: list[tuple[str, int | None]] = []
    async with bmc:
        job_id = await dell.simple_update(IMAGE)
        job = await dell.wait_for_job(
            job_id,
            until=STAGED_STATES,
            timeout_s=60,
            interval_s=1,
            on_progress=lambda j: seen.append((j.state, j.percent_complete)),
        )
    # Downloaded is a staged state too: an OnReset update is ready for the reboot there.
    assert job.state == "Downloaded"
    assert seen == [("New", 0), ("Downloading", 30), ("Downloaded", None)]


async def test_immediate_wait_follows_reboot_to_completed_with_async_callback() -> None:
    fake = FakeUpdateIdrac()
    fake.next_steps = list(IMMEDIATE_STEPS)
    bmc, dell = updates(fake)
    states: list[str] = []

    async def progress(job: DellJob) -> None:
        states.append(job.state)

    async with bmc:
        job_id = await dell.simple_update(IMAGE, apply_time="Immediate")
        job = await dell.wait_for_job(job_id, timeout_s=60, interval_s=1, on_progress=progress)
    assert job.state == "Completed" and job.percent_complete == 100
    assert states == ["Downloading", "Running", "RebootPending", "RebootCompleted", "Completed"]


async def test_staged_wait_also_ends_on_a_final_success() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job(
        [("Running", 50, "Applying.", "RED004"), ("Completed", 100, "Done.", "RED001")]
    )
    bmc, dell = updates(fake)
    async with bmc:
        job = await dell.wait_for_job(job_id, until=STAGED_STATES, timeout_s=30, interval_s=1)
    assert job.state == "Completed"


async def test_completed_with_errors_is_returned_not_raised() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job(
        [("Running", 50, "Applying.", "RED004"), ("CompletedWithErrors", 100, "Partly.", "SUP018")]
    )
    bmc, dell = updates(fake)
    async with bmc:
        job = await dell.wait_for_job(job_id, timeout_s=30, interval_s=1)
    assert job.state == "CompletedWithErrors" and job.is_success
    assert job.messages() == ["SUP018: Partly."]


@pytest.mark.parametrize(
    ("final", "message", "message_id"),
    [
        ("Failed", "Unable to transfer image", "RED007"),
        ("RebootFailed", "Reboot failed.", "RED020"),
        ("Unknown", "Job state unknown.", "JCP000"),
        (
            "Failed",
            "The Job was in running state and made no progress for the allocated time",
            "JCP052",
        ),
    ],
)
async def test_failed_states_raise_job_failed_with_the_idrac_message(
    final: str, message: str, message_id: str
) -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job(
        [("Downloading", 10, "Downloading.", "RED003"), (final, 100, message, message_id)]
    )
    bmc, dell = updates(fake)
    async with bmc:
        with pytest.raises(JobFailedError) as info:
            await dell.wait_for_job(job_id, timeout_s=30, interval_s=1)
    assert (info.value.job, info.value.state) == (job_id, final)
    assert info.value.messages == [f"{message_id}: {message}"]


async def test_hung_job_still_running_with_jcp052_fails_at_once() -> None:
    fake = FakeUpdateIdrac()
    hung = "The Job was in running state and made no progress for the allocated time"
    job_id = fake.add_job([("Running", 40, "Applying.", "RED004"), ("Running", 40, hung, "JCP052")])
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        with pytest.raises(JobFailedError, match="JCP052"):
            await dell.wait_for_job(job_id, timeout_s=3600, interval_s=10)
    assert time.sleeps == [10]  # did not wait for the deadline


async def test_stuck_job_hits_the_deadline_naming_its_last_state() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job([("Running", 40, "Applying the package.", "RED004")])
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        with pytest.raises(DeadlineExceeded) as info:
            await dell.wait_for_job(job_id, timeout_s=60, interval_s=10)
    assert "last: Running 40%: Applying the package." in str(info.value)
    assert info.value.waited_s == pytest.approx(60)
    assert fake.count("GET", f"/redfish/v1/Managers/iDRAC.Embedded.1/Jobs/{job_id}") == 7


async def test_idrac_reset_window_is_survived_and_the_new_version_read() -> None:
    """iDRAC update: connection refused, 503, 404, sessions dropped, a refused login, then back."""
    fake = FakeUpdateIdrac()
    fake.next_name = "Firmware Update: iDRAC with Lifecycle Controller"
    fake.next_steps = [
        ("Downloading", 30, "Downloading the package.", "RED003"),
        ("Running", 60, "Installing the package.", "RED004"),
        ("Completed", 100, "Job completed successfully.", "RED001"),
    ]
    fake.on_complete = lambda: setattr(fake, "idrac_version", "7.10.30.00")
    bmc, dell = updates(fake)
    async with bmc:
        job_id = await dell.simple_update(
            IMAGE.replace("BIOS_8R8XJ_WN64_2.19.1", "iDRAC_WN64_7.10.30.00_A00"),
            apply_time="Immediate",
        )
        first = await dell.job(job_id)
        logins_before = login_attempts(fake)
        # The iDRAC applies its own firmware and restarts.
        fake.outage = ["connect", "timeout", "connect", "503", "500", "404", "drop", "401"]
        job = await dell.wait_for_job(job_id, timeout_s=600, interval_s=5)
        manager = await bmc.manager()
    assert first.state == "Downloading"
    assert job.state == "Completed"
    assert manager.firmware_version == "7.10.30.00"
    # The dropped session was replaced: one re-login refused (401), the next one accepted.
    assert login_attempts(fake) == logins_before + 2
    assert len(fake.sessions) == 0  # logged out at the end


async def test_outage_until_the_deadline_chains_the_last_error() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job([("Running", 10, "Applying.", "RED004")])
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        await bmc.login()
        fake.outage = ["connect"] * 100
        with pytest.raises(DeadlineExceeded) as info:
            await dell.wait_for_job(job_id, timeout_s=30, interval_s=5)
    assert isinstance(info.value.__cause__, TransportError)
    assert "never read" in str(info.value)


async def test_401_without_an_outage_is_not_swallowed() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job([("Running", 10, "Applying.", "RED004")])
    bmc, dell = updates(fake)
    async with bmc:
        await bmc.login()
        fake.outage = ["drop", "401"]  # session gone and the re-login refused: a real auth problem
        with pytest.raises(AuthError):
            await dell.wait_for_job(job_id, timeout_s=600, interval_s=5)


async def test_endless_401_after_an_outage_gives_up_without_hammering_logins() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job([("Running", 10, "Applying.", "RED004")])
    bmc, dell = updates(fake)
    async with bmc:
        await bmc.login()
        logins = login_attempts(fake)
        fake.outage = ["connect", "drop"] + ["401"] * 50
        with pytest.raises(AuthError):
            await dell.wait_for_job(job_id, timeout_s=3600, interval_s=5)
    # 3 refused re-logins tolerated, the 4th raised: no endless login loop.
    assert login_attempts(fake) - logins == 4


async def test_untrusted_certificate_is_not_waited_out() -> None:
    fake = FakeUpdateIdrac()
    job_id = fake.add_job([("Running", 10, "Applying.", "RED004")])
    time = FakeTime()
    bmc, dell = updates(fake, time)
    async with bmc:
        await bmc.login()
        fake.outage = ["connect", "tls"]
        with pytest.raises(TlsError):
            await dell.wait_for_job(job_id, timeout_s=600, interval_s=5)
    assert time.sleeps == [5]


async def test_task_service_fallback_maps_states_and_dropped_task_is_waited_through() -> None:
    fake = FakeUpdateIdrac()
    fake.settings.dell_jobs = False
    fake.settings.drop_finished_tasks = False
    job_id = fake.add_job(
        [
            ("Scheduled", 0, "Task successfully scheduled.", "JCP001"),
            ("Running", 50, "Applying.", "RED004"),
            ("Completed", 100, "Job completed successfully.", "RED001"),
        ]
    )
    bmc, dell = updates(fake)
    states: list[str] = []
    async with bmc:
        job = await dell.wait_for_job(
            job_id, timeout_s=60, interval_s=1, on_progress=lambda j: states.append(j.state)
        )
    # TaskState Pending is not taken for a staged OnReset job: the wait goes on.
    assert states == ["Waiting", "Running", "Completed"]
    assert job.source == "task"
