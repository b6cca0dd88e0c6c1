"""A Dell catalog in a rolling update: the iDRAC compares and applies it itself.

Dry run and plan: InstallFromRepository with ApplyUpdate False, then
GetRepoBasedUpdateList: which components the iDRAC would update, from which
version to which (SUP029, nothing to update, is "current", not an error).
Apply: InstallFromRepository with ApplyUpdate True; the iDRAC spawns one job
per component, rackflow follows them all, reboots (OnReset), waits for the
host and the BMC, and verifies every component against the plan's target.

The iDRAC applies every update of the catalog that fits the server (the
action has no component filter), so a server whose catalog updates include
components the operator did not ask for is refused before anything is touched.
"""

from __future__ import annotations

import time

import anyio
from prefect import get_run_logger

from clients.errors import (
    DeadlineExceeded,
    PreconditionError,
    RackflowError,
    ServerError,
    TransportError,
)
from clients.firmware.sources import ApplyTime, DellCatalog
from clients.inventory import ServerRecord
from clients.redfish.jobs import STAGED_STATES, DellJob, RepoUpdate
from clients.redfish.models import ComponentKind
from flows.rollout import (
    ComponentFailed,
    ComponentResult,
    Outcome,
    RolloutOptions,
    run_id,
)
from tasks.firmware import progress_key
from tasks.firmware_finish import reboot_server, wait_for_server
from tasks.firmware_notes import JobNotes
from tasks.firmware_repo import (
    CatalogJobs,
    check_catalog_compliance,
    is_idrac_job,
    start_catalog_update,
    verify_catalog_update,
    wait_for_firmware_jobs,
)

# How long a cut-off catalog update may take to delete its jobs.
_CLEANUP_S = 120.0


def _row(server: ServerRecord, component: str, outcome: Outcome, message: str) -> ComponentResult:
    return ComponentResult(
        server=server.identity, component=component, result=outcome, message=message
    )


async def _dry_run(
    server: ServerRecord, catalog: DellCatalog, opts: RolloutOptions
) -> list[RepoUpdate]:
    assert server.bmc_address is not None and server.bmc_port is not None
    return await check_catalog_compliance(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        catalog,
        timeout_s=opts.deadlines.job_done_s,
        interval_s=opts.deadlines.poll_interval_s,
    )


async def catalog_report(
    server: ServerRecord,
    catalog: DellCatalog,
    components: list[ComponentKind],
    opts: RolloutOptions,
) -> list[ComponentResult]:
    """Compliance report from the iDRAC's own comparison with the catalog (dry run).

    Returns:
        Per component: would-update (before, target) or current.
    """
    updates = await _dry_run(server, catalog, opts)
    others = sorted({str(u.kind) for u in updates if u.kind not in components})
    if others:
        get_run_logger().warning(
            "%s: the catalog also updates %s; applying it would be refused unless they are "
            "in components",
            server.identity,
            ", ".join(others),
        )
    return _current_rows(server, components, updates) + [
        _row(
            server, str(u.kind), Outcome.WOULD_UPDATE, f"{u.package_name} ({u.criticality_label})"
        ).model_copy(update={"before": u.installed_version, "target": u.package_version})
        for u in updates
        if u.kind in components
    ]


def _current_rows(
    server: ServerRecord, components: list[ComponentKind], updates: list[RepoUpdate]
) -> list[ComponentResult]:
    listed = {u.kind for u in updates}
    return [
        _row(server, str(kind), Outcome.CURRENT, "compliant with the catalog")
        for kind in components
        if kind not in listed
    ]


async def catalog_plan(
    server: ServerRecord,
    catalog: DellCatalog,
    components: list[ComponentKind],
    opts: RolloutOptions,
) -> tuple[list[ComponentResult], list[RepoUpdate]]:
    """What InstallFromRepository would do on this server (a dry run, nothing applied).

    Returns:
        Rows of the components already compliant, and the updates to apply.

    Raises:
        PreconditionError: The iDRAC would also update components not in ``components``.
    """
    updates = await _dry_run(server, catalog, opts)
    others = [u for u in updates if u.kind not in components]
    if others:
        names = ", ".join(f"{u.kind} ({u.fqdd or u.display_name or '?'})" for u in others)
        raise PreconditionError(
            subject=server.identity,
            reason=f"InstallFromRepository applies every update the catalog has for this server "
            f"(the iDRAC offers no component filter): it would also update {names}, not in "
            f"components {[str(k) for k in components]}; add them to components, or use a "
            "repository source to update only some",
        )
    return _current_rows(server, components, updates), updates


