"""``make demo``: a simulated datacenter, a local Prefect server, discovery,
vCenter sync and a full firmware update of a few servers.

Everything the demo writes lives under ``.rackflow-demo/`` in the checkout
(Prefect's database, the inventory, the lab CA, the vCenter simulator's
certificate), so it never touches a real inventory. The lab iDRACs, their
firmware repository and the vCenter simulator stop when the demo ends; the
Prefect server keeps running so the runs can be browsed, and ``make
demo-stop`` stops it. Everything listens on 127.0.0.1 or 127.10.0.0/24.
The terminal shows warnings and results only; set
``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=INFO`` to see the flow logs there too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.fleet import FleetSpec
    from lab.server import Lab
    from lab.vcsim import Vcsim, VcsimSpec

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".rackflow-demo"
PIDFILE = DEMO / "prefect-server.pid"
HOST = "127.0.0.1"
PORT = int(os.environ.get("RACKFLOW_DEMO_PORT", "4200"))
API = f"http://{HOST}:{PORT}/api"
UI = f"http://{HOST}:{PORT}"
# Lab seconds per real second: a component update takes seconds, not minutes. A host
# reboot is Off for 2 lab seconds (0.4 s here): status polls every 0.2 s still see it.
SPEED = 5.0
POLL_S = 0.2
TARGETS = 3  # healthy servers the full update covers, one per vSphere cluster
CLUSTER_SIZE = 4
VCENTER_BLOCK = "lab-vcenter"
CREDENTIALS_BLOCK = "lab"


def _healthy(timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{API}/health", timeout=timeout) as r:  # noqa: S310 - loopback
            return bool(r.status == 200)
    except OSError:
        return False


def _port_taken() -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, PORT)) == 0


def _server_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_server() -> None:
    """Start (or reuse) the demo's Prefect server on SQLite under .rackflow-demo/."""
    if _server_pid() and _healthy():
        print(f"Prefect server already running at {UI}")
        return
    if _port_taken():
        sys.exit(f"port {PORT} is in use by something else: stop it or set RACKFLOW_DEMO_PORT")
    DEMO.mkdir(exist_ok=True)
    log = (DEMO / "prefect-server.log").open("ab")
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen(  # noqa: S603 - our own venv's prefect, fixed arguments
        [str(prefect), "server", "start", "--host", HOST, "--port", str(PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=os.environ.copy(),
        start_new_session=True,  # keeps running after the demo, until `make demo-stop`
    )
    PIDFILE.write_text(str(proc.pid))
    print(f"starting Prefect server (pid {proc.pid}, log {DEMO / 'prefect-server.log'}) ...")
    deadline = time.monotonic() + 90
    while not _healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"Prefect server did not start; see {DEMO / 'prefect-server.log'}")
        time.sleep(0.5)


def stop_server() -> None:
    """Stop the demo's Prefect server, if it runs."""
    pid = _server_pid()
    if pid is None:
        print("no demo Prefect server running")
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _server_pid() and time.monotonic() < deadline:
        time.sleep(0.3)
    PIDFILE.unlink(missing_ok=True)
    print(f"stopped the demo Prefect server (pid {pid})")


def _environment() -> None:
    # Before Prefect is imported: the demo's own Prefect home, API and inventory.
    os.environ.setdefault("PREFECT_HOME", str(DEMO / "prefect"))
    os.environ["PREFECT_API_URL"] = API
    os.environ["RACKFLOW_HOME"] = str(DEMO)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The flow logs go to the Prefect UI; the terminal shows warnings and the results.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def _run_url(state: Any) -> str:
    return f"{UI}/runs/flow-run/{state.state_details.flow_run_id}"


async def _run_discovery(ranges: list[str], port: int) -> tuple[Any, str]:
    from flows.discovery import discovery

    # refresh + no resume: the lab starts from factory firmware on every demo run,
    # so re-read every server instead of trusting an earlier demo's inventory.
    state = await discovery(
        ranges=ranges,
        ports=[port],
        credentials_block=CREDENTIALS_BLOCK,
        refresh=True,
        resume_minutes=0,
        return_state=True,
    )
    return await state.result(), _run_url(state)  # type: ignore[misc]


def pick_targets(fleet: FleetSpec, spec: VcsimSpec, count: int = TARGETS) -> list[str]:
    """Healthy lab servers for the update, each from another vSphere cluster.

    Args:
        fleet: The lab fleet (faults and own credentials mark the unhealthy ones).
        spec: The vCenter simulator's clusters.
        count: How many to pick.

    Returns:
        Service tags, at most one per cluster.
    """
    healthy = {
        b.service_tag
        for b in fleet.bmcs
        if not b.faults.model_dump(exclude_defaults=True) and not (b.username or b.password)
    }
    picked: list[str] = []
    for cluster in spec.clusters:
        tag = next((h.service_tag for h in cluster.hosts if h.service_tag in healthy), None)
        if tag and len(picked) < count:
            picked.append(tag)
    return picked


def _start_vcenter(stack: contextlib.ExitStack, fleet: FleetSpec) -> Vcsim | None:
    """Start the vCenter simulator and save its block; None when it cannot be built."""
    from blocks import VCenterCredentials
    from lab.vcsim import Vcsim, VcsimBuildError, VcsimSpec

    spec = VcsimSpec.from_fleet(fleet, cluster_size=CLUSTER_SIZE, speed=fleet.speed)
    print("\nstarting the vCenter simulator (its first start builds it: 20-45 s) ...")
    started = time.monotonic()
    try:
        vc = stack.enter_context(Vcsim(spec=spec, state_dir=DEMO / "vcsim"))
    except VcsimBuildError as exc:
        print(f"\nvCenter simulator unavailable: {exc}")
        print("(`make system-deps` installs what it needs); continuing without vCenter.")
        return None
    VCenterCredentials(
        host=vc.host,
        port=vc.port,
        username=vc.username,
        password=vc.password,  # type: ignore[arg-type] # pydantic makes it a SecretStr
        ca_bundle=str(vc.ca_path),
    ).save(VCENTER_BLOCK, overwrite=True)
    hosts = len(spec.all_hosts())
    print(
        f"vCenter simulator: {vc.url}, {hosts} ESXi hosts in {len(spec.clusters)} clusters "
        f"of {CLUSTER_SIZE} (same service tags as the lab servers), up in "
        f"{time.monotonic() - started:.1f} s; block vcenter-credentials/{VCENTER_BLOCK}"
    )
    return vc


def _run_vcenter_sync() -> str:
    from flows.vcenter_sync import vcenter_sync

    state = vcenter_sync(vcenter_block=VCENTER_BLOCK, return_state=True)
    report = state.result()
    print(
        f"vcenter-sync: {report.hosts} hosts, {report.linked} linked to inventory servers "
        f"({len(report.new)} new), {len(report.unmatched)} unmatched -> {_run_url(state)}"
    )
    return _run_url(state)


async def _run_full_update(lab: Lab, targets: list[str], vcenter: bool) -> tuple[Any, Any, str]:
    from flows.full_server_update import full_server_update
    from flows.rollout import StepDeadlines

    assert lab.repository is not None  # noqa: S101 - started with repository=True
    deadlines = StepDeadlines(  # real seconds; the lab runs SPEED times faster than iDRACs
        maintenance_enter_s=60,
        maintenance_exit_s=60,
        job_staged_s=60,
        job_done_s=60,
        graceful_reboot_s=10,
        host_back_s=60,
        poll_interval_s=POLL_S,
    )
    state = await full_server_update(
        source={"kind": "repository", "base_url": lab.repository.base_url + "/"},
        targets=targets,
        component_deadline_s=120,
        max_parallel=len(targets),
        max_unavailable_per_cluster=1,
        deadlines=deadlines,
        credentials_block=CREDENTIALS_BLOCK,
        vcenter_block=VCENTER_BLOCK if vcenter else None,
        lease_wait_s=30,
        return_state=True,
    )
    summary = await state.result(raise_on_failure=False)  # type: ignore[misc]
    return state, summary, _run_url(state)


def print_rows(rows: list[Any]) -> None:
    """Print a rollout's result rows as a table.

    Args:
        rows: ``ComponentResult`` rows (server, component, before, after, result).
    """
    header = ("SERVER", "COMPONENT", "BEFORE", "AFTER", "RESULT", "TIME")
    table = [
        (
            r.server,
            r.component,
            r.before or "-",
            r.after or "-",
            str(r.result),
            f"{r.duration_s:.1f}s",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=False)]
    for line in (header, *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    for r in rows:
        if r.message and str(r.result) in ("failed", "skipped"):
            print(f"  {r.server} {r.component}: {r.message}")


def _linked_hosts(targets: list[str]) -> dict[str, str]:
    from clients.inventory import Inventory, default_inventory_url

    with Inventory(url=default_inventory_url()) as inv:
        records = {tag: inv.get(tag) for tag in targets}
    return {tag: (r.vcenter_host or "-") if r else "not in inventory" for tag, r in records.items()}


def _update(lab: Lab, targets: list[str], *, vcenter: bool) -> str:
    """Run the full update of ``targets`` and print its table; returns the run's UI link."""
    if vcenter:
        linked = _linked_hosts(targets)
        names = ", ".join(f"{t} (ESXi {linked[t]})" for t in targets)
        window = "in one vCenter maintenance window per server"
    else:
        names, window = ", ".join(targets), "without maintenance mode (no vCenter)"
    print(f"\nfull-server-update of {names}")
    print(
        f"  iDRAC, BIOS, CPLD, RAID, NIC, backplane in turn, {window}\n"
        "  (about a minute; the logs are in the UI, or run with "
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=INFO) ..."
    )
    state, result, url = asyncio.run(_run_full_update(lab, targets, vcenter))
    print(f"\nfull-server-update: {state.name} ({state.message})")
    rows = getattr(result, "rows", None)
    if rows is None:
        print(f"  no result table: {result}")
    else:
        print_rows(rows)
    return url


def _demo_steps(fleet: FleetSpec, stack: contextlib.ExitStack) -> dict[str, str]:
    """Lab, discovery, vCenter, sync and update; returns the UI links of the runs."""
    from blocks import RedfishCredentials
    from lab.server import Lab
    from lab.vcsim import VcsimSpec

    lab = stack.enter_context(Lab(fleet=fleet, state_dir=DEMO / "lab", repository=True))
    assert lab.repository is not None  # noqa: S101 - started with repository=True
    RedfishCredentials(
        username=fleet.username,
        password=fleet.password,  # type: ignore[arg-type] # pydantic makes it a SecretStr
        ca_bundle=str(lab.ca_path),
    ).save(CREDENTIALS_BLOCK, overwrite=True)
    print(
        f"lab: {len(fleet.bmcs)} simulated iDRACs in {fleet.subnet} port {fleet.port} "
        f"(speed {fleet.speed}), firmware repository {lab.repository.base_url}/"
    )
    summary, links = asyncio.run(_run_discovery([fleet.subnet], fleet.port))
    print(
        f"discovery: {summary.found} found, {summary.auth_failed} auth-failed, "
        f"{summary.no_answer} no answer in {summary.duration_s:.1f} s -> {links}"
    )
    urls = {"discovery": links}
    vc = _start_vcenter(stack, fleet)
    if vc is not None:
        urls["vcenter-sync"] = _run_vcenter_sync()
    spec = VcsimSpec.from_fleet(fleet, cluster_size=CLUSTER_SIZE)
    targets = pick_targets(fleet, spec)
    if vc is not None:  # evacuating VMs takes a while on real clusters (lab seconds)
        for host in spec.all_hosts():
            if host.service_tag in targets:
                vc.set_host(host.name, enter_mm_delay_s=20, exit_mm_delay_s=5)
    urls["full-server-update"] = _update(lab, targets, vcenter=vc is not None)
    return urls


def run_demo() -> None:
    """Start the lab and the server, run the flows, print what they did."""
    started = time.monotonic()
    _environment()
    start_server()
    from deployments.inventory_cli import app as inventory_app
    from lab.fleet import load_fleet

    fleet = load_fleet(REPO / "lab" / "fleets" / "example.yaml").model_copy(update={"speed": SPEED})
    with contextlib.ExitStack() as stack:
        urls = _demo_steps(fleet, stack)
    print("\ninventory:")
    with contextlib.suppress(SystemExit):
        inventory_app(["list"], standalone_mode=False)
    print("\nIn the Prefect UI:")
    for name, url in urls.items():
        print(f"  {name:<19} {url}")
    print(f"  {'artifacts':<19} {UI}/artifacts (full-server-update, discovery-summary, ...)")
    print(
        f"\nDemo done in {time.monotonic() - started:.0f} s. The simulated fleet and vCenter "
        "have stopped;\nthe Prefect server keeps running for you to browse. "
        "Stop it with: make demo-stop"
    )


def main() -> None:
    """Entry point of ``python -m deployments.demo [--stop]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stop", action="store_true", help="stop the demo's Prefect server")
    args = parser.parse_args()
    if args.stop:
        stop_server()
    else:
        run_demo()


if __name__ == "__main__":
    main()
