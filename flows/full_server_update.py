"""Full server update: iDRAC, BIOS, CPLD, RAID, NIC, Backplane, in that order.

Per server one flow run (``update-server``), holding the machine lease and one
vCenter maintenance window (opened only when a component needs work), with one
sub-flow run per component (``update-component``), each with its own deadline.
An iDRAC or BIOS failure stops the server, and so does any failure after which
the server does not come back; other failures are recorded and the rest continue.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from clients.errors import PreconditionError, RackflowError
from clients.firmware.sources import UPDATE_ORDER, ApplyTime
from clients.inventory import ServerRecord
from clients.redfish.models import ComponentKind
from clients.vsphere import MaintenanceOptions
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
from flows.maintenance_window import (
    HostNotBackError,
    MaintenanceWindow,
    host_is_back,
    maintenance_window,
    name_hosts_left,
)
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
from tasks.firmware import Readiness, installed_of, summarize_versions
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
    """Some component failed: raised through the maintenance window, which then leaves
    maintenance mode only if the server is back (``host_back`` False: known not back)."""

    def __init__(self, result: ServerUpdateResult, *, host_back: bool | None) -> None:
        self.result = result
        self.host_back = host_back
        super().__init__(f"{result.server}: failed {', '.join(result.failed)}")


async def _needs_work(
    server: ServerRecord, source: FirmwareSource, ready: Readiness, opts: RolloutOptions
) -> list[str]:
    """Components whose installed version differs from the package's (read before any window).

    A package that cannot be resolved right now counts as work: the component's
    sub-flow reports it.
    """
    kinds: list[str] = []
    for kind in UPDATE_ORDER:
        found = installed_of(ready.firmware, kind)
        before = summarize_versions(found)
        if before is None:
            continue
        ids = sorted({c.component_id for c in found if c.component_id})
        try:
            package = await opts.package(
                source, server.model, kind, ids[0] if len(ids) == 1 else None
            )
        except PreconditionError:
            continue  # no package for it: the sub-flow skips it
        except RackflowError:
            kinds.append(str(kind))
            continue
        if not package.version or before != package.version:
            kinds.append(str(kind))
    return kinds


async def _components(
    server: ServerRecord, source: FirmwareSource, deadline_s: float, opts: RolloutOptions
) -> tuple[ServerUpdateResult, bool | None]:
    """Every component in order; the result, and whether the server is back (None: not asked)."""
    result = ServerUpdateResult(server=server.identity)
    stop: str | None = None
    back: bool | None = None
    for kind in UPDATE_ORDER:
        if stop:
            result.skipped.append(str(kind))
            result.rows.append(row(server, str(kind), Outcome.SKIPPED, stop))
            continue
        r = await _one_component(server, kind, source, deadline_s)
        result.rows.append(r)
        if r.result in (Outcome.UPDATED, Outcome.FAILED):
            result.attempted.append(str(kind))
        {Outcome.UPDATED: result.completed, Outcome.FAILED: result.failed}.get(
            r.result, result.skipped
        ).append(str(kind))
        if r.result is not Outcome.FAILED:
            continue
        if kind in CRITICAL:
            stop = f"stopped: {kind} failed ({r.message})"
        elif not (back := await host_is_back(server, opts)):
            # Nothing more can be flashed on a server that is down.
            stop = f"stopped: the server did not come back after {kind} failed"
    return result, back


async def _one_component(
    server: ServerRecord, kind: ComponentKind, source: FirmwareSource, deadline_s: float
) -> ComponentResult:
    """Run one component's sub-flow with its deadline; its row, whatever its end."""
    run = update_one_component.with_options(timeout_seconds=deadline_s)
    state = await run(server, kind, source, return_state=True)
    if state.is_completed():
        done: ComponentResult = await state.result()
        return done
    err = await state.result(raise_on_failure=False)
    if isinstance(err, ComponentFailed):
        return err.row
    return row(server, str(kind), Outcome.FAILED, f"{state.name}: {state.message or err}")


def _kept_by_someone_else(res: ServerUpdateResult, window: MaintenanceWindow) -> None:
    """Say in the server's rows that its host stays in someone else's maintenance mode."""
    if window.opened and not window.entered and window.note:
        for r in res.rows:
            r.message = f"{r.message}; {window.note}" if r.message else window.note


@flow(name="update-server", flow_run_name="{server.identity}", persist_result=True)
async def update_server_components(
    server: ServerRecord, source: FirmwareSource, component_deadline_s: float, lease_wait_s: float
) -> State:
    """All components of one server, in order, in one maintenance window."""
    opts = _OPTIONS.get()
    try:
        async with machine_lease(
            server.identity, wait_s=lease_wait_s, ensure_limit=False, label=False
        ):
            ready = await prepare_server(server, opts, read_firmware=True)
            if isinstance(ready, str):
                res = ServerUpdateResult(
                    server=server.identity, rows=[row(server, "*", Outcome.SKIPPED, ready)]
                )
                return Failed(data=res, message=ready)
            # Packages are chosen for the model the BMC reports (the inventory may lag).
            server = server.model_copy(update={"model": ready.model or server.model})
            res, not_back = await _update_in_window(server, source, component_deadline_s, ready)
            if res.completed:
                await refresh_inventory(server, opts)
    except MachineBusyError as exc:
        res = ServerUpdateResult(
            server=server.identity, rows=[row(server, "*", Outcome.SKIPPED, str(exc))]
        )
        return Failed(data=res, message=str(exc))
    return _server_state(res, not_back)


async def _update_in_window(
    server: ServerRecord, source: FirmwareSource, deadline_s: float, ready: Readiness
) -> tuple[ServerUpdateResult, HostNotBackError | None]:
    """The components, in a maintenance window when one of them needs work."""
    opts = _OPTIONS.get()
    work = await _needs_work(server, source, ready, opts)
    if not work:
        get_run_logger().info("%s: every component is current or absent", server.identity)
    try:
        # No work, no window (a crashed run's maintenance mode is still finished).
        async with maintenance_window(server, opts, needed=bool(work)) as window:
            res, back = await _components(server, source, deadline_s, opts)
            _kept_by_someone_else(res, window)
            if res.failed:  # through the window's undo: leave MM only if the host is back
                raise _ServerFailed(res, host_back=back)
    except HostNotBackError as exc:
        cause = exc.__cause__
        assert isinstance(cause, _ServerFailed)
        rows = [*cause.result.rows, row(server, "*", Outcome.FAILED, f"maintenance mode: {exc}")]
        return cause.result.model_copy(update={"rows": rows}), exc
    except _ServerFailed as failed:
        return failed.result, None
    return res, None


def _server_state(res: ServerUpdateResult, not_back: HostNotBackError | None) -> State:
    """Failed: a critical component failed or the server is down; CompletedWithErrors: others."""
    if not_back is not None:
        return Failed(data=res, message=str(not_back))
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
    maintenance: MaintenanceOptions = MaintenanceOptions(),  # noqa: B008
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
        maintenance: vCenter evacuation when entering maintenance mode (powered-off VMs,
            vSAN data mode); default: vCenter's own.
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
        maintenance=maintenance,
    ) as opts:
        _OPTIONS.set(opts)
        rows = await rolling(servers, one, max_parallel=max_parallel, max_failures=max_failures)
    summary = RolloutSummary(rows=rows, duration_s=round(time.monotonic() - started, 1))
    await report(summary, "Full server update", "full-server-update")
    return name_hosts_left(final_state(summary, "full server update"), summary.rows)