async def apply_catalog(
    server: ServerRecord, catalog: DellCatalog, updates: list[RepoUpdate], opts: RolloutOptions
) -> list[ComponentResult]:
    """Apply the catalog with InstallFromRepository and verify every planned component.

    Returns:
        One row per update: updated, or current when the iDRAC answered SUP029.

    Raises:
        ComponentFailed: A job failed, a version did not change, or a step failed;
            carries every row (the ones that succeeded too).
    """
    started = time.monotonic()
    addr, port = server.bmc_address, server.bmc_port
    assert addr is not None and port is not None  # load_target_servers checked it
    rows = [
        ComponentResult(
            server=server.identity,
            component=str(u.kind),
            before=u.installed_version,
            target=u.package_version,
            result=Outcome.FAILED,
        )
        for u in updates
    ]
    done: list[str] = []  # steps that happened, for the row messages
    ids: list[str] = []  # the run's jobs, once known
    try:
        jobs = await _start(server, catalog, updates, opts)
        ids = [j for j in [jobs.repository_job, *jobs.jobs] if j]
        if jobs.up_to_date:
            for r in rows:
                r.result, r.message = Outcome.CURRENT, "the iDRAC found nothing to update (SUP029)"
        else:
            final = await _follow(server, jobs.jobs, opts, done)
            checks = await verify_catalog_update(addr, port, opts.credentials_block, updates, final)
            for r, check in zip(rows, checks, strict=True):
                r.after, r.message = check.installed, "; ".join([*done, check.message])
                r.result = Outcome.UPDATED if check.ok else Outcome.FAILED
        failed = [r for r in rows if r.result is Outcome.FAILED]
        if failed:  # every job is final here: the note goes
            settled = await opts.jobs.after_failure(server, ids, maybe_started=False)
            for r in failed:
                r.message += f"; {settled}" if settled else ""
            raise ComponentFailed(failed[0], rows=rows)
        await opts.jobs.note(server.identity, None)
    except RackflowError as exc:
        # Did the request get there? A repository job that timed out may still spawn jobs.
        maybe = isinstance(exc, TransportError | ServerError | DeadlineExceeded)
        settled = await opts.jobs.after_failure(server, ids, maybe_started=maybe)
        for r in rows:
            r.message = "; ".join([*done, str(exc), *([settled] if settled else [])])
        raise ComponentFailed(rows[0], rows=rows) from exc
    except ComponentFailed:
        raise
    except BaseException:  # cancelled: settle the jobs shielded (see update_component)
        settled = "the jobs were not settled in time"
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _CLEANUP_S):
            settled = await opts.jobs.after_failure(server, ids, maybe_started=True)
        get_run_logger().error("%s catalog: cut off; %s", server.identity, settled or "no job")
        raise
    finally:
        for r in rows:
            r.duration_s = round(time.monotonic() - started, 1)
    return rows


async def _start(
    server: ServerRecord, catalog: DellCatalog, updates: list[RepoUpdate], opts: RolloutOptions
) -> CatalogJobs:
    """InstallFromRepository, noted in the inventory before (intention) and after (job ids).

    The jobs of an earlier catalog run noted on the server are followed; when
    that run was killed before noting them, the jobs it made are adopted.
    """
    assert server.bmc_address is not None and server.bmc_port is not None
    d = opts.deadlines
    kinds = sorted({str(u.kind) for u in updates})
    earlier = JobNotes.earlier(server)
    recorded = [j for j in [earlier.get("job"), *earlier.get("jobs", [])] if j]
    was_catalog = bool(earlier.get("components"))  # a catalog run notes its components
    note = JobNotes.intention(run_id(), jobs=[], components=kinds)
    await opts.jobs.note(server.identity, note)
    jobs = await start_catalog_update(
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        catalog,
        reboot_needed=opts.apply_time is ApplyTime.IMMEDIATE,
        timeout_s=d.job_staged_s,
        interval_s=d.poll_interval_s,
        recorded=recorded,
        follow=recorded if was_catalog else [],
        interrupted=([ComponentKind(k) for k in kinds] if was_catalog and not recorded else None),
    )
    note.update(job=jobs.repository_job, jobs=jobs.jobs)
    await opts.jobs.note(server.identity, note)
    get_run_logger().info(
        "%s: InstallFromRepository %s started %s",
        server.identity,
        jobs.repository_job,
        ", ".join(jobs.jobs) or ("nothing (SUP029)" if jobs.up_to_date else "no job"),
    )
    return jobs


async def _follow(
    server: ServerRecord, job_ids: list[str], opts: RolloutOptions, done: list[str]
) -> list[DellJob]:
    """Jobs to Scheduled (OnReset), reboot, jobs to completion, host and BMC back."""
    addr, port, creds, d = (
        server.bmc_address,
        server.bmc_port,
        opts.credentials_block,
        opts.deadlines,
    )
    assert addr is not None and port is not None
    key = progress_key("firmware", server.identity, "catalog")
    staged = opts.apply_time is ApplyTime.ON_RESET
    jobs = await wait_for_firmware_jobs(
        addr,
        port,
        creds,
        job_ids,
        staged=staged,
        timeout_s=d.job_staged_s if staged else d.job_done_s,
        interval_s=d.poll_interval_s,
        progress=key,
    )
    # The iDRAC's own update applies without a host reboot (after the host's, IDRAC.md).
    waiting = next((j for j in jobs if j.state in STAGED_STATES and not is_idrac_job(j)), None)
    if staged and waiting is not None:
        how = await reboot_server(
            addr,
            port,
            creds,
            graceful_timeout_s=d.graceful_reboot_s,
            interval_s=d.poll_interval_s,
            job_id=waiting.id,
        )
        done.append(f"reboot: {how}")
        # The host first (a host that never returns costs host_back_s, not the jobs' deadline).
        await wait_for_server(
            addr, port, creds, timeout_s=d.host_back_s, interval_s=d.poll_interval_s
        )
    if staged:
        jobs = await wait_for_firmware_jobs(
            addr,
            port,
            creds,
            job_ids,
            staged=False,
            timeout_s=d.job_done_s,
            interval_s=d.poll_interval_s,
            progress=key,
        )
    await wait_for_server(addr, port, creds, timeout_s=d.host_back_s, interval_s=d.poll_interval_s)
    return jobs
