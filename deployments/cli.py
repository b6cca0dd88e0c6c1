"""The ``rackflow`` command line: run flows locally or trigger their deployments."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from clients.errors import RackflowError
from clients.targets import parse_targets
from deployments.blocks_cli import app as blocks_create_app
from deployments.console import fail as _fail
from deployments.console import read_secret
from deployments.inventory_cli import app as inventory_app
from deployments.jobs_cli import app as jobs_app

app = typer.Typer(
    help="rackflow: bare-metal fleet operations as Prefect flows.", no_args_is_help=True
)
app.add_typer(inventory_app, name="inventory", help="Look at the machine inventory.")
app.registered_commands.extend(jobs_app.registered_commands)  # rackflow jobs|status|cancel
lab_app = typer.Typer(help="The simulated datacenter (for demos, tests and benchmarks).")
app.add_typer(lab_app, name="lab")
blocks_app = typer.Typer(help="Register rackflow's block types and create blocks.")
app.add_typer(blocks_app, name="blocks")
# rackflow blocks create-ssh|create-ipmi|create-snmp|create-ilo|create-xen|create-bugzilla
blocks_app.registered_commands.extend(blocks_create_app.registered_commands)


@app.command()
def discover(
    ranges: Annotated[list[str], typer.Argument(help="CIDRs, a.b.c.d-e.f.g.h, a.b.c.d-h, IPs")],
    port: Annotated[list[str], typer.Option("--port", "-p", help="Port or a-b range")] = [  # noqa: B006
        "443"
    ],
    credentials: Annotated[str, typer.Option(help="RedfishCredentials block name")] = "redfish",
    inventory_block: Annotated[str | None, typer.Option(help="InventoryStore block")] = None,
    concurrency: Annotated[int, typer.Option(help="Sockets in flight")] = 4096,
    connect_timeout: Annotated[float, typer.Option(help="Seconds per connect")] = 2.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds per HTTP answer")] = 10.0,
    refresh: Annotated[bool, typer.Option(help="Re-read servers already known")] = False,
    allow_large: Annotated[bool, typer.Option(help="Allow more than 65,536 addresses")] = False,
    resume_minutes: Annotated[float, typer.Option(help="Re-use chunk results (0: never)")] = 10.0,
    deployment: Annotated[
        bool, typer.Option("--deployment", help="Trigger the 'discovery' deployment instead")
    ] = False,
) -> None:
    """Scan ranges for Redfish BMCs and record them in the inventory."""
    try:  # validate here too, so a typo never reaches a worker
        parse_targets(ranges, port, allow_large=allow_large)
    except RackflowError as exc:
        _fail(str(exc))
    params = {
        "ranges": ranges,
        "ports": port,
        "credentials_block": credentials,
        "inventory_block": inventory_block,
        "concurrency": concurrency,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "refresh": refresh,
        "allow_large": allow_large,
        "resume_minutes": resume_minutes,
    }
    if deployment:
        _trigger("discovery/discovery", params)
        return
    from flows.discovery import discovery

    summary = asyncio.run(discovery(**params))  # type: ignore[arg-type]
    typer.echo(json.dumps(summary.model_dump(exclude={"servers"}), indent=2))
    for s in summary.servers:
        typer.echo(f"{s.address}:{s.port}  {s.service_tag or '-':8} {s.status:12} {s.model or '-'}")


def _trigger(name: str, params: dict[str, object]) -> None:
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=params, timeout=0)
    typer.echo(f"triggered {name}: flow run {run.name} ({run.id})")


@lab_app.command("up")
def lab_up(
    bmcs: Annotated[int, typer.Option(help="Number of simulated iDRACs")] = 8,
    subnet: Annotated[str, typer.Option(help="Loopback subnet for the BMCs")] = "127.10.0.0/24",
    port: Annotated[int, typer.Option(help="HTTPS port of every BMC")] = 8443,
    fleet: Annotated[Path | None, typer.Option(help="Fleet description (YAML)")] = None,
    insecure: Annotated[
        bool, typer.Option(help="Self-signed certificates per BMC, like factory iDRACs")
    ] = False,
    single_host: Annotated[
        bool, typer.Option(help="Every BMC on 127.0.0.1, one port each (macOS)")
    ] = False,
    speed: Annotated[float, typer.Option(help="Lab time per real second")] = 1.0,
    state_dir: Annotated[Path, typer.Option(help="Where the lab keeps its CA")] = Path(
        "~/.rackflow/lab"
    ),
    vcenter: Annotated[
        bool, typer.Option(help="Also run a vCenter simulator with matching ESXi hosts")
    ] = True,
    cluster_size: Annotated[int, typer.Option(help="ESXi hosts per vSphere cluster")] = 4,
    reboot_lab: Annotated[
        bool,
        typer.Option(
            help="Also run the reboot lab: machines with sshd, IPMI, a PDU outlet, an iLO "
            "and a Xen VM each, and a Bugzilla"
        ),
    ] = True,
    machines: Annotated[int, typer.Option(help="Machines of the reboot lab")] = 3,
) -> None:
    """Start the simulated datacenter in the foreground (Ctrl-C stops it).

    The iDRAC fleet, its firmware repository, a vCenter simulator and the
    reboot lab; the commands that create the matching blocks are printed.
    """
    from lab.fleet import FleetSpec, load_fleet
    from lab.machines.fleet import RebootLabError, RebootLabSpec
    from lab.runner import run_foreground

    try:
        if fleet:
            spec = load_fleet(fleet)
        else:
            spec = FleetSpec.generate(count=bmcs, subnet=subnet, port=port, single_host=single_host)
        updates: dict[str, object] = {"speed": speed}
        if insecure:
            updates["tls"] = "self-signed"
        spec = spec.model_copy(update=updates)
        reboot = RebootLabSpec(machines=machines, speed=speed) if reboot_lab else None
    except (ValueError, RackflowError) as exc:
        _fail(str(exc))
    from lab.vcsim import VcsimBuildError, VcsimError

    try:
        run_foreground(
            fleet=spec,
            state_dir=state_dir.expanduser(),
            vcenter=vcenter,
            cluster_size=cluster_size,
            reboot=reboot,
        )
    except (VcsimBuildError, VcsimError) as exc:
        _fail(f"lab vCenter: {exc} (--no-vcenter runs without it)")
    except RebootLabError as exc:
        _fail(f"{exc} (--no-reboot-lab runs without it)")


@blocks_app.command("register")
def blocks_register() -> None:
    """Register rackflow's block types with the Prefect server."""
    import blocks

    for name in blocks.__all__:
        block = getattr(blocks, name)
        block.register_type_and_schema()
        typer.echo(f"registered {block.get_block_type_slug()}")


