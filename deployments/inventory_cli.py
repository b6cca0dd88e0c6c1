"""``rackflow inventory``: look at the machine inventory from a terminal.

Commands: ``list`` (one line per server), ``show KEY`` (one server and its
firmware), ``export`` (YAML or JSON for other tools; ``--access`` for the
machine-access file), ``import FILE`` (machines and their reboot paths),
``hosts`` (the ESXi hosts vCenter syncs stored). Each reads the store
given by ``--url`` or by an ``InventoryStore`` block (``--block``), else the
default SQLite file (``~/.rackflow/inventory.db``, ``RACKFLOW_HOME``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from clients.errors import RackflowError
from clients.inventory import (
    EsxiHostRecord,
    Inventory,
    ServerRecord,
    ServerStatus,
    access_file,
    default_inventory_url,
)
from deployments.console import fail as _fail

__all__ = ["app"]

app = typer.Typer(help="Look at the machine inventory.", no_args_is_help=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (sqlite:///file.db, postgresql+psycopg://...)"),
]
BlockOption = Annotated[
    str | None, typer.Option("--block", help="InventoryStore block name (instead of --url)")
]


class ExportFormat(StrEnum):
    """Formats of ``rackflow inventory export``."""

    YAML = "yaml"
    JSON = "json"


@contextmanager
def _open(url: str | None, block: str | None) -> Iterator[Inventory]:
    if url and block:
        _fail("give --url or --block, not both")
    client: AbstractContextManager[Inventory]
    try:
        if block:
            # Imported here: Prefect takes seconds to import and --url does not need it.
            from tasks.inventory import load_inventory_store

            try:
                client = load_inventory_store(block).get_client()
            except ValueError as exc:  # Prefect: no block document of that name
                _fail(f"cannot load InventoryStore block {block!r}: {exc}")
        else:
            client = Inventory(url=url or default_inventory_url())
        with client as inventory:
            yield inventory
    except RackflowError as exc:
        _fail(str(exc))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Align rows under headers in columns two spaces apart (``-`` for None).

    Args:
        headers: Column titles.
        rows: One sequence of values per line.

    Returns:
        The table, without a trailing newline.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [list(headers), *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


_LIST_HEADERS = ("IDENTITY", "BMC", "STATUS", "MODEL", "BIOS", "BMC FW", "POWER", "HEALTH",
                 "LAST SEEN")  # fmt: skip


def _list_row(record: ServerRecord) -> list[Any]:
    return [
        record.identity,
        record.bmc_endpoint,
        record.status.value,
        record.model,
        record.bios_version,
        record.bmc_firmware_version,
        record.power_state,
        record.health,
        record.last_seen,
    ]


@app.command("list")
def list_servers(
    status: Annotated[ServerStatus | None, typer.Option(help="Only this status")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model (exact)")] = None,
    url: UrlOption = None,
    block: BlockOption = None,
) -> None:
    """List servers, one per line."""
    with _open(url, block) as inventory:
        records = inventory.list(status=status, model=model)
        where = inventory.url
    if not records:
        typer.echo(f"no servers in the inventory at {where} matching the filters"
                   if status or model else f"no servers in the inventory at {where}")  # fmt: skip
        return
    typer.echo(format_table(_LIST_HEADERS, [_list_row(r) for r in records]))
    by_status: dict[str, int] = {}
    for record in records:
        by_status[record.status.value] = by_status.get(record.status.value, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    typer.echo(f"\n{len(records)} servers ({summary})")


_SHOW_FIELDS = (
    ("identity", "identity"), ("service tag", "service_tag"), ("bmc", "bmc_endpoint"),
    ("status", "status"), ("vendor", "vendor"), ("product", "product"),
    ("redfish version", "redfish_version"), ("model", "model"), ("board serial", "serial"),
    ("uuid", "uuid"), ("bios", "bios_version"), ("bmc firmware", "bmc_firmware_version"),
    ("bmc model", "bmc_model"), ("power", "power_state"), ("health", "health"),
    ("host name", "host_name"), ("cpus", "cpu_count"), ("memory GiB", "memory_gib"),
    ("first seen", "first_seen"), ("last seen", "last_seen"),
    ("discovery run", "discovery_run_id"), ("vcenter host", "vcenter_host"),
    ("maas system", "maas_system_id"), ("fqdn", "fqdn"),
)  # fmt: skip


@app.command("show")
def show_server(
    key: Annotated[str, typer.Argument(help="Service tag, identity, or BMC address[:port]")],
    url: UrlOption = None,
    block: BlockOption = None,
) -> None:
    """Show one server and its firmware."""
    with _open(url, block) as inventory:
        record = inventory.get(key)
    if record is None:
        _fail(f"no server matches {key!r}")
    width = max(len(label) for label, _ in _SHOW_FIELDS)
    for label, name in _SHOW_FIELDS:
        value = getattr(record, name)
        typer.echo(f"{label.ljust(width)}  {_cell(getattr(value, 'value', value))}")
    if record.attributes:
        typer.echo(f"{'attributes'.ljust(width)}  {json.dumps(record.attributes, sort_keys=True)}")
    paths = record.access.paths()
    typer.echo(f"{'reboot paths'.ljust(width)}  {', '.join(paths) if paths else '-'}")
    if not record.firmware:
        typer.echo("\nfirmware: not read yet")
        return
    typer.echo(f"\nfirmware ({len(record.firmware)} components):")
    rows = [[f.kind, f.fqdd, f.version, f.updateable, f.name] for f in record.firmware]
    table = format_table(("KIND", "FQDD", "VERSION", "UPDATEABLE", "NAME"), rows)
    typer.echo("\n".join(f"  {line}" for line in table.splitlines()))


@app.command("export")
def export_servers(
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="yaml or json")] = (
        ExportFormat.YAML
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
    access: Annotated[
        bool,
        typer.Option(
            "--access", help="Write the machines' reboot paths in the format `import` reads"
        ),
    ] = False,
    url: UrlOption = None,
    block: BlockOption = None,
) -> None:
    """Export every server (with firmware) as YAML or JSON, or the machine-access file."""
    if access:
        if fmt is ExportFormat.JSON:
            _fail("--access writes the YAML file `rackflow inventory import` reads: no JSON")
        with _open(url, block) as inventory:
            entries = inventory.access_entries()
        _write(access_file.dump(entries), output, f"{len(entries)} machines")
        return
    with _open(url, block) as inventory:
        data = inventory.export()
    if fmt is ExportFormat.JSON:
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    _write(text, output, f"{len(data)} servers")


def _write(text: str, output: Path | None, what: str) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    typer.echo(f"wrote {what} to {output}", err=True)


@app.command("import")
def import_machines(
    path: Annotated[Path, typer.Argument(help="YAML file with a `machines:` list", exists=True)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; write nothing")
    ] = False,
    url: UrlOption = None,
    block: BlockOption = None,
) -> None:
    """Import machines and their reboot paths (SSH, IPMI, PDU, iLO, Xen, Bugzilla).

    The whole file is validated first; any error (named by line and machine)
    means nothing is written.
    """
    try:
        entries = access_file.load(path.read_text(), source=str(path))
    except RackflowError as exc:
        _fail(str(exc))
    if dry_run:
        typer.echo(f"{path}: {len(entries)} machines, all valid (dry run: nothing written)")
        return
    with _open(url, block) as inventory:
        counts = inventory.register(entries)
    typer.echo(
        f"imported {len(entries)} machines ({counts['created']} new, {counts['updated']} updated)"
    )


_HOST_HEADERS = ("VCENTER", "NAME", "CLUSTER", "SERVICE TAG", "SERVER", "VERSION", "STATE",
                 "MAINTENANCE", "LAST SEEN")  # fmt: skip


def _host_row(host: EsxiHostRecord) -> list[Any]:
    version = host.esxi_version
    if version and host.build:
        version = f"{version} ({host.build})"
    # A gone host's connection state is stale: say it is gone instead.
    state = "gone" if host.gone else host.connection_state
    return [
        host.vcenter,
        host.name,
        host.cluster,
        host.service_tag,
        host.server_identity,
        version,
        state,
        host.in_maintenance,
        host.last_seen,
    ]


@app.command("hosts")
def list_hosts(
    vcenter: Annotated[
        str | None, typer.Option("--vcenter", help="Only this vCenter's hosts (its label)")
    ] = None,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only hosts linked to no inventory server")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    url: UrlOption = None,
    block: BlockOption = None,
) -> None:
    """List the ESXi hosts stored by vCenter syncs and the servers they are linked to."""
    with _open(url, block) as inventory:
        records = inventory.esxi_hosts(vcenter, unmatched_only=unmatched)
        where = inventory.url
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        filtered = vcenter is not None or unmatched
        typer.echo(f"no ESXi hosts in the inventory at {where}"
                   + (" matching the filters" if filtered else ""))  # fmt: skip
        return
    typer.echo(format_table(_HOST_HEADERS, [_host_row(r) for r in records]))
    linked = sum(1 for r in records if r.server_identity is not None)
    gone = sum(1 for r in records if r.gone)
    typer.echo(
        f"\n{len(records)} hosts ({linked} linked, {len(records) - linked} unmatched, {gone} gone)"
    )
