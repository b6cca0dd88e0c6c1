"""Firmware updates on a simulated iDRAC: SimpleUpdate jobs walking Dell JobStates in lab time.

Job paths (``Durations`` in lab seconds, scaled by the fleet speed):

- every job: New -> Downloading (the iDRAC really fetches ImageURI over HTTP,
  ``download_s``) -> Downloaded; a missing file, a file that is not a lab DUP,
  or a package for another model/component ends Failed;
- host components, OnReset: Scheduled until the next host reboot, then
  Running in POST (``apply_s``) -> Completed;
- host components, Immediate: RebootPending, the iDRAC reboots the host,
  Running in POST -> RebootCompleted -> Completed once the OS is up;
- the iDRAC itself (either apply time): Running (``apply_s``) -> the iDRAC
  resets (``idrac_reset_s``: first nothing listens, then 503; sessions and
  TaskService entries are lost) -> Completed, new FirmwareVersion.

Faults: ``job_fails``, ``job_hangs`` (JCP052 after ``hang_s``),
``version_unchanged``, ``busy_503_s``, ``host_never_returns``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

from lab.dup import read_header, short_model
from lab.fleet import Component
from lab.idrac import messages as msg
from lab.idrac import power
from lab.idrac.jobs import Job
from lab.idrac.state import BmcState

log = logging.getLogger(__name__)
LABELS = {
    "idrac": "iDRAC",
    "bios": "BIOS",
    "cpld": "CPLD",
    "raid": "RAID",
    "nic": "Network",
    "backplane": "Backplane",
}
_PROGRESS_STEPS = 4


class JobFailure(Exception):
    """Ends a job in Failed with a Dell message."""

    def __init__(self, message: msg.Msg) -> None:
        self.msg = message
        super().__init__(message[0])


def start_simple_update(bmc: BmcState, *, image_uri: str, apply_time: str) -> Job:
    """Queue a SimpleUpdate job and start working on it.

    Args:
        bmc: The iDRAC.
        image_uri: URL of the package (the iDRAC downloads it).
        apply_time: ``Immediate`` or ``OnReset``.

    Returns:
        The new job (state New).
    """
    job = bmc.jobs.create(name="Firmware Update", job_type="FirmwareUpdate", now=bmc.clock.now())
    job.task = bmc.spawn(run_update(bmc, job, image_uri=image_uri, apply_time=apply_time))
    return job


def set_state(bmc: BmcState, job: Job, state: str, message: msg.Msg, percent: int | None) -> None:
    """Move a job to a state with a Dell message (lab time stamped)."""
    job.set(state, message[0], message[1], percent, now=bmc.clock.now())


async def run_update(
    bmc: BmcState,
    job: Job,
    *,
    image_uri: str,
    apply_time: str,
    from_repository: bool = False,
    after: list[Job] | None = None,
) -> None:
    """The life of one firmware job up to Scheduled/RebootPending (host) or Completed (iDRAC).

    Args:
        bmc: The iDRAC.
        job: The job.
        image_uri: Package URL.
        apply_time: ``Immediate`` or ``OnReset``.
        from_repository: Spawned by InstallFromRepository (download errors are RED132).
        after: Jobs that must be final before this one applies (iDRAC goes last).
    """
    try:
        await _download_and_stage(bmc, job, image_uri, from_repository)
        if job.kind == "idrac":
            for other in after or []:
                while not other.final and bmc.jobs.get(other.id) is other:
                    await bmc.clock.sleep(bmc.durations.step_s)
            await _apply_idrac(bmc, job)
        elif apply_time == "OnReset":
            set_state(bmc, job, "Scheduled", msg.SCHEDULED, None)
        else:
            set_state(bmc, job, "RebootPending", msg.REBOOT_PENDING, None)
            await bmc.clock.sleep(bmc.durations.step_s)
            await reboot_for_updates(bmc)
    except JobFailure as failure:
        set_state(bmc, job, "Failed", failure.msg, 100)


def trigger_busy(bmc: BmcState) -> None:
    """Fault ``busy_503_s``: answer 503 for a while after a job starts."""
    if bmc.faults.busy_503_s > 0:
        bmc.busy_until = max(bmc.busy_until, bmc.clock.now() + bmc.faults.busy_503_s)


async def _download_and_stage(
    bmc: BmcState, job: Job, image_uri: str, from_repository: bool
) -> None:
    trigger_busy(bmc)
    await bmc.clock.sleep(bmc.durations.step_s)
    set_state(bmc, job, "Downloading", msg.DOWNLOADING, 0)
    content = await fetch_file(bmc, image_uri, from_repository)
    await _progress(bmc, job, bmc.durations.download_s, "Downloading", msg.DOWNLOADING)
    header = read_header(content)
    if header is None:
        raise JobFailure(msg.BAD_SIGNATURE)
    component = _target(bmc, header)
    kind = str(header.get("kind", "other"))
    job.name = f"Firmware Update: {LABELS.get(kind, component.name)}"
    job.target, job.kind, job.new_version = component.fqdd, kind, str(header["version"])
    set_state(bmc, job, "Downloaded", msg.DOWNLOADED, 100)
    await bmc.clock.sleep(bmc.durations.step_s)


async def fetch_file(bmc: BmcState, url: str, from_repository: bool) -> bytes:
    """Download a file as the iDRAC does (loopback only).

    Args:
        bmc: The iDRAC.
        url: What to fetch.
        from_repository: Report failures as RED132 (repository) instead of a transfer error.

    Returns:
        The bytes.

    Raises:
        JobFailure: The file could not be transferred.
    """
    failed = msg.REPO_PACKAGE_MISSING if from_repository else msg.TRANSFER_FAILED
    if not is_loopback_url(url) or bmc.fetch is None:
        # The lab never leaves 127/8: a package elsewhere cannot be transferred.
        raise JobFailure(failed)
    try:
        return await bmc.fetch(url)
    except OSError as exc:
        log.debug("%s: download of %s failed: %s", bmc.key, url, exc)
        raise JobFailure(failed) from exc


def is_loopback_url(url: str) -> bool:
    """Whether a URL is HTTP(S) to a loopback host (the only place the lab downloads from)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _target(bmc: BmcState, header: dict[str, object]) -> Component:
    raw = header.get("models")
    models = [short_model(str(m)) for m in raw] if isinstance(raw, list) else []
    if short_model(bmc.spec.model) not in models:
        raise JobFailure(msg.NOT_APPLICABLE)
    prefix = str(header.get("fqdd_prefix") or "")
    for comp in bmc.components:
        if comp.component_id == header.get("component_id") and comp.fqdd.startswith(prefix):
            return comp
    raise JobFailure(msg.NOT_APPLICABLE)