@blocks_app.command("create-redfish")
def blocks_create_redfish(
    name: Annotated[str, typer.Argument(help="Block name, e.g. 'redfish'")],
    username: Annotated[str, typer.Option(help="BMC user")],
    ca_bundle: Annotated[str | None, typer.Option(help="CA bundle path")] = None,
    insecure: Annotated[bool, typer.Option(help="Turn TLS verification off")] = False,
    password_env: Annotated[
        str, typer.Option(help="Environment variable holding the password")
    ] = "RACKFLOW_BMC_PASSWORD",  # noqa: S107 - the NAME of a variable, not a password
    overwrite: Annotated[bool, typer.Option(help="Replace an existing block")] = False,
) -> None:
    """Create a RedfishCredentials block. The password comes from the environment
    or a prompt, never from the command line (it would show in ``ps``)."""
    from blocks import RedfishCredentials

    password = read_secret(password_env, "BMC password")
    block = RedfishCredentials(
        username=username, password=password, verify_tls=not insecure, ca_bundle=ca_bundle
    )
    block.save(name, overwrite=overwrite)
    typer.echo(f"saved redfish-credentials/{name}")


@blocks_app.command("create-vcenter")
def blocks_create_vcenter(
    name: Annotated[str, typer.Argument(help="Block name, e.g. 'vcenter'")],
    host: Annotated[str, typer.Option(help="vCenter host name or address")],
    username: Annotated[str, typer.Option(help="vCenter user")],
    port: Annotated[int, typer.Option(help="HTTPS port")] = 443,
    ca_bundle: Annotated[str | None, typer.Option(help="CA bundle path")] = None,
    insecure: Annotated[bool, typer.Option(help="Turn TLS verification off")] = False,
    password_env: Annotated[
        str, typer.Option(help="Environment variable holding the password")
    ] = "RACKFLOW_VCENTER_PASSWORD",  # noqa: S107 - the NAME of a variable, not a password
    overwrite: Annotated[bool, typer.Option(help="Replace an existing block")] = False,
) -> None:
    """Create a VCenterCredentials block (password from the environment or a prompt)."""
    from blocks import VCenterCredentials

    password = read_secret(password_env, "vCenter password")
    VCenterCredentials(
        host=host,
        port=port,
        username=username,
        password=password,
        verify_tls=not insecure,
        ca_bundle=ca_bundle,
    ).save(name, overwrite=overwrite)
    typer.echo(f"saved vcenter-credentials/{name}")


@blocks_app.command("create-inventory")
def blocks_create_inventory(
    name: Annotated[str, typer.Argument(help="Block name")],
    url_env: Annotated[
        str, typer.Option(help="Environment variable holding the database URL")
    ] = "RACKFLOW_INVENTORY_URL",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing block")] = False,
) -> None:
    """Create an InventoryStore block (URL from the environment: it may hold a password)."""
    from blocks import InventoryStore

    InventoryStore(url=os.environ.get(url_env) or None).save(name, overwrite=overwrite)
    typer.echo(f"saved inventory-store/{name}")


if __name__ == "__main__":  # pragma: no cover
    app()
