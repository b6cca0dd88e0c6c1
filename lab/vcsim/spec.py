"""What the simulated vCenter contains: clusters of Dell ESXi hosts.

The spec is sent as JSON to the Go program (``main.go``) on its stdin, so the
password never appears on a command line. Field names match the Go structs.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lab.fleet import FleetSpec

__all__ = ["FAULTS", "VcsimCluster", "VcsimHost", "VcsimSpec"]

# Faults the Go side can inject into a maintenance-mode task (task.go methodFault).
FAULTS = (
    "InvalidState",
    "Timedout",
    "TaskInProgress",
    "RequestCanceled",
    "HostConfigFault",
    "InsufficientResourcesFault",
    "SystemError",
    "NoPermission",
)
Fault = Literal[
    "",
    "InvalidState",
    "Timedout",
    "TaskInProgress",
    "RequestCanceled",
    "HostConfigFault",
    "InsufficientResourcesFault",
    "SystemError",
    "NoPermission",
]
ConnectionState = Literal["connected", "disconnected", "notResponding"]


class VcsimHost(BaseModel):
    """One ESXi host as vCenter shows it.

    ``service_tag`` goes into ``hardware.systemInfo.otherIdentifyingInfo``
    (``ServiceTag`` and ``EnclosureSerialNumberTag``) and, unless
    ``serial_number`` is given, into ``hardware.systemInfo.serialNumber``.
    Delays are lab seconds (divided by the spec's ``speed``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    service_tag: str = ""
    serial_number: str | None = None
    vendor: str = "Dell Inc."
    model: str = "PowerEdge R640"
    esxi_version: str = "7.0.3"
    esxi_build: str = "21930508"
    in_maintenance: bool = False
    connection_state: ConnectionState = "connected"
    enter_mm_delay_s: float = Field(default=0.0, ge=0)
    enter_mm_fault: Fault = ""
    exit_mm_delay_s: float = Field(default=0.0, ge=0)
    exit_mm_fault: Fault = ""


class VcsimCluster(BaseModel):
    """A cluster and its hosts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    hosts: list[VcsimHost] = Field(default_factory=list)


class VcsimSpec(BaseModel):
    """A whole simulated vCenter: one datacenter, clusters, standalone hosts.

    No default password: a random one is generated unless given.
    """

    model_config = ConfigDict(extra="forbid")

    username: str = "administrator@vsphere.local"
    password: str = Field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    datacenter: str = "Datacenter"
    speed: float = Field(default=1.0, gt=0)
    clusters: list[VcsimCluster] = Field(default_factory=list)
    hosts: list[VcsimHost] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> VcsimSpec:
        seen: set[str] = set()
        for host in self.all_hosts():
            if host.name in seen:
                raise ValueError(f"host {host.name!r} given twice")
            seen.add(host.name)
        return self

    def all_hosts(self) -> list[VcsimHost]:
        """Every host, clustered ones first.

        Returns:
            The hosts in spec order.
        """
        return [h for c in self.clusters for h in c.hosts] + list(self.hosts)

    @classmethod
    def from_fleet(
        cls,
        fleet: FleetSpec,
        *,
        cluster_size: int = 4,
        cluster_prefix: str = "cluster",
        **kwargs: object,
    ) -> VcsimSpec:
        """One ESXi host per lab BMC, same service tag and model, in clusters.

        Args:
            fleet: The lab fleet (its BMCs' service tags link hosts to servers).
            cluster_size: Hosts per cluster (0: every host standalone).
            cluster_prefix: Clusters are named ``<prefix>-01``, ``<prefix>-02``, ...
            **kwargs: Other :class:`VcsimSpec` fields (password, speed, ...).

        Returns:
            The spec; host names are the BMCs' host names (or ``esx-<tag>``).
        """
        hosts = [
            VcsimHost(
                name=bmc.host_name or f"esx-{bmc.service_tag.lower()}",
                service_tag=bmc.service_tag,
                model=bmc.model,
            )
            for bmc in fleet.bmcs
        ]
        if cluster_size <= 0:
            return cls.model_validate({**kwargs, "hosts": hosts})
        clusters = [
            VcsimCluster(
                name=f"{cluster_prefix}-{i // cluster_size + 1:02d}",
                hosts=hosts[i : i + cluster_size],
            )
            for i in range(0, len(hosts), cluster_size)
        ]
        return cls.model_validate({**kwargs, "clusters": clusters})
