"""Rolling firmware update: one server (or a bounded batch) at a time, each in a
vCenter maintenance window, verified by re-reading the installed version.

Bad input is refused before any server is touched: the parameters (limits,
components, source, target query) in the flow itself, and per server a
package that does not apply to the model the BMC reports, before maintenance
mode is entered.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from clients.errors import PreconditionError, RackflowError
from clients.firmware.sources import (
    ApplyTime,
    DellCatalog,
    DirectUrl,
    HttpRepository,
    parse_components,
)
from clients.inventory import ServerRecord
from clients.inventory.query import TargetQuery
from clients.redfish.jobs import RepoUpdate
from clients.redfish.models import ComponentKind
from clients.vsphere import MaintenanceOptions
from flows.catalog_apply import apply_catalog, catalog_plan, catalog_report
from flows.maintenance_window import maintenance_window, name_hosts_left
from flows.rollout import (
    ComponentFailed,
    ComponentResult,
    Outcome,
    RolloutOptions,
    StepDeadlines,
    rolling,
    rollout_options,
    update_component,
)
from tasks.firmware import Readiness, check_server_ready, installed_of, summarize_versions
from tasks.firmware_finish import wait_for_server
from tasks.inventory import load_target_servers, read_server_observation
from tasks.lease import MachineBusyError, machine_lease

FirmwareSource = Annotated[HttpRepository | DellCatalog | DirectUrl, Field(discriminator="kind")]


class RolloutSummary(BaseModel):
    """What a rollout did, server by server and component by component."""

    rows: list[ComponentResult]
    duration_s: float

    def count(self, outcome: Outcome) -> int:
        """Rows with this outcome."""
        return sum(r.result is outcome for r in self.rows)

    @property
    def ok(self) -> bool:
        """Every row updated, current, or (dry run) would update."""
        return all(
            r.result in (Outcome.UPDATED, Outcome.CURRENT, Outcome.WOULD_UPDATE) for r in self.rows
        )


def check_rollout_numbers(**values: int) -> None:
    """Refuse non-positive limits before anything is touched."""
    for name, value in values.items():
        if value < 1:
            raise PreconditionError(subject=name, reason=f"must be at least 1, got {value}")


def row(server: ServerRecord, component: str, outcome: Outcome, message: str) -> ComponentResult:
    """A result row that needed no work."""
    return ComponentResult(
        server=server.identity, component=component, result=outcome, message=message
    )


async def prepare_server(
    server: ServerRecord, opts: RolloutOptions, *, read_firmware: bool = False
) -> Readiness | str:
    """Pre-checks; after a crash, first wait for a host a previous run was rebooting.

    Args:
        server: The server.
        opts: The run's settings.
        read_firmware: Also read the installed firmware (for the plan), same session.

    Returns:
        What the pre-checks saw, or why the server is skipped (nothing was touched).
    """
    attrs = server.attributes or {}
    assert server.bmc_address is not None and server.bmc_port is not None
    pending_job = attrs.get("pending:firmware-job") or {}
    # One job and component (SimpleUpdate), or a catalog's repository job and component jobs.
    own_jobs = [j for j in [pending_job.get("job"), *pending_job.get("jobs", [])] if j]
    kinds = pending_job.get("components") or [pending_job.get("component")]
    own_components = [ComponentKind(k) for k in kinds if k]
    try:
        if pending_job or "pending:maintenance" in attrs:
            await wait_for_server(
                server.bmc_address,
                server.bmc_port,
                opts.credentials_block,
                timeout_s=opts.deadlines.host_back_s,
                interval_s=opts.deadlines.poll_interval_s,
            )
        return await check_server_ready(
            server.bmc_address,
            server.bmc_port,
            opts.credentials_block,
            own_jobs=own_jobs,
            own_components=own_components,
            read_firmware=read_firmware,
        )
    except RackflowError as exc:
        return f"pre-check failed: {exc}"


async def _plan(
    server: ServerRecord,
    source: FirmwareSource,
    components: list[ComponentKind],
    opts: RolloutOptions,
    ready: Readiness,
) -> tuple[list[ComponentResult], list[Any]]:
    """Rows of the components needing no work, and the work to do.

    The installed versions are the ones the pre-checks read (``ready.firmware``).

    Returns:
        The rows, and (package, installed version) pairs for SimpleUpdate, or for a
        Dell catalog applied by the iDRAC its own list of updates (``RepoUpdate``).
    """
    if isinstance(source, DellCatalog):
        if opts.dry_run:
            return await catalog_report(server, source, components, opts), []
        try:
            return await catalog_plan(server, source, components, opts)
        except PreconditionError as exc:
            return [row(server, "*", Outcome.SKIPPED, f"refused: {exc}")], []
        except RackflowError as exc:
            return [row(server, "*", Outcome.FAILED, f"catalog dry run failed: {exc}")], []
    rows: list[ComponentResult] = []
    plan = []
    # The model the BMC reported just now decides what applies (the inventory's may be stale).
    model = ready.model or server.model
    if not model:
        reason = "refused: the BMC reports no model, so no package can be checked against it"
        return [row(server, str(kind), Outcome.SKIPPED, reason) for kind in components], []
    for kind in components:
        found = installed_of(ready.firmware, kind)
        before = summarize_versions(found)
        ids = sorted({c.component_id for c in found if c.component_id})
        if before is None:
            rows.append(row(server, str(kind), Outcome.SKIPPED, f"server has no {kind}"))
            continue
        try:
            package = await opts.package(source, model, kind, ids[0] if len(ids) == 1 else None)
        except PreconditionError as exc:
            rows.append(row(server, str(kind), Outcome.SKIPPED, f"package does not apply: {exc}"))
            continue
        if package.version is None:  # the resolver refuses these; never reboot for nothing
            rows.append(row(server, str(kind), Outcome.SKIPPED, "package version unknown"))
        elif before == package.version:
            rows.append(
                row(server, str(kind), Outcome.CURRENT, "already at the target version").model_copy(
                    update={"before": before, "after": before, "target": before}
                )
            )
        elif opts.dry_run:
            rows.append(
                row(
                    server, str(kind), Outcome.WOULD_UPDATE, f"would install {package.file}"
                ).model_copy(update={"before": before, "target": package.version})
            )
        else:
            plan.append((package, before))
    return rows, plan


async def update_server(
    server: ServerRecord,
    source: FirmwareSource,
    components: list[ComponentKind],
    opts: RolloutOptions,
    lease_wait_s: float,
) -> list[ComponentResult]:
    """Everything for one server, holding its machine lease (limit made and run tagged up front)."""
    try:
        async with machine_lease(
            server.identity,
            wait_s=lease_wait_s,
            tag=False,
            ensure_limit=False,
            releases=opts.releases,
            label=False,  # tagged with every machine up front; 2 calls per server saved
        ):
            ready = await prepare_server(server, opts, read_firmware=True)
            if isinstance(ready, str):
                return [row(server, "*", Outcome.SKIPPED, ready)]
            rows, plan = await _plan(server, source, components, opts, ready)
            return rows + await _apply_plan(server, source, plan, opts)
    except MachineBusyError as exc:
        return [row(server, "*", Outcome.SKIPPED, str(exc))]


async def _apply_plan(
    server: ServerRecord, source: FirmwareSource, plan: list[Any], opts: RolloutOptions
) -> list[ComponentResult]:
    """Apply the plan in the server's maintenance window: a row for every planned component.

    A failed component stops the server's later ones, each reported skipped
    with the reason. A maintenance-mode failure (entering, or leaving after
    the updates) is one more ``*`` row beside the component rows.
    """
    rows: list[ComponentResult] = []
    stopped: str | None = None
    try:
        # No work, no window (a crashed run's maintenance mode is still finished).
        async with maintenance_window(server, opts, needed=bool(plan)) as window:
            try:
                if isinstance(source, DellCatalog):
                    if plan:  # the iDRAC applies the catalog: one step for all components
                        rows.extend(await apply_catalog(server, source, plan, opts))
                else:
                    for package, before in plan:
                        rows.append(await update_component(server, package, opts, before=before))
            except ComponentFailed as exc:
                rows.extend(exc.rows)
                stopped = f"not attempted: {exc.row.component} failed"
                raise  # the window undoes maintenance mode (or keeps a dead host in it)
            if window and not window.entered and window.note:  # someone else's maintenance
                note = window.note
                rows = [r.model_copy(update={"message": f"{r.message}; {note}"}) for r in rows]
    except ComponentFailed:
        pass  # its rows are in
    except RackflowError as exc:
        # Entering failed (nothing was attempted), or leaving failed after the updates.
        return _with_unattempted(
            server, plan, rows, stopped or "not attempted: maintenance mode failed"
        ) + [row(server, "*", Outcome.FAILED, f"maintenance mode: {exc}")]
    return _with_unattempted(server, plan, rows, stopped or "not attempted")


def _with_unattempted(
    server: ServerRecord, plan: list[Any], rows: list[ComponentResult], reason: str
) -> list[ComponentResult]:
    """``rows`` plus a skipped row for each planned component that has none."""
    done = {r.component for r in rows}
    for item in plan:
        component, before, target = _planned(item)
        if component not in done:
            rows.append(
                row(server, component, Outcome.SKIPPED, reason).model_copy(
                    update={"before": before, "target": target}
                )
            )
    return rows


def _planned(item: Any) -> tuple[str, str | None, str | None]:
    """Component, installed and target version of a plan entry."""
    if isinstance(item, RepoUpdate):  # a catalog applied by the iDRAC
        return str(item.kind), item.installed_version, item.package_version
    package, before = item
    return str(package.component), before, package.version


async def refresh_inventory(server: ServerRecord, opts: RolloutOptions) -> None:
    """Record the server's new versions (a failure here does not undo the update).

    Only reads the server: it runs after the server's lease and rollout slot are
    given back, while the next server starts.
    """
    assert server.bmc_address is not None and server.bmc_port is not None
    try:
        probe = await read_server_observation(
            server.bmc_address, server.bmc_port, opts.credentials_block
        )
        if probe.observation is None:
            raise PreconditionError(subject=server.identity, reason=probe.detail or "no answer")
        await opts.inventory.record([probe.observation])
    except RackflowError as exc:
        get_run_logger().warning("%s: inventory not refreshed: %s", server.identity, exc)


async def _refresh_updated(
    server: ServerRecord, rows: list[ComponentResult], opts: RolloutOptions
) -> None:
    if any(r.result is Outcome.UPDATED for r in rows):
        await refresh_inventory(server, opts)


def table_rows(rows: list[ComponentResult]) -> list[dict[str, str]]:
    """The result table: server, component, before, after, target, result, duration, message."""
    return [
        {
            "server": r.server,
            "component": r.component,
            "before": r.before or "",
            "after": r.after or "",
            "target": r.target or "",
            "result": r.result.value,
            "duration": f"{r.duration_s:.1f} s",
            "message": r.message,
        }
        for r in rows
    ]


async def report(summary: RolloutSummary, title: str, key: str) -> None:
    """Table and markdown artifacts of a rollout."""
    await acreate_table_artifact(table_rows(summary.rows), key=key, description=title)
    counts = ", ".join(f"{o.value} {summary.count(o)}" for o in Outcome if summary.count(o))
    await acreate_markdown_artifact(
        f"# {title}\n\n{counts} in {summary.duration_s:.0f} s.\n", key=f"{key}-summary"
    )


def final_state(summary: RolloutSummary, what: str) -> State:
    """Completed when every server succeeded or was current, Failed otherwise."""
    if summary.ok:
        return Completed(data=summary, message=f"{what}: all servers updated or current")
    bad = sorted({r.server for r in summary.rows if r.result in (Outcome.FAILED, Outcome.SKIPPED)})
    return Failed(data=summary, message=f"{what}: problems on {', '.join(bad)}")


@flow(name="rolling-firmware-update", persist_result=True)
async def rolling_firmware_update(
    source: FirmwareSource,
    targets: list[str] = [],  # noqa: B006 - Prefect shows defaults in the UI
    model: str | None = None,
    query: TargetQuery | None = None,
    components: list[ComponentKind] = [ComponentKind.BIOS],  # noqa: B006
    apply_time: ApplyTime = ApplyTime.ON_RESET,
    max_parallel: int = 1,
    max_failures: int = 1,
    max_unavailable_per_cluster: int = 1,
    dry_run: bool = False,
    deadlines: StepDeadlines = StepDeadlines(),  # noqa: B008
    maintenance: MaintenanceOptions = MaintenanceOptions(),  # noqa: B008
    credentials_block: str = "redfish",
    vcenter_block: str | None = None,
    inventory_block: str | None = None,
    lease_wait_s: float = 3600.0,
) -> State:
    """Update firmware on servers one (or ``max_parallel``) at a time.

    Args:
        source: Where firmware comes from: ``{"kind": "repository", "base_url": ...}``,
            ``{"kind": "catalog", "catalog_url": ...}`` or
            ``{"kind": "url", "url": ..., "component": ..., "models": [...]}``. A
            catalog is applied by the iDRAC (InstallFromRepository), which updates
            every component the catalog has newer firmware for: a server where that
            includes components not in ``components`` is refused (skipped, nothing
            touched). A package not for the model the BMC reports is refused too.
        targets: Service tags; empty: the servers ``query`` selects.
        model: With no targets and no query: only online servers of this model.
        query: With no targets: the inventory servers to update (models, status,
            vSphere clusters, name globs, attributes); none selected is an error.
        components: Components to update, in this order; each once, among idrac,
            bios, cpld, raid, nic and backplane.
        apply_time: OnReset (rackflow reboots) or Immediate (the iDRAC reboots).
        max_parallel: Servers updated at once.
        max_failures: Halt the rollout (start no more servers) after this many failed servers.
        max_unavailable_per_cluster: Hosts of one vSphere cluster in maintenance at once.
        dry_run: Report what would change; touch nothing.
        deadlines: Per-step deadlines.
        maintenance: vCenter evacuation when entering maintenance mode (powered-off VMs,
            vSAN data mode); default: vCenter's own.
        credentials_block: ``RedfishCredentials`` block name.
        vcenter_block: ``VCenterCredentials`` block name (None: no maintenance mode).
        inventory_block: ``InventoryStore`` block name (None: the default store).
        lease_wait_s: How long to wait for another job on a server to finish.

    Returns:
        Completed with the summary when every server succeeded or was current, else Failed.
    """
    started = time.monotonic()
    check_rollout_numbers(
        max_parallel=max_parallel,
        max_failures=max_failures,
        max_unavailable_per_cluster=max_unavailable_per_cluster,
    )
    components = parse_components(components)
    if isinstance(source, DirectUrl) and components != [source.component]:
        raise PreconditionError(
            subject="components",
            reason=f"a direct URL updates only {source.component}, "
            f"not {', '.join(str(k) for k in components)}",
        )
    servers = await load_target_servers(targets, model, inventory_block, query)
    get_run_logger().info("rolling update of %s on %d server(s)", components, len(servers))
    async with rollout_options(
        servers,
        max_parallel=max_parallel,
        credentials_block=credentials_block,
        vcenter_block=vcenter_block,
        inventory_block=inventory_block,
        apply_time=apply_time,
        deadlines=deadlines,
        max_unavailable_per_cluster=max_unavailable_per_cluster,
        dry_run=dry_run,
        maintenance=maintenance,
    ) as opts:
        rows = await rolling(
            servers,
            lambda s: update_server(s, source, components, opts, lease_wait_s),
            after=lambda s, rows: _refresh_updated(s, rows, opts),
            max_parallel=max_parallel,
            max_failures=max_failures,
        )
    summary = RolloutSummary(rows=rows, duration_s=round(time.monotonic() - started, 1))
    await report(summary, "Rolling firmware update", "rolling-firmware-update")
    return name_hosts_left(final_state(summary, "rolling firmware update"), summary.rows)
