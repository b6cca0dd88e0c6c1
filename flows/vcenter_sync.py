"""vCenter sync: link every ESXi host to its inventory server by service tag."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from clients.errors import PreconditionError
from clients.vsphere import EsxiHost
from tasks.vcenter import (
    VCenterSyncReport,
    list_vcenter_hosts,
    load_vcenter,
    sync_vcenter_hosts,
    vcenter_label,
)


def _markdown(report: VCenterSyncReport) -> str:
    lines = [
        f"# vCenter sync: {report.vcenter}",
        "",
        "| outcome | hosts |",
        "|---|---|",
        f"| newly linked | {len(report.new)} |",
        f"| link updated | {len(report.updated)} |",
        f"| unchanged | {len(report.unchanged)} |",
        f"| unmatched | {len(report.unmatched)} |",
        "",
        f"{report.hosts} ESXi hosts; {report.linked} linked to inventory servers.",
    ]
    if report.new:
        lines += ["", "## Newly linked", "", ", ".join(report.new)]
    if report.updated:
        lines += ["", "## Updated", "", ", ".join(report.updated)]
    if report.unmatched:
        lines += [
            "",
            "## Unmatched",
            "",
            "| host | moid | service tag | reason |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {u.name} | {u.moid} | {u.service_tag or ''} | {u.reason} |"
            for u in report.unmatched
        ]
    if report.missing:
        lines += [
            "",
            "## Linked servers this vCenter no longer reports",
            "",
            ", ".join(report.missing),
        ]
    return "\n".join(lines)


def _rows(hosts: list[EsxiHost]) -> list[dict[str, object]]:
    return [
        {
            "host": h.name,
            "moid": h.moid,
            "cluster": h.cluster or "",
            "service_tag": h.service_tag or "",
            "model": h.model or "",
            "esxi": f"{h.esxi_version or '?'} ({h.build or '?'})",
            "connection": h.connection_state,
            "maintenance": h.in_maintenance,
        }
        for h in hosts
    ]


@flow(name="vcenter-sync", log_prints=False)
def vcenter_sync(
    vcenter_block: str = "vcenter",
    inventory_block: str | None = None,
    cache_seconds: float = 0.0,
) -> VCenterSyncReport:
    """Read every ESXi host of a vCenter and link it to its inventory server.

    Hosts are matched by Dell service tag; matched servers get
    ``vcenter_host`` and ``attributes.vcenter`` (moid, cluster, version,
    build, connection state, maintenance).

    Args:
        vcenter_block: Name of the ``VCenterCredentials`` block.
        inventory_block: Name of the ``InventoryStore`` block (None: default store).
        cache_seconds: Re-use a host list read less than this many seconds ago (0: always read).

    Returns:
        New, updated, unchanged and unmatched hosts.

    Raises:
        PreconditionError: Unknown block or bad parameter, before vCenter is contacted.
    """
    if cache_seconds < 0:
        raise PreconditionError(subject="cache_seconds", reason="must be 0 or more")
    logger = get_run_logger()
    creds = load_vcenter(vcenter_block)
    label = vcenter_label(creds)
    read = list_vcenter_hosts.with_options(
        cache_expiration=timedelta(seconds=cache_seconds) if cache_seconds else None,
        refresh_cache=cache_seconds == 0,
    )
    hosts = read(vcenter_block)
    report = sync_vcenter_hosts(hosts, label, inventory_block)
    if hosts:
        create_table_artifact(
            _rows(hosts), key="vcenter-hosts", description=f"ESXi hosts of {label}"
        )
    create_markdown_artifact(_markdown(report), key="vcenter-sync")
    logger.info(
        "vcenter-sync %s: %d hosts, %d linked (%d new), %d unmatched",
        label,
        report.hosts,
        report.linked,
        len(report.new),
        len(report.unmatched),
    )
    return report
