"""Run a lab in the foreground until Ctrl-C (``python -m lab --fleet FILE``).

The CLI's ``rackflow lab up`` calls :func:`run_foreground`. Printing the
lab's own generated password to the terminal is deliberate: it is a lab
secret, and the operator needs it to create the credentials block.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lab.core import LabCore
from lab.fleet import FleetSpec, load_fleet
from lab.server import serve

DEFAULT_STATE_DIR = Path.home() / ".rackflow" / "lab"


def describe(core: LabCore, *, out: TextIO = sys.stdout) -> None:
    """Print where the lab's BMCs answer and how to reach them.

    Args:
        core: The started lab.
        out: Where to print.
    """
    fleet = core.fleet
    print(f"rackflow lab: {len(core.bmcs)} iDRACs up in {core.startup_s:.2f} s", file=out)
    for bmc in core.bmcs:
        flags = [f"{k}={v}" for k, v in bmc.faults.model_dump(exclude_defaults=True).items()]
        own = " (own credentials)" if bmc.spec.username or bmc.spec.password else ""
        note = f"  faults: {', '.join(flags)}" if flags else ""
        print(f"  https://{bmc.key:<22} {bmc.service_tag}  {bmc.spec.model}{own}{note}", file=out)
    print(f"TLS: {fleet.tls}; CA certificate: {core.certs.ca_path}", file=out)
    print(f"Credentials: username {fleet.username}  password {fleet.password}", file=out)
    print(f"Admin API: {core.admin_url}/lab/bmcs", file=out)
    repo = core.repository
    if repo is not None:
        d = fleet.durations
        print(
            f"Firmware repository: {repo.base_url}/ (index.json, Catalog.xml[.gz], "
            f"{len(repo.packages)} packages; InstallFromRepository IPAddress {repo.host})",
            file=out,
        )
        print(
            f"Lab durations (lab s, speed {fleet.speed}): download {d.download_s}, "
            f"apply {d.apply_s}, reboot {d.reboot_s}, iDRAC reset {d.idrac_reset_s}",
            file=out,
        )
    print(
        "Create a Redfish credentials block with these (username, password, CA bundle),\n"
        "e.g. through `rackflow blocks` or the Prefect UI. Ctrl-C stops the lab.",
        file=out,
    )
    out.flush()


def run_foreground(
    *,
    fleet: FleetSpec,
    state_dir: Path,
    repository: bool = True,
    repository_port: int = 0,
) -> None:
    """Serve a fleet (and its firmware repository) until interrupted.

    Args:
        fleet: The fleet.
        state_dir: Where the CA, certificates and repository files are kept.
        repository: Serve a firmware repository with a newer package per model/component.
        repository_port: Its port on 127.0.0.1 (0 = any free port; printed at start).
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                fleet,
                state_dir,
                ready=describe,
                repository=repository,
                repository_port=repository_port,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lab``.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("--fleet", type=Path, help="fleet YAML (default: generated fleet)")
    parser.add_argument("--count", type=int, default=8, help="BMCs of a generated fleet")
    parser.add_argument("--port", type=int, default=8443, help="port of a generated fleet")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--speed", type=float, help="lab seconds per real second")
    parser.add_argument(
        "--repository-port", type=int, default=0, help="firmware repository port (0: any free)"
    )
    parser.add_argument(
        "--no-repository", action="store_true", help="do not serve a firmware repository"
    )
    args = parser.parse_args(argv)
    fleet = (
        load_fleet(args.fleet)
        if args.fleet
        else FleetSpec.generate(count=args.count, port=args.port)
    )
    if args.speed is not None:
        fleet = fleet.model_copy(update={"speed": args.speed})
    run_foreground(
        fleet=fleet,
        state_dir=args.state_dir,
        repository=not args.no_repository,
        repository_port=args.repository_port,
    )
    return 0