async def _progress(
    bmc: BmcState, job: Job, duration: float, state: str, message: msg.Msg, start: int = 0
) -> None:
    for step in range(1, _PROGRESS_STEPS + 1):
        await bmc.clock.sleep(duration / _PROGRESS_STEPS)
        if job.state == state:
            set_state(bmc, job, state, message, start + (100 - start) * step // 5)


async def _apply(bmc: BmcState, job: Job) -> bool:
    """Flash one component; returns whether it succeeded (job state set on failure)."""
    set_state(bmc, job, "Running", msg.RUNNING, 0)
    if bmc.faults.hangs(job.kind):
        await bmc.clock.sleep(bmc.durations.apply_s / 2)
        set_state(bmc, job, "Running", msg.RUNNING, 45)
        await bmc.clock.sleep(bmc.faults.hang_s)
        set_state(bmc, job, "Failed", msg.HUNG, 45)
        return False
    await _progress(bmc, job, bmc.durations.apply_s, "Running", msg.RUNNING)
    if bmc.faults.fails(job.kind):
        set_state(bmc, job, "Failed", msg.APPLY_FAILED, 100)
        return False
    if not bmc.faults.version_unchanged:
        bmc.install(job.target, job.new_version)
    return True


async def apply_staged(bmc: BmcState) -> None:
    """In POST: apply every staged host update (Scheduled and RebootPending jobs), in order."""
    for job in bmc.jobs.all():
        if job.kind == "idrac" or job.state not in ("Scheduled", "RebootPending"):
            continue
        immediate = job.state == "RebootPending"
        if not await _apply(bmc, job):
            continue
        if immediate:
            set_state(bmc, job, "RebootCompleted", msg.REBOOT_COMPLETED, 100)
            current = bmc.power_task
            job.task = bmc.spawn(_complete_after_boot(bmc, job, current))
        else:
            set_state(bmc, job, "Completed", msg.COMPLETED, 100)


async def _complete_after_boot(bmc: BmcState, job: Job, boot: asyncio.Task[Any] | None) -> None:
    if boot is not None and not boot.done():
        await asyncio.wait({boot})
    if job.state == "RebootCompleted":
        set_state(bmc, job, "Completed", msg.COMPLETED, 100)


async def reboot_for_updates(bmc: BmcState) -> None:
    """The iDRAC restarts the host to apply staged updates (waits for a running transition)."""
    while bmc.transitioning:
        await bmc.clock.sleep(bmc.durations.step_s)
    if bmc.power_state == "On":
        kind = "ForceRestart" if bmc.faults.ignores_graceful else "GracefulRestart"
    else:
        kind = "On"
    host_reset(bmc, kind)


def host_reset(bmc: BmcState, reset_type: str) -> None:
    """ComputerSystem.Reset with staged updates applied during POST.

    Args:
        bmc: The server.
        reset_type: Redfish ResetType.

    Raises:
        RemoteError: See :func:`lab.idrac.power.reset`.
    """
    power.reset(bmc, reset_type, during_post=lambda: apply_staged(bmc))


async def _apply_idrac(bmc: BmcState, job: Job) -> None:
    if not await _apply(bmc, job):
        return
    await idrac_reset(bmc)
    set_state(bmc, job, "Completed", msg.COMPLETED, 100)


async def idrac_reset(bmc: BmcState) -> None:
    """The iDRAC restarts: unreachable, then 503, sessions and TaskService entries lost."""
    window = bmc.durations.idrac_reset_s
    bmc.sessions.clear()
    for job in bmc.jobs.all():
        job.in_task_service = False  # iDRAC 7.00 loses its TaskService across a reset
    bmc.offline = True
    if bmc.relisten is not None:
        await bmc.relisten()
    await bmc.clock.sleep(window * 0.6)
    bmc.offline = False
    bmc.busy_until = max(bmc.busy_until, bmc.clock.now() + window * 0.4)
    if bmc.relisten is not None:
        await bmc.relisten()
    await bmc.clock.sleep(window * 0.4)
