"""``make demo``: a simulated fleet, a local Prefect server, one discovery run.

Everything the demo writes lives under ``.rackflow-demo/`` in the checkout
(Prefect's database, the inventory, the lab CA), so it never touches a real
inventory. The lab stops when the demo ends; the Prefect server keeps running
so the run can be browsed, and ``make demo-stop`` stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".rackflow-demo"
PIDFILE = DEMO / "prefect-server.pid"
HOST = "127.0.0.1"
PORT = int(os.environ.get("RACKFLOW_DEMO_PORT", "4200"))
API = f"http://{HOST}:{PORT}/api"


def _healthy(timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{API}/health", timeout=timeout) as r:  # noqa: S310 - loopback
            return r.status == 200
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
        print(f"Prefect server already running at http://{HOST}:{PORT}")
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


async def _run_discovery(ranges: list[str], port: int) -> object:
    from prefect import get_client

    from flows.discovery import discovery

    state = await discovery(ranges=ranges, ports=[port], credentials_block="lab", return_state=True)
    summary = await state.result()  # type: ignore[union-attr]
    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[union-attr, arg-type]
    print(f"\nflow run {run.name}: {state.name}")  # type: ignore[union-attr]
    print(f"see it at http://{HOST}:{PORT}/runs/flow-run/{run.id}")
    return summary


def run_demo() -> None:
    """Start the lab and the server, run discovery, print what it found."""
    _environment()
    start_server()
    from blocks import RedfishCredentials
    from deployments.inventory_cli import app as inventory_app
    from lab.fleet import load_fleet
    from lab.server import Lab

    fleet = load_fleet(REPO / "lab" / "fleets" / "example.yaml")
    with Lab(fleet=fleet, state_dir=DEMO / "lab") as lab:
        RedfishCredentials(
            username=fleet.username,
            password=fleet.password,
            ca_bundle=str(lab.ca_path),
        ).save("lab", overwrite=True)
        print(f"lab: {len(fleet.bmcs)} simulated iDRACs in {fleet.subnet}, port {fleet.port}")
        summary = asyncio.run(_run_discovery([fleet.subnet], fleet.port))
    print("\nsummary:")
    print(summary.model_dump_json(indent=2, exclude={"servers"}))  # type: ignore[attr-defined]
    print("\ninventory:")
    try:
        inventory_app(["list"], standalone_mode=False)
    except SystemExit:
        pass
    print(
        f"\nThe Prefect UI is at http://{HOST}:{PORT} (flow runs, artifacts: discovery-summary, "
        "discovery-servers).\nThe simulated fleet has stopped; the Prefect server keeps running "
        "for you to browse.\nStop it with: make demo-stop"
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
