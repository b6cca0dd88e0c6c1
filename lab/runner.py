"""Run a lab in the foreground until Ctrl-C (``python -m lab --fleet FILE``).

The lab iDRACs, their firmware repository, (unless ``--no-vcenter``) a
simulated vCenter whose ESXi hosts carry the lab servers' service tags, in
clusters, and (unless ``--no-reboot-lab``) the reboot lab: machines with
sshd, IPMI, a PDU outlet, an iLO and a Xen VM each, and a Bugzilla
(:mod:`lab.machines.fleet`). The CLI's ``rackflow lab up`` calls
:func:`run_foreground`.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lab.core import LabCore
from lab.fleet import FleetSpec, load_fleet
from lab.machines.fleet import (
    BLOCKS,
    ILO_USER,
    XEN_USER,
    RebootFleet,
    RebootLabError,
    RebootLabFiles,
    RebootLabSpec,
    missing_tools,
)
from lab.machines.fleet import start_reboot_lab as start_fleet
from lab.server import serve
from lab.vcsim import Vcsim, VcsimBuildError, VcsimError, VcsimSpec

DEFAULT_STATE_DIR = Path.home() / ".rackflow" / "lab"
REDFISH_BLOCK = "lab"
VCENTER_BLOCK = "lab-vcenter"
CHAIN_POLL_S = 5.0  # the reboot chain's default ping interval (flows/reboot_chain.py)


@dataclass(frozen=True)
class RebootLabRun:
    """The running reboot lab and the files written for it (what :func:`describe` prints)."""

    fleet: RebootFleet
    files: RebootLabFiles


def describe(
    core: LabCore,
    *,
    out: TextIO = sys.stdout,
    vcenter: Vcsim | None = None,
    reboot: RebootLabRun | None = None,
) -> None:
    """Print where the lab's BMCs (vCenter, reboot lab) answer and how to reach them.

    Args:
        core: The started lab.
        out: Where to print.
        vcenter: The running lab vCenter, if any.
        reboot: The running reboot lab, if any.
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
    if reboot is not None:
        describe_reboot_lab(reboot, out=out)
    print_next_steps(core, vcenter, out=out, reboot=reboot)
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


