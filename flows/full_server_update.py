"""Full server update: iDRAC, BIOS, CPLD, RAID, NIC, Backplane, in that order.

Per server one flow run (``update-server``), holding the machine lease and one
vCenter maintenance window, with one sub-flow run per component
(``update-component``), each with its own deadline. An iDRAC or BIOS failure
stops the server; other failures are recorded and the rest continue.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from clients.errors import PreconditionError
from clients.firmware.sources import UPDATE_ORDER, ApplyTime
from clients.inventory import ServerRecord
from clients.redfish.models import ComponentKind
from flows.firmware_update import (
    FirmwareSource,
    RolloutSummary,
    check_rollout_numbers,
    final_state,
    prepare_server,
    refresh_inventory,
    report,
    row,
)
from flows.maintenance_window import maintenance_window
from flows.rollout import (
    ComponentFailed,
    ComponentResult,
    Outcome,
    RolloutOptions,
    StepDeadlines,
    current_version,
    rolling,
    rollout_options,
    update_component,
)
from tasks.inventory import load_target_servers
from tasks.lease import MachineBusyError, machine_lease, tag_current_run

CRITICAL = frozenset({ComponentKind.IDRAC, ComponentKind.BIOS})

# The run's shared settings (cluster gates hold asyncio semaphores, so they
# travel by context to the sub-flows, not as flow parameters).
_OPTIONS: ContextVar[RolloutOptions] = ContextVar("rackflow_rollout_options")


class ServerUpdateResult(BaseModel):
    """What the full update of one server did."""

    server: str
    attempted: list[str] = Field(default_factory=list)
    completed: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    rows: list[ComponentResult] = Field(default_factory=list)


@flow(name="update-component", flow_run_name="{server.identity}-{kind}", persist_result=True)
async def update_one_component(
    server: ServerRecord, kind: ComponentKind, source: FirmwareSource
) -> ComponentResult:
    """Update one component of one server (skip it when absent or current)."""
    opts = _OPTIONS.get()
    await tag_current_run([server.identity])  # the machine's job history lists it too
    before, ids = await current_version(server, kind, opts)
    if before is None:
        return row(server, str(kind), Outcome.SKIPPED, f"server has no {kind}")
    try:
        package = await opts.package(source, server.model, kind, ids[0] if len(ids) == 1 else None)
    except PreconditionError as exc:
        return row(server, str(kind), Outcome.SKIPPED, f"no package: {exc}")
    if package.version and before == package.version:
        return row(server, str(kind), Outcome.CURRENT, "already current").model_copy(
            update={"before": before, "after": before, "target": before}
        )
    if opts.dry_run:
        return row(server, str(kind), Outcome.WOULD_UPDATE, package.file).model_copy(
            update={"before": before, "target": package.version}
        )
    try:
        return await update_component(server, package, opts, before=before)
    except ComponentFailed as exc:
        raise ComponentFailedInRun(exc.row) from exc


class ComponentFailedInRun(ComponentFailed):
    """Raised out of the component sub-flow so its run ends Failed."""


class _ServerFailed(Exception):
    def __init__(self, result: ServerUpdateResult) -> None:
        self.result = result
        super().__init__(f"{result.server}: failed {result.failed}")


async def _components(
    server: ServerRecord, source: FirmwareSource, deadline_s: float
) -> ServerUpdateResult:
    result = ServerUpdateResult(server=server.identity)
    stop: str | None = None
    for kind in UPDATE_ORDER:
        if stop:
            result.skipped.append(str(kind))
            result.rows.append(row(server, str(kind), Outcome.SKIPPED, stop))
            continue
        run = update_one_component.with_options(timeout_seconds=deadline_s)
        state = await run(server, kind, source, return_state=True)
        if state.is_completed():
            r: ComponentResult = await state.result()
        else:
            err = await state.result(raise_on_failure=False)
            r = (
                err.row
                if isinstance(err, ComponentFailed)
                else row(server, str(kind), Outcome.FAILED, f"{state.name}: {state.message or err}")
            )
        result.rows.append(r)
        if r.result in (Outcome.UPDATED, Outcome.FAILED):
            result.attempted.append(str(kind))
        {Outcome.UPDATED: result.completed, Outcome.FAILED: result.failed}.get(
            r.result, result.skipped
        ).append(str(kind))
        if r.result is Outcome.FAILED and kind in CRITICAL:
            stop = f"stopped: {kind} failed ({r.message})"
    return result


@flow(name="update-server", flow_run_name="{server.identity}", persist_result=True)
async def update_server_components(
    server: ServerRecord, source: FirmwareSource, component_deadline_s: float, lease_wait_s: float
) -> State:
    """All components of one server, in order, in one maintenance window."""
    opts = _OPTIONS.get()
    try:
        async with machine_lease(server.identity, wait_s=lease_wait_s, ensure_limit=False):
            skip = await prepare_server(server, opts)
            if isinstance(skip, str):
                res = ServerUpdateResult(
                    server=server.identity, rows=[row(server, "*", Outcome.SKIPPED, skip)]
                )
                return Failed(data=res, message=skip)
            pending_mm = "pending:maintenance" in (server.attributes or {})
            try:
                async with maintenance_window(server, opts, needed=not opts.dry_run or pending_mm):
                    res = await _components(server, source, component_deadline_s)
                    if res.failed:  # through the window's undo: leave MM only if the host is back
                        raise _ServerFailed(res)
            except _ServerFailed as failed:
                res = failed.result
            if res.completed:
                await refresh_inventory(server, opts)
    except MachineBusyError as exc:
        res = ServerUpdateResult(
            server=server.identity, rows=[row(server, "*", Outcome.SKIPPED, str(exc))]
        )
        return Failed(data=res, message=str(exc))
    critical = [k for k in res.failed if ComponentKind(k) in CRITICAL]
    if critical:
        return Failed(data=res, message=f"critical component failed: {', '.join(critical)}")
    if res.failed:
        return Completed(
            data=res, name="CompletedWithErrors", message=f"failed: {', '.join(res.failed)}"
        )
    return Completed(data=res)


@flow(name="full-server-update", persist_result=True)
async def full_server_update(
    source: FirmwareSource,
    targets: list[str] = [],  # noqa: B006 - Prefect shows defaults in the UI
    model: str | None = None,
    apply_time: ApplyTime = ApplyTime.ON_RESET,
    component_deadline_s: float = 900.0,
    max_parallel: int = 1,
    max_failures: int = 1,
    max_unavailable_per_cluster: int = 1,
    dry_run: bool = False,
    deadlines: StepDeadlines = StepDeadlines(),  # noqa: B008
    credentials_block: str = "redfish",
    vcenter_block: str | None = None,
    inventory_block: str | None = None,
    lease_wait_s: float = 3600.0,
) -> State:
    """Update every component of servers in Dell's order, rolling across servers.

    Args:
        source: Firmware source (repository, catalog or ...; a direct URL is refused:
            it holds one package).
        targets: Service tags; empty: every online server (of ``model``, when given).
        model: With no targets: only servers of this model.
        apply_time: OnReset (rackflow reboots) or Immediate (the iDRAC reboots).
        component_deadline_s: Deadline of each component's sub-flow (default 15 minutes).
        max_parallel: Servers updated at once.
        max_failures: Start no more servers after this many failed.
        max_unavailable_per_cluster: Hosts of one vSphere cluster in maintenance at once.
        dry_run: Report what would change; touch nothing.
        deadlines: Per-step deadlines inside a component.
        credentials_block: ``RedfishCredentials`` block name.
        vcenter_block: ``VCenterCredentials`` block name (None: no maintenance mode).
        inventory_block: ``InventoryStore`` block name.
        lease_wait_s: How long to wait for another job on a server to finish.

    Returns:
        Completed when every server succeeded (or was current), Failed otherwise.
    """
    started = time.monotonic()
    check_rollout_numbers(
        max_parallel=max_parallel,
        max_failures=max_failures,
        max_unavailable_per_cluster=max_unavailable_per_cluster,
    )
    if component_deadline_s <= 0:
        raise PreconditionError(subject="component_deadline_s", reason="must be positive")
    if source.kind == "url":
        raise PreconditionError(
            subject="source", reason="a direct URL holds one package: use rolling-firmware-update"
        )
    servers = await load_target_servers(targets, model, inventory_block)
    get_run_logger().info("full server update of %d server(s)", len(servers))

    async def one(server: ServerRecord) -> list[ComponentResult]:
        state = await update_server_components(
            server, source, component_deadline_s, lease_wait_s, return_state=True
        )
        res = await state.result(raise_on_failure=False)
        if isinstance(res, ServerUpdateResult):
            return res.rows
        return [row(server, "*", Outcome.FAILED, f"{state.name}: {state.message}")]

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
    ) as opts:
        _OPTIONS.set(opts)
        rows = await rolling(servers, one, max_parallel=max_parallel, max_failures=max_failures)
    summary = RolloutSummary(rows=rows, duration_s=round(time.monotonic() - started, 1))
    await report(summary, "Full server update", "full-server-update")
    return final_state(summary, "full server update")
