"""Prefect tasks for vCenter: maintenance mode, host state, inventory links.

Tasks take the ``VCenterCredentials`` block by NAME and open the client
inside. Actions never cache and are check-then-act (a host already in
maintenance mode is left alone); the host list may cache briefly.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field, computed_field

from blocks.vcenter import VCenterCredentials
from clients.errors import PreconditionError
from clients.inventory import HostSighting
from clients.vsphere import EsxiHost, MaintenanceOptions, VSphereClient
from tasks.inventory import load_inventory_store
from tasks.retry import retry_on_transient

__all__ = [
    "MaintenanceResult",
    "UnmatchedHost",
    "VCenterSyncReport",
    "enter_maintenance_mode",
    "exit_maintenance_mode",
    "find_host",
    "list_vcenter_hosts",
    "load_vcenter",
    "read_host",
    "sync_vcenter_hosts",
    "vcenter_label",
    "wait_host_connected",
]

_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}


class MaintenanceResult(BaseModel):
    """What a maintenance-mode task did to one host."""

    host: str
    moid: str
    cluster: str | None = None
    service_tag: str | None = None
    changed: bool
    in_maintenance: bool
    duration_s: float = 0.0


class UnmatchedHost(BaseModel):
    """An ESXi host the sync could not link to an inventory server."""

    name: str
    moid: str
    service_tag: str | None = None
    reason: str


class VCenterSyncReport(BaseModel):
    """Outcome of linking a vCenter's hosts to inventory servers by service tag."""

    vcenter: str
    hosts: int = 0
    new: list[str] = Field(default_factory=list, description="Hosts linked for the first time")
    updated: list[str] = Field(default_factory=list, description="Links whose details changed")
    unchanged: list[str] = Field(default_factory=list)
    unmatched: list[UnmatchedHost] = Field(default_factory=list)
    missing: list[str] = Field(
        default_factory=list,
        description="Servers linked to this vCenter whose host it no longer reports",
    )
    gone: list[str] = Field(
        default_factory=list,
        description="Hosts this vCenter no longer reports (kept in the inventory, marked gone)",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def linked(self) -> int:
        """Hosts now linked to an inventory server."""
        return len(self.new) + len(self.updated) + len(self.unchanged)


def load_vcenter(vcenter_block: str) -> VCenterCredentials:
    """Load the named ``VCenterCredentials`` block.

    Args:
        vcenter_block: Block document name.

    Returns:
        The block.

    Raises:
        PreconditionError: No such block, or a block of another type.
    """
    try:
        block = VCenterCredentials.load(vcenter_block)
    except ValueError as exc:
        raise PreconditionError(
            subject=vcenter_block, reason=f"no VCenterCredentials block ({exc})"
        ) from None
    if not isinstance(block, VCenterCredentials):
        raise PreconditionError(subject=vcenter_block, reason="not a VCenterCredentials block")
    return block


def vcenter_label(creds: VCenterCredentials) -> str:
    """How reports and inventory links name a vCenter: ``host`` or ``host:port``.

    Args:
        creds: The credentials block.

    Returns:
        The label.
    """
    return creds.host if creds.port == 443 else f"{creds.host}:{creds.port}"


def find_host(client: VSphereClient, key: str) -> EsxiHost:
    """Find a host by moid, name or service tag.

    Args:
        client: A connected client.
        key: ``host-17``, ``esx01.example.com`` or ``8CYCZ23``.

    Returns:
        The host.

    Raises:
        PreconditionError: No host, or several hosts report that service tag.
    """
    hosts = client.hosts()
    for attribute in ("moid", "name"):
        exact = [h for h in hosts if getattr(h, attribute) == key]
        if exact:
            return exact[0]
    tagged = [h for h in hosts if h.service_tag and h.service_tag == key.strip().upper()]
    if len(tagged) > 1:
        names = ", ".join(h.name for h in tagged)
        raise PreconditionError(subject=key, reason=f"service tag reported by {names}")
    if not tagged:
        raise PreconditionError(
            subject=key,
            reason=f"no ESXi host with this moid, name or service tag in {client.target}",
        )
    return tagged[0]


def _check_room(client: VSphereClient, host: EsxiHost, max_unavailable: int) -> None:
    if not host.cluster_moid:
        return  # a standalone host shares no capacity
    others = sorted(
        h.name
        for h in client.hosts()
        if h.cluster_moid == host.cluster_moid and h.moid != host.moid and not h.available
    )
    if len(others) + 1 > max_unavailable:
        raise PreconditionError(
            subject=host.name,
            reason=(
                f"cluster {host.cluster} already has {len(others)} unavailable host(s) "
                f"({', '.join(others)}); max_unavailable_per_cluster={max_unavailable}"
            ),
        )


@task(cache_policy=NO_CACHE, **_RETRIES)
def enter_maintenance_mode(
    host: str,
    vcenter_block: str = "vcenter",
    max_unavailable_per_cluster: int = 1,
    timeout_s: float = 3600.0,
    options: MaintenanceOptions | None = None,
) -> MaintenanceResult:
    """Put an ESXi host in maintenance mode, keeping cluster capacity.

    Refuses when the host's cluster would then have more than
    ``max_unavailable_per_cluster`` hosts out of service (in maintenance or
    not connected, this host included). A host already in maintenance mode
    is left alone (``changed`` False: the caller did not put it there, so it
    should not take it out either).

    Args:
        host: Host moid, name or Dell service tag.
        vcenter_block: ``VCenterCredentials`` block name.
        max_unavailable_per_cluster: Hosts per cluster allowed out at once (>= 1).
        timeout_s: Deadline for vCenter to finish (DRS evacuates VMs meanwhile).
        options: Evacuation: powered-off VMs, vSAN data (None: vCenter's defaults).

    Returns:
        What was done.

    Raises:
        PreconditionError: Capacity rule, unknown host, or vCenter refused.
        DeadlineExceeded: Not in maintenance before the deadline.
    """
    if max_unavailable_per_cluster < 1:
        raise PreconditionError(subject="max_unavailable_per_cluster", reason="must be 1 or more")
    logger = get_run_logger()
    started = time.monotonic()
    with load_vcenter(vcenter_block).get_client() as client:
        target = find_host(client, host)
        changed = False
        if not target.in_maintenance:
            _check_room(client, target, max_unavailable_per_cluster)
            changed = client.enter_maintenance(target.moid, timeout_s=timeout_s, options=options)
        after = client.host(target.moid)
    logger.info(
        "%s (%s) %s maintenance mode%s",
        target.name,
        target.service_tag or target.moid,
        "entered" if changed else "was already in",
        f" ({(options or MaintenanceOptions()).model_dump()})" if changed else "",
    )
    return _result(after, changed=changed, started=started)


@task(cache_policy=NO_CACHE, **_RETRIES)
def read_host(host: str, vcenter_block: str = "vcenter") -> EsxiHost:
    """Read one host's current state (never cached: decisions are taken on it).

    Args:
        host: Host moid, name or Dell service tag.
        vcenter_block: ``VCenterCredentials`` block name.

    Returns:
        The host, e.g. whether it is in maintenance mode right now.

    Raises:
        PreconditionError: Unknown host.
    """
    with load_vcenter(vcenter_block).get_client() as client:
        return find_host(client, host)


@task(cache_policy=NO_CACHE, **_RETRIES)
def exit_maintenance_mode(
    host: str, vcenter_block: str = "vcenter", timeout_s: float = 900.0
) -> MaintenanceResult:
    """Take an ESXi host out of maintenance mode (no-op when it is not in it).

    Args:
        host: Host moid, name or Dell service tag.
        vcenter_block: ``VCenterCredentials`` block name.
        timeout_s: Deadline.

    Returns:
        What was done.

    Raises:
        PreconditionError: Unknown host, or vCenter refused (host not connected).
        DeadlineExceeded: Still in maintenance at the deadline.
    """
    logger = get_run_logger()
    started = time.monotonic()
    with load_vcenter(vcenter_block).get_client() as client:
        target = find_host(client, host)
        changed = client.exit_maintenance(target.moid, timeout_s=timeout_s)
        after = client.host(target.moid)
    logger.info("%s %s maintenance mode", target.name, "left" if changed else "was not in")
    return _result(after, changed=changed, started=started)


def _result(host: EsxiHost, *, changed: bool, started: float) -> MaintenanceResult:
    return MaintenanceResult(
        host=host.name,
        moid=host.moid,
        cluster=host.cluster,
        service_tag=host.service_tag,
        changed=changed,
        in_maintenance=host.in_maintenance,
        duration_s=round(time.monotonic() - started, 2),
    )


@task(cache_policy=NO_CACHE)
def wait_host_connected(
    host: str, vcenter_block: str = "vcenter", timeout_s: float = 1800.0
) -> EsxiHost:
    """Wait until vCenter reports the host connected again (after a reboot).

    Args:
        host: Host moid, name or Dell service tag.
        vcenter_block: ``VCenterCredentials`` block name.
        timeout_s: Deadline.

    Returns:
        The connected host.

    Raises:
        DeadlineExceeded: Not connected at the deadline.
    """
    with load_vcenter(vcenter_block).get_client() as client:
        target = find_host(client, host)
        return client.wait_connected(target.moid, timeout_s=timeout_s)


@task(
    cache_policy=TASK_SOURCE + INPUTS,
    cache_expiration=timedelta(seconds=30),
    **_RETRIES,
)
def list_vcenter_hosts(vcenter_block: str = "vcenter") -> list[EsxiHost]:
    """Read every ESXi host of a vCenter (cached 30 s; pass block names only).

    Args:
        vcenter_block: ``VCenterCredentials`` block name.

    Returns:
        Hosts sorted by name.
    """
    with load_vcenter(vcenter_block).get_client() as client:
        hosts = client.hosts()
    get_run_logger().info("%s manages %d ESXi hosts", client.target, len(hosts))
    return hosts


def _link(vcenter: str, host: EsxiHost) -> dict[str, Any]:
    return {
        "server": vcenter,
        "name": host.name,
        "moid": host.moid,
        "cluster": host.cluster,
        "version": host.esxi_version,
        "build": host.build,
        "connection_state": host.connection_state,
        "maintenance": host.in_maintenance,
    }


@task(cache_policy=NO_CACHE, **_RETRIES)
def sync_vcenter_hosts(
    hosts: list[EsxiHost], vcenter: str, inventory_block: str | None = None
) -> VCenterSyncReport:
    """Link ESXi hosts to inventory servers by service tag.

    Each matched server gets ``vcenter_host=<host name>`` and
    ``attributes["vcenter"]`` (server, moid, cluster, version, build,
    connection state, maintenance). Repeating a sync changes nothing.

    Args:
        hosts: What vCenter reported.
        vcenter: The vCenter's label (``vcenter_label``).
        inventory_block: ``InventoryStore`` block name (None: default store).

    Returns:
        New, updated, unchanged and unmatched hosts, and servers whose host vanished.
    """
    report = VCenterSyncReport(vcenter=vcenter, hosts=len(hosts))
    counts: dict[str, int] = {}
    for h in hosts:
        if h.service_tag:
            counts[h.service_tag] = counts.get(h.service_tag, 0) + 1
    seen: set[str] = set()
    linked_to: dict[str, str] = {}  # moid -> server identity
    with load_inventory_store(inventory_block).get_client() as inventory:
        for h in hosts:
            if not h.service_tag:
                reason = "host reports no service tag"
            elif counts[h.service_tag] > 1:
                reason = f"service tag {h.service_tag} reported by {counts[h.service_tag]} hosts"
            elif (record := inventory.get(h.service_tag)) is None:
                reason = f"no server with service tag {h.service_tag} in the inventory"
            else:
                link = _link(vcenter, h)
                seen.add(record.identity)
                linked_to[h.moid] = record.identity
                before = (record.vcenter_host, record.attributes.get("vcenter"))
                if before == (h.name, link):
                    report.unchanged.append(h.name)
                    continue
                inventory.annotate(
                    record.identity, vcenter_host=h.name, attributes={"vcenter": link}
                )
                (report.new if record.vcenter_host is None else report.updated).append(h.name)
                continue
            report.unmatched.append(
                UnmatchedHost(name=h.name, moid=h.moid, service_tag=h.service_tag, reason=reason)
            )
        report.missing = sorted(
            r.identity
            for r in inventory.list()
            if r.identity not in seen
            and isinstance(r.attributes.get("vcenter"), dict)
            and r.attributes["vcenter"].get("server") == vcenter
        )
        # Every host is stored, linked or not (``rackflow inventory hosts``).
        stored = inventory.record_esxi_hosts(
            vcenter,
            [HostSighting.from_host(h, server_identity=linked_to.get(h.moid)) for h in hosts],
        )
        report.gone = stored.gone_hosts
    get_run_logger().info(
        "vCenter %s: %d hosts, %d new links, %d updated, %d unchanged, %d unmatched",
        vcenter,
        len(hosts),
        len(report.new),
        len(report.updated),
        len(report.unchanged),
        len(report.unmatched),
    )
    return report
