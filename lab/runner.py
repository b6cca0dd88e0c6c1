"""Run a lab in the foreground until Ctrl-C (``python -m lab --fleet FILE``).

The lab iDRACs, their firmware repository and (unless ``--no-vcenter``) a
simulated vCenter whose ESXi hosts carry the lab servers' service tags, in
clusters. The CLI's ``rackflow lab up`` calls :func:`run_foreground`.
Printing the lab's own generated passwords to the terminal is deliberate:
they are lab secrets, and the operator needs them to create the blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from lab.core import LabCore
from lab.fleet import FleetSpec, load_fleet
from lab.server import serve
from lab.vcsim import Vcsim, VcsimBuildError, VcsimError, VcsimSpec

DEFAULT_STATE_DIR = Path.home() / ".rackflow" / "lab"
REDFISH_BLOCK = "lab"
VCENTER_BLOCK = "lab-vcenter"


def describe(core: LabCore, *, out: TextIO = sys.stdout, vcenter: Vcsim | None = None) -> None:
    """Print where the lab's BMCs (and vCenter) answer and how to reach them.

    Args:
        core: The started lab.
        out: Where to print.
        vcenter: The running lab vCenter, if any.
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
    if vcenter is not None:
        describe_vcenter(vcenter, out=out)
    print_next_steps(core, vcenter, out=out)
    out.flush()


def describe_vcenter(vc: Vcsim, *, out: TextIO = sys.stdout) -> None:
    """Print the lab vCenter's address, credentials and clusters.

    Args:
        vc: The running simulator.
        out: Where to print.
    """
    spec = vc.spec
    print(
        f"vCenter (vcsim): {vc.url}  {len(spec.all_hosts())} ESXi hosts "
        f"in {len(spec.clusters)} cluster(s) (same service tags as the iDRACs)",
        file=out,
    )
    print(f"  user {vc.username}  password {vc.password}", file=out)
    print(f"  CA certificate: {vc.ca_path}", file=out)
    for cluster in spec.clusters:
        print(f"  {cluster.name}: {' '.join(h.name for h in cluster.hosts)}", file=out)
    if spec.hosts:
        print(f"  standalone: {' '.join(h.name for h in spec.hosts)}", file=out)


def _discover_args(core: LabCore) -> str:
    ports = sorted({bmc.port for bmc in core.bmcs})
    port = str(ports[0]) if len(ports) == 1 else f"{ports[0]}-{ports[-1]}"
    where = "127.0.0.1" if core.fleet.single_host else core.fleet.subnet
    return f"{where} --port {port}"


def print_next_steps(core: LabCore, vc: Vcsim | None, *, out: TextIO = sys.stdout) -> None:
    """Print the ``rackflow`` commands that create the blocks for this lab.

    Args:
        core: The started lab.
        vc: The running lab vCenter, if any.
        out: Where to print.
    """
    fleet = core.fleet
    tls = "--insecure" if fleet.tls == "self-signed" else f"--ca-bundle {core.certs.ca_path}"
    print("Create the blocks (with a Prefect server configured), then discover:", file=out)
    print(
        f"  RACKFLOW_BMC_PASSWORD={shlex.quote(fleet.password)} rackflow blocks create-redfish "
        f"{REDFISH_BLOCK} --username {shlex.quote(fleet.username)} {tls} --overwrite",
        file=out,
    )
    if vc is not None:
        print(
            f"  RACKFLOW_VCENTER_PASSWORD={shlex.quote(vc.password)} rackflow blocks "
            f"create-vcenter {VCENTER_BLOCK} --host {vc.host} --port {vc.port} "
            f"--username {shlex.quote(vc.username)} --ca-bundle {vc.ca_path} --overwrite",
            file=out,
        )
    print(f"  rackflow discover {_discover_args(core)} --credentials {REDFISH_BLOCK}", file=out)
    if vc is not None:
        print(
            f"  and the vcenter-sync flow with vcenter_block={VCENTER_BLOCK!r} links the hosts.",
            file=out,
        )
    print("Ctrl-C stops the lab.", file=out)


def run_foreground(
    *,
    fleet: FleetSpec,
    state_dir: Path,
    repository: bool = True,
    repository_port: int = 0,
    vcenter: bool = True,
    cluster_size: int = 4,
    out: TextIO = sys.stdout,
) -> None:
    """Serve a fleet (its firmware repository, a lab vCenter) until interrupted.

    Args:
        fleet: The fleet.
        state_dir: Where the CA, certificates and repository files are kept
            (the vCenter's under ``state_dir/vcsim``).
        repository: Serve a firmware repository with a newer package per model/component.
        repository_port: Its port on 127.0.0.1 (0 = any free port; printed at start).
        vcenter: Also run a simulated vCenter with one ESXi host per BMC.
        cluster_size: Hosts per vSphere cluster (0: every host standalone).
        out: Where to print the lab's description.

    Raises:
        VcsimBuildError: The vCenter simulator could not be built (Go or govmomi missing).
        VcsimError: It did not start.
    """
    with contextlib.ExitStack() as stack:
        vc: Vcsim | None = None
        if vcenter:
            spec = VcsimSpec.from_fleet(fleet, cluster_size=cluster_size, speed=fleet.speed)
            print("starting the lab vCenter (vcsim; the first start builds it) ...", file=out)
            out.flush()
            vc = stack.enter_context(Vcsim(spec=spec, state_dir=Path(state_dir) / "vcsim"))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(
                    fleet,
                    state_dir,
                    ready=functools.partial(describe, out=out, vcenter=vc),
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
    parser.add_argument(
        "--no-vcenter", action="store_true", help="do not run the simulated vCenter (vcsim)"
    )
    parser.add_argument(
        "--cluster-size", type=int, default=4, help="ESXi hosts per vSphere cluster (0: none)"
    )
    args = parser.parse_args(argv)
    fleet = (
        load_fleet(args.fleet)
        if args.fleet
        else FleetSpec.generate(count=args.count, port=args.port)
    )
    if args.speed is not None:
        fleet = fleet.model_copy(update={"speed": args.speed})
    try:
        run_foreground(
            fleet=fleet,
            state_dir=args.state_dir,
            repository=not args.no_repository,
            repository_port=args.repository_port,
            vcenter=not args.no_vcenter,
            cluster_size=args.cluster_size,
        )
    except (VcsimBuildError, VcsimError) as exc:
        print(f"error: lab vCenter: {exc}\n(--no-vcenter runs the lab without it)", file=sys.stderr)
        return 1
    return 0