def print_next_steps(
    core: LabCore,
    vc: Vcsim | None,
    *,
    out: TextIO = sys.stdout,
    reboot: RebootLabRun | None = None,
) -> None:
    """Print the ``rackflow`` commands that create the blocks for this lab.

    Args:
        core: The started lab.
        vc: The running lab vCenter, if any.
        out: Where to print.
        reboot: The running reboot lab, if any.
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
    if reboot is not None:
        print_reboot_next_steps(reboot, out=out)
    print("Ctrl-C stops the lab.", file=out)


def describe_reboot_lab(run: RebootLabRun, *, out: TextIO = sys.stdout) -> None:
    """Print the reboot lab's machines, their paths and the lab's own secrets.

    Args:
        run: The running reboot lab.
        out: Where to print.
    """
    fleet, sec = run.fleet, run.fleet.secrets
    spec = fleet.spec
    print(
        f"Reboot lab: {len(fleet.names)} machines (shutdown {spec.shutdown_s} s, boot "
        f"{spec.boot_s} s lab time, speed {spec.speed}); paths per machine:",
        file=out,
    )
    for entry in fleet.entries():
        assert entry.ping and entry.ssh and entry.ipmi and entry.pdu and entry.ilo and entry.xen
        print(
            f"  {entry.name:<14} {entry.address}  ping tcp/{entry.ping.port}  "
            f"ssh {entry.ssh.port}  ipmi udp/{entry.ipmi.port}  pdu outlet {entry.pdu.outlet}  "
            f"ilo https://{entry.ilo.address}:{entry.ilo.port}  xen vm {entry.xen.vm_uuid}",
            file=out,
        )
    pdu_host, pdu_port = fleet.pdu.endpoint
    print(
        f"  PDU (APC, SNMP v2c) udp {pdu_host}:{pdu_port}  read-only community "
        f"{sec.ro_community}  read-write {sec.rw_community}",
        file=out,
    )
    print(f"  IPMI user {fleet.ipmi.user}  password {sec.ipmi_password}", file=out)
    print(f"  iLO user {ILO_USER}  password {sec.ilo_password}  CA {fleet.ca_path}", file=out)
    print(f"  XenAPI {fleet.xen.url}  user {XEN_USER}  password {sec.xen_password}", file=out)
    print(f"  Bugzilla {fleet.bugzilla.url}  API key {fleet.bugzilla.api_key}", file=out)
    print(
        f"  SSH as {fleet.ssh_user} with {run.files.key_file} "
        f"(host keys in {run.files.known_hosts_file})",
        file=out,
    )
    print(f"  Machine-access file: {run.files.access_file}", file=out)


def print_reboot_next_steps(run: RebootLabRun, *, out: TextIO = sys.stdout) -> None:
    """Print the commands that create the reboot lab's blocks, import it and reboot a machine.

    Args:
        run: The running reboot lab.
        out: Where to print.
    """
    fleet, sec, files = run.fleet, run.fleet.secrets, run.files
    ca, q = shlex.quote(str(fleet.ca_path)), shlex.quote

    def _env(name: str, value: str) -> str:
        return f"{name}={q(value)}"

    xen_ca = f" --ca-bundle {ca}" if fleet.xen.url.startswith("https") else ""
    print("Reboot lab (new secrets and ports on every start: run these again then):", file=out)
    for line in (
        f"rackflow blocks create-ssh {BLOCKS['ssh']} --user {q(fleet.ssh_user)} "
        f"--key-file {q(str(files.key_file))} "
        f"--known-hosts-file {q(str(files.known_hosts_file))} --overwrite",
        f"{_env('RACKFLOW_IPMI_PASSWORD', sec.ipmi_password)} rackflow blocks create-ipmi "
        f"{BLOCKS['ipmi']} --user {q(fleet.ipmi.user)} --overwrite",
        f"{_env('RACKFLOW_SNMP_COMMUNITY', sec.rw_community)} rackflow blocks create-snmp "
        f"{BLOCKS['pdu']} --overwrite",
        f"{_env('RACKFLOW_ILO_PASSWORD', sec.ilo_password)} rackflow blocks create-ilo "
        f"{BLOCKS['ilo']} --username {ILO_USER} --ca-bundle {ca} --overwrite",
        f"{_env('RACKFLOW_XEN_PASSWORD', sec.xen_password)} rackflow blocks create-xen "
        f"{BLOCKS['xen']} --url {fleet.xen.url} --username {XEN_USER}{xen_ca} --overwrite",
        f"{_env('RACKFLOW_BUGZILLA_API_KEY', fleet.bugzilla.api_key)} rackflow blocks "
        f"create-bugzilla {BLOCKS['bugzilla']} --url {fleet.bugzilla.url} --overwrite",
        f"rackflow inventory import {q(str(files.access_file))}",
    ):
        print(f"  {line}", file=out)
    name = fleet.names[0]
    params = f"-p machine={name}"
    deadlines = ""
    real_boot_s = fleet.spec.boot_s / fleet.spec.speed
    if real_boot_s < 3 * CHAIN_POLL_S:  # a fast lab: ping often enough to see the reboot
        poll = max(0.1, round(real_boot_s / 5, 1))
        params += f" -p 'deadlines={{\"poll_s\": {poll}}}'"
        deadlines = f', deadlines={{"poll_s": {poll}}}'
    print(f"  prefect deployment run 'reboot/reboot' {params}   (with a worker)", file=out)
    print(
        "  or in this checkout: python -c 'import asyncio; from flows.reboot import "
        f'reboot_flow; print(asyncio.run(reboot_flow("{name}"{deadlines})))\'',
        file=out,
    )


@contextlib.contextmanager
def reboot_lab(
    spec: RebootLabSpec | None, state_dir: Path, *, out: TextIO = sys.stdout
) -> Iterator[RebootLabRun | None]:
    """Run the reboot lab (files in ``state_dir/reboot``), or yield None when skipped.

    Args:
        spec: What to start; None: nothing.
        state_dir: The lab's state directory.
        out: Where to print progress and why it was skipped.

    Yields:
        The running reboot lab, or None (not asked for, or tools missing).

    Raises:
        RebootLabError: It did not start.
    """
    missing = missing_tools() if spec is not None else []
    if spec is None or missing:
        if missing:
            print(
                f"reboot lab skipped: {', '.join(missing)} not installed "
                "(scripts/system-deps.sh installs them; --no-reboot-lab hides this)",
                file=out,
            )
        yield None
        return
    root = Path(state_dir) / "reboot"
    print(f"starting the reboot lab ({spec.machines} machines) ...", file=out)
    out.flush()
    with start_fleet(spec, root / "run") as fleet:
        yield RebootLabRun(fleet=fleet, files=fleet.write_files(root))


def run_foreground(
    *,
    fleet: FleetSpec,
    state_dir: Path,
    repository: bool = True,
    repository_port: int = 0,
    vcenter: bool = True,
    cluster_size: int = 4,
    reboot: RebootLabSpec | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Serve a fleet (its firmware repository, a lab vCenter, the reboot lab) until interrupted.

    Args:
        fleet: The fleet.
        state_dir: Where the CA, certificates and repository files are kept
            (the vCenter's under ``state_dir/vcsim``).
        repository: Serve a firmware repository with a newer package per model/component.
        repository_port: Its port on 127.0.0.1 (0 = any free port; printed at start).
        vcenter: Also run a simulated vCenter with one ESXi host per BMC.
        cluster_size: Hosts per vSphere cluster (0: every host standalone).
        reboot: Also run the reboot lab (skipped with a message when ipmi_sim,
            snmpd or sshd is missing); its files go to ``state_dir/reboot``.
        out: Where to print the lab's description.

    Raises:
        VcsimBuildError: The vCenter simulator could not be built (Go or govmomi missing).
        VcsimError: It did not start.
        RebootLabError: The reboot lab did not start.
    """
    with contextlib.ExitStack() as stack:
        machines = stack.enter_context(reboot_lab(reboot, state_dir, out=out))
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
                    ready=functools.partial(describe, out=out, vcenter=vc, reboot=machines),
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
    parser.add_argument("--machines", type=int, default=3, help="machines of the reboot lab")
    parser.add_argument(
        "--no-reboot-lab", action="store_true", help="do not run the reboot lab (sshd, IPMI, ...)"
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
        reboot = (
            None
            if args.no_reboot_lab
            else RebootLabSpec(machines=args.machines, speed=args.speed or 1.0)
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        run_foreground(
            fleet=fleet,
            state_dir=args.state_dir,
            repository=not args.no_repository,
            repository_port=args.repository_port,
            vcenter=not args.no_vcenter,
            cluster_size=args.cluster_size,
            reboot=reboot,
        )
    except (VcsimBuildError, VcsimError) as exc:
        print(f"error: lab vCenter: {exc}\n(--no-vcenter runs the lab without it)", file=sys.stderr)
        return 1
    except RebootLabError as exc:
        print(f"error: {exc}\n(--no-reboot-lab runs the lab without it)", file=sys.stderr)
        return 1
    return 0
