"""Prefect tasks of firmware updates on Dell iDRACs (one task per real operation).

Every task takes the BMC's address and the credentials block NAME and opens
its own session (logged out in a ``finally``): clients are not task inputs
(PREFECT.md). Actions are written check-then-act, so a retry or a re-run
after a crash never starts a second job or a second reboot.
"""

from __future__ import annotations

import re
from datetime import timedelta

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from blocks.redfish import RedfishCredentials
from clients.errors import (
    BusyError,
    DeadlineExceeded,
    JobFailedError,
    PreconditionError,
    ServerError,
    TransportError,
)
from clients.firmware.repository import Package, PackageResolver
from clients.firmware.sources import ApplyTime, DellCatalog, DirectUrl, HttpRepository
from clients.polling import poll
from clients.redfish import RedfishClient
from clients.redfish.jobs import DONE_STATES, STAGED_STATES, DellJob, RepoUpdate
from clients.redfish.models import ComponentKind, FirmwareComponent
from clients.redfish.update import DellUpdates, ResetType
from tasks.retry import retry_on_transient

Source = HttpRepository | DellCatalog | DirectUrl

_READ = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}


class Readiness(BaseModel):
    """What the pre-checks saw on a server."""

    power_state: str | None
    health: str | None
    model: str | None
    lc_status: str | None
    pending_jobs: list[str]


async def _open(address: str, port: int, credentials_block: str) -> RedfishClient:
    creds = await RedfishCredentials.aload(credentials_block)
    return creds.get_client(address, port=port)


def _matching(
    components: list[FirmwareComponent], kind: ComponentKind, component_id: str | None
) -> list[FirmwareComponent]:
    found = [c for c in components if c.kind is kind and c.state in (None, "Installed")]
    if component_id:
        found = [c for c in found if c.component_id == component_id] or found
    return found


@task(cache_policy=TASK_SOURCE + INPUTS, cache_expiration=timedelta(minutes=5), **_READ)
async def resolve_firmware_package(
    source: Source, model: str | None, component: ComponentKind, component_id: str | None = None
) -> Package:
    """Pick the package for a component of a model from the firmware source.

    Args:
        source: Repository, catalog or direct URL.
        model: Server model, e.g. ``PowerEdge R640``.
        component: Component kind.
        component_id: The installed component's Dell id, when known.

    Returns:
        The package (URI and target version).

    Raises:
        PreconditionError: No package applies to this model and component.
    """
    async with PackageResolver() as resolver:
        return await resolver.resolve(
            source, model=model, component=component, component_id=component_id
        )


@task(cache_policy=NO_CACHE, **_READ)
async def check_server_ready(
    address: str,
    port: int,
    credentials_block: str,
    own_jobs: list[str] | None = None,
    own_components: list[ComponentKind] | None = None,
) -> Readiness:
    """Pre-checks: BMC reachable, Lifecycle Controller ready, no pending jobs, health.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.
        own_jobs: Jobs an interrupted rackflow run started (recorded in the
            inventory): these do not count as "pending", the re-run follows them.
        own_components: Components an interrupted run was starting a job for
            (killed between the request and recording the job id): their
            firmware jobs count as the run's own too.

    Returns:
        What was seen.

    Raises:
        PreconditionError: A check failed (the reason names it); nothing was touched.
        TransportError: The BMC did not answer (retried, then the server is skipped).
    """
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        system = await bmc.system()
        lc = await dell.lc_status()
        words = [component_word(k) for k in own_components or []]
        pending = [
            j
            for j in await dell.pending_jobs()
            if j.id not in (own_jobs or []) and not any(w in (j.name or "").lower() for w in words)
        ]
    seen = Readiness(
        power_state=system.power_state,
        health=system.health_rollup or system.health,
        model=system.model,
        lc_status=lc.status,
        pending_jobs=[f"{j.id} {j.name or ''} ({j.state})".strip() for j in pending],
    )
    if not lc.ready:
        raise PreconditionError(
            subject=address, reason=f"Lifecycle Controller not ready ({lc.status})"
        )
    if pending:
        raise PreconditionError(
            subject=address,
            reason=f"pending jobs in the iDRAC queue: {'; '.join(seen.pending_jobs)}",
        )
    if (seen.health or "").lower() == "critical":
        raise PreconditionError(subject=address, reason="system health is Critical")
    return seen


@task(cache_policy=NO_CACHE, **_READ)
async def read_component_versions(
    address: str,
    port: int,
    credentials_block: str,
    component: ComponentKind,
    component_id: str | None = None,
) -> list[FirmwareComponent]:
    """Read the installed firmware of one component kind (all instances)."""
    async with await _open(address, port, credentials_block) as bmc:
        return _matching(await bmc.firmware_inventory(), component, component_id)


def _job_matches(job: DellJob, package: Package) -> bool:
    name = (job.name or "").lower()
    return job.state is not None and component_word(package.component) in name


