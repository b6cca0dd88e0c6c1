"""Prefect tasks of the second half of a firmware update on a Dell iDRAC.

Once the job is started and its id recorded: for OnReset, one task follows
the download until the job is staged and reboots the host (graceful, forced
after a deadline); then one task follows the update to its end: host back,
job completed, host back, version verified. Same rules as
:mod:`tasks.firmware`: a block NAME in, a session per task, actions
check-then-act.
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from clients.errors import (
    BusyError,
    DeadlineExceeded,
    JobFailedError,
    ServerError,
    TransportError,
)
from clients.firmware.repository import Package
from clients.polling import poll
from clients.redfish.jobs import STAGED_STATES, DellJob
from clients.redfish.models import FirmwareComponent
from clients.redfish.update import DellUpdates, ResetType
from clients.redfish.update_wait import ExpectedPace
from tasks.firmware import _READ, _open, installed_of, job_progress
from tasks.retry import retry_on_transient


async def _went_down(dell: DellUpdates, job_id: str | None) -> bool:
    """Any sign that the host is rebooting (or did): a poll can miss a short power-off."""
    if (await dell.power_state()) == "Off":
        return True
    lc = await dell.lc_status()
    if lc.server_status in ("InPOST", "PoweredOff") or not lc.ready:
        return True
    if job_id:  # an OnReset job leaves Scheduled only when the host reboots
        return (await dell.job(job_id)).state not in STAGED_STATES
    return False


@task(
    cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10, retry_condition_fn=retry_on_transient
)
async def reboot_server(
    address: str,
    port: int,
    credentials_block: str,
    *,
    graceful_timeout_s: float = 300.0,
    interval_s: float = 5.0,
    job_id: str | None = None,
) -> str:
    """Reboot the host: GracefulRestart, ForceRestart when it has not gone down in time.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        graceful_timeout_s: How long the OS gets to restart by itself.
        interval_s: Pause between reads.
        job_id: An OnReset job waiting for this reboot (its state is one more sign).

    Returns:
        Which reset worked ("GracefulRestart", "ForceRestart" or "On" for a host that was off).
    """
    async with await _open(address, port, credentials_block) as bmc:
        return await _reboot(
            DellUpdates(bmc),
            address,
            graceful_timeout_s=graceful_timeout_s,
            interval_s=interval_s,
            job_id=job_id,
        )


async def _reboot(
    dell: DellUpdates,
    address: str,
    *,
    graceful_timeout_s: float,
    interval_s: float,
    job_id: str | None,
) -> str:
    if (await dell.power_state()) == "Off":
        await dell.reset(ResetType.ON)
        return "On"
    await dell.reset(ResetType.GRACEFUL_RESTART)
    try:
        await poll(
            lambda: _went_down(dell, job_id),
            until=bool,
            operation=f"{address}: host going down after GracefulRestart",
            timeout_s=graceful_timeout_s,
            interval_s=min(interval_s, 1.0),
            tolerate=(TransportError, BusyError, ServerError),
        )
        return "GracefulRestart"
    except DeadlineExceeded:
        get_run_logger().warning("%s ignored GracefulRestart: forcing a restart", address)
    await dell.reset(ResetType.FORCE_RESTART)
    return "ForceRestart"


class StagedUpdate(BaseModel):
    """An OnReset job followed until staged, and the host rebooted to apply it."""

    job: DellJob = Field(description="The job as staged (or done, when it needed no reboot)")
    reboot: str | None = Field(description="Which reset worked; None: no host reboot needed")
    staged_s: float = Field(description="From the task's start to the job staged")
    progress_artifact: UUID | None = Field(
        default=None, description="The job's progress artifact, for the task that follows it"
    )


@task(
    cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10, retry_condition_fn=retry_on_transient
)
async def reboot_when_staged(
    address: str,
    port: int,
    credentials_block: str,
    job_id: str,
    *,
    staged_s: float,
    graceful_timeout_s: float = 300.0,
    interval_s: float = 5.0,
    expect_s: float | None = None,
    progress: str | None = None,
) -> StagedUpdate:
    """Follow an OnReset job until staged (Scheduled/Downloaded), then reboot the host.

    The download is most of the wait. A job that needs no host reboot (the
    iDRAC's own) goes on to Completed: then nothing is rebooted. A retry
    finds the job past staged and does not reboot twice.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        job_id: The job, already recorded in the inventory.
        staged_s: Deadline of the download until staged.
        graceful_timeout_s: How long the OS gets to restart by itself.
        interval_s: Pause between reads.
        expect_s: How long staging took on this model so far (``staged_s`` of
            earlier servers): read more often around then (:class:`ExpectedPace`).
        progress: Key of the job's progress artifact.

    Returns:
        The staged job, the reset that worked, and how long staging took.

    Raises:
        JobFailedError: The job failed (e.g. the package could not be downloaded).
        DeadlineExceeded: Not staged in ``staged_s`` (the job is left to the caller).
    """
    started = time.monotonic()
    how: str | None = None
    async with (
        job_progress(progress, job_id) as report,
        await _open(address, port, credentials_block) as bmc,
    ):
        paced = DellUpdates(bmc, sleep=ExpectedPace(expect_s, interval_s))
        job = await paced.wait_for_job(
            job_id,
            until=STAGED_STATES,
            timeout_s=staged_s,
            interval_s=interval_s,
            on_progress=report,
        )
        took = time.monotonic() - started
        if job.state in STAGED_STATES:
            how = await _reboot(
                DellUpdates(bmc),
                address,
                graceful_timeout_s=graceful_timeout_s,
                interval_s=interval_s,
                job_id=job_id,
            )
    return StagedUpdate(
        job=job,
        reboot=how,
        staged_s=round(took, 3),
        progress_artifact=report.artifact if report is not None else None,
    )


async def _host_back(dell: DellUpdates, *, timeout_s: float, interval_s: float) -> str:
    """Host powered on, then the Lifecycle Controller ready; returns the LC status."""
    status = await dell.wait_host_up(timeout_s=timeout_s, interval_s=interval_s)
    return str(status.status)


@task(cache_policy=NO_CACHE, **_READ)
async def wait_for_server(
    address: str, port: int, credentials_block: str, *, timeout_s: float, interval_s: float = 5.0
) -> str:
    """Wait for the host to be powered on and the Lifecycle Controller ready again.

    Returns:
        The LC status once ready.
    """
    async with await _open(address, port, credentials_block) as bmc:
        return await _host_back(DellUpdates(bmc), timeout_s=timeout_s, interval_s=interval_s)


def _installed_version(
    address: str,
    found: list[FirmwareComponent],
    package: Package,
    before: str | None,
    job_id: str | None,
) -> str:
    """The package's version when it is installed.

    Raises:
        TransportError: The component is not in the inventory yet (retried).
        JobFailedError: "Completed" but the version did not change (a known iDRAC failure).
    """
    versions = sorted({c.version for c in found if c.version})
    if not versions:
        raise TransportError(target=address, reason=f"no {package.component} in the inventory yet")
    target = package.version
    if (target and target in versions) or (not target and before and versions != [before]):
        return target or versions[0]
    raise JobFailedError(
        job=job_id or "-",
        state="Completed",
        messages=[
            f"{package.component} still at {', '.join(versions)} after the update "
            f"(expected {target or 'a change from ' + str(before)})"
        ],
    )


class AppliedUpdate(BaseModel):
    """A firmware job followed to its end and its result verified on the device."""

    version: str = Field(description="The installed version (the package's)")
    job: DellJob = Field(description="The job in its final state")
    took_s: float = Field(description="From the task's start to the host back after the job")


@task(cache_policy=NO_CACHE, **_READ)
async def complete_firmware_update(
    address: str,
    port: int,
    credentials_block: str,
    package: Package,
    before: str | None,
    job_id: str,
    *,
    rebooted: bool,
    host_back_s: float,
    job_done_s: float,
    interval_s: float = 5.0,
    expect_s: float | None = None,
    progress: str | None = None,
    progress_artifact: UUID | None = None,
) -> AppliedUpdate:
    """Follow an update to its end: host back, job completed, host back, version verified.

    What is left of an update once it is started (Immediate) or staged and the
    host rebooted (OnReset), in one session: one task, not four, because
    each step only waits and reads. Every wait survives the iDRAC resetting
    itself (the client logs in again). A retry starts over; finished steps
    then pass at the first read.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        package: The package being installed (component and target version).
        before: The version installed before (for a package without a version).
        job_id: The firmware job.
        rebooted: rackflow rebooted the host: wait for it first (a host that never
            returns costs ``host_back_s``, not the job's deadline).
        host_back_s: Deadline of each wait for the host (powered on, LC ready).
        job_done_s: Deadline of the job.
        interval_s: Pause between reads.
        expect_s: How long this took on this model so far (``took_s``): read more
            often around then (:class:`ExpectedPace`).
        progress: Key of the job's progress artifact.
        progress_artifact: That artifact, when the start created it.

    Returns:
        The installed version, the job, and how long until the host was back.

    Raises:
        JobFailedError: The job failed or hung, or completed with the version unchanged.
        DeadlineExceeded: The host or the job did not get there in time.
    """
    started = time.monotonic()
    async with (
        job_progress(progress, job_id, progress_artifact) as report,
        await _open(address, port, credentials_block) as bmc,
    ):
        dell = DellUpdates(bmc, sleep=ExpectedPace(expect_s, interval_s))
        if rebooted:
            await _host_back(dell, timeout_s=host_back_s, interval_s=interval_s)
        job = await dell.wait_for_job(
            job_id, timeout_s=job_done_s, interval_s=interval_s, on_progress=report
        )
        await _host_back(dell, timeout_s=host_back_s, interval_s=interval_s)
        took = time.monotonic() - started
        found = installed_of(
            await bmc.firmware_inventory(), package.component, package.component_id
        )
    version = _installed_version(address, found, package, before, job_id)
    return AppliedUpdate(version=version, job=job, took_s=round(took, 3))