def component_word(kind: ComponentKind) -> str:
    """How Dell job names spell a component ("Firmware Update: BIOS")."""
    return {ComponentKind.IDRAC: "idrac", ComponentKind.BIOS: "bios"}.get(kind, str(kind))


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_transient
)
async def start_firmware_update(
    address: str, port: int, credentials_block: str, package: Package, apply_time: ApplyTime
) -> str:
    """Start SimpleUpdate, unless a job for this component is already queued (re-run).

    Returns:
        The job id to follow.
    """
    logger = get_run_logger()
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        for job in await dell.pending_jobs():
            if _job_matches(job, package):
                logger.info("%s: following job %s already queued (%s)", address, job.id, job.state)
                return job.id
        protocol = "HTTPS" if package.uri.lower().startswith("https:") else "HTTP"
        return await dell.simple_update(
            package.uri, transfer_protocol=protocol, apply_time=apply_time
        )


def progress_key(*parts: str) -> str:
    """An artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:120]


@task(cache_policy=NO_CACHE, **_READ)
async def wait_for_firmware_job(
    address: str,
    port: int,
    credentials_block: str,
    job_id: str,
    *,
    staged: bool,
    timeout_s: float,
    interval_s: float = 5.0,
    progress: str | None = None,
) -> DellJob:
    """Follow a Dell job to Scheduled/Downloaded (``staged``) or to completion.

    Survives the iDRAC resetting itself (connection loss, 404, 401, 503).

    Raises:
        JobFailedError: The job failed or hung (JCP052).
        DeadlineExceeded: Not there in ``timeout_s``.
    """
    artifact = await acreate_progress_artifact(0.0, key=progress) if progress else None

    async def report(job: DellJob) -> None:
        if artifact is not None and job.percent_complete is not None:
            await aupdate_progress_artifact(
                artifact, float(job.percent_complete), description=f"{job_id}: {job.state}"
            )

    async with await _open(address, port, credentials_block) as bmc:
        return await DellUpdates(bmc).wait_for_job(
            job_id,
            until=STAGED_STATES if staged else DONE_STATES,
            timeout_s=timeout_s,
            interval_s=interval_s,
            on_progress=report,
        )


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
    logger = get_run_logger()
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
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
            logger.warning("%s ignored GracefulRestart: forcing a restart", address)
        await dell.reset(ResetType.FORCE_RESTART)
        return "ForceRestart"


@task(cache_policy=NO_CACHE, **_READ)
async def wait_for_server(
    address: str, port: int, credentials_block: str, *, timeout_s: float, interval_s: float = 5.0
) -> str:
    """Wait for the host to be powered on and the Lifecycle Controller ready again.

    Returns:
        The LC status once ready.
    """
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        await dell.wait_power_state("On", timeout_s=timeout_s, interval_s=interval_s)
        status = await dell.wait_lc_ready(timeout_s=timeout_s, interval_s=interval_s)
        return str(status.status)


@task(cache_policy=NO_CACHE, **_READ)
async def verify_firmware_version(
    address: str,
    port: int,
    credentials_block: str,
    package: Package,
    before: str | None,
    job_id: str | None = None,
) -> str:
    """Re-read the inventory: the installed version must be the package's.

    Returns:
        The installed version.

    Raises:
        JobFailedError: "Completed" but the version did not change (a known iDRAC failure).
    """
    async with await _open(address, port, credentials_block) as bmc:
        found = _matching(await bmc.firmware_inventory(), package.component, package.component_id)
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


def summarize_versions(components: list[FirmwareComponent]) -> str | None:
    """One version string for a list of instances (``2.19.1`` or ``22.0.1, 22.5.7``)."""
    versions = sorted({c.version for c in components if c.version})
    return ", ".join(versions) or None


@task(cache_policy=NO_CACHE, **_READ)
async def check_catalog_compliance(
    address: str,
    port: int,
    credentials_block: str,
    catalog: DellCatalog,
    *,
    timeout_s: float,
    interval_s: float = 5.0,
) -> list[RepoUpdate]:
    """Dry run of a catalog on the iDRAC: what it would update (nothing is applied).

    InstallFromRepository with ApplyUpdate False, wait for the job, then
    GetRepoBasedUpdateList. "Nothing to update" (HTTP 400 SUP029) is an empty list.

    Returns:
        One entry per component the catalog has a newer package for.
    """
    share = catalog.share()
    async with await _open(address, port, credentials_block) as bmc:
        dell = DellUpdates(bmc)
        job_id = await dell.install_from_repository(
            host=share.host,
            share_type=share.share_type,
            share_name=share.share_name,
            catalog_file=share.catalog_file,
            apply_update=False,
            ignore_cert_warning=catalog.ignore_cert_warning,
        )
        await dell.wait_for_job(job_id, timeout_s=timeout_s, interval_s=interval_s)
        return await dell.repo_update_list()
