"""A small datacenter for firmware tests: lab iDRACs with a firmware repository,
a real vcsim whose hosts carry the same service tags, blocks, and an inventory
filled by the real discovery and vcenter-sync flows."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocks import InventoryStore, RedfishCredentials, VCenterCredentials
from clients.inventory import Inventory
from flows.discovery import discovery
from flows.rollout import StepDeadlines
from flows.vcenter_sync import vcenter_sync
from lab.fleet import build_fleet
from lab.server import Lab
from lab.settings import Faults
from lab.vcsim import Vcsim, VcsimSpec

_SUBNETS = itertools.count(80)
# Deadlines for the lab (seconds of real time; the lab runs fast).
FAST = StepDeadlines(
    maintenance_enter_s=60,
    maintenance_exit_s=60,
    job_staged_s=60,
    job_done_s=60,
    graceful_reboot_s=5,
    host_back_s=30,
    poll_interval_s=0.2,
)
RESET = "POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset"


class MaintenanceWatcher:
    """Samples vcsim's host states in the background: who was in maintenance, and
    the most hosts of one cluster in maintenance at once."""

    def __init__(self, vc: Vcsim, clusters: dict[str, str]) -> None:
        self._vc, self._clusters = vc, clusters
        self.ever_in: set[str] = set()
        self.max_per_cluster: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now: dict[str, int] = defaultdict(int)
            for h in self._vc.hosts_state():
                if h["in_maintenance"]:
                    self.ever_in.add(h["name"])
                    now[self._clusters.get(h["name"], "-")] += 1
            for cluster, n in now.items():
                self.max_per_cluster[cluster] = max(self.max_per_cluster[cluster], n)
            time.sleep(0.03)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class FirmwareEnv:
    lab: Lab
    vc: Vcsim | None
    inventory_url: str
    names: dict[str, str]  # block kind -> block name
    host_of: dict[str, str] = field(default_factory=dict)  # service tag -> ESXi host name
    cluster_of: dict[str, str] = field(default_factory=dict)  # host name -> cluster

    @property
    def tags(self) -> list[str]:
        return [b.service_tag for b in self.lab.bmcs]

    def bmc(self, tag: str) -> Any:
        return next(b for b in self.lab.bmcs if b.service_tag == tag)

    def target(self, component: str) -> str:
        model = self.lab.bmcs[0].spec.model
        assert self.lab.repository is not None
        return self.lab.repository.target_version(model, component)

    def resets(self, tag: str) -> int:
        return self.lab.request_counts()[self.bmc(tag).key].get(RESET, 0)

    def in_maintenance(self) -> set[str]:
        assert self.vc is not None
        return {h["name"] for h in self.vc.hosts_state() if h["in_maintenance"]}

    def record(self, tag: str) -> Any:
        with Inventory(url=self.inventory_url) as inv:
            return inv.get(tag)

    def watch(self) -> MaintenanceWatcher:
        assert self.vc is not None
        return MaintenanceWatcher(self.vc, self.cluster_of)

    def source(self) -> dict[str, str]:
        assert self.lab.repository is not None
        return {"kind": "repository", "base_url": self.lab.repository.base_url + "/"}


async def build_env(
    stack: ExitStack,
    tmp: Path,
    *,
    count: int = 4,
    faults: dict[int, dict[str, Any]] | None = None,
    cluster_size: int = 2,
    vcenter: bool = True,
    speed: float = 25.0,
    durations: dict[str, float] | None = None,
) -> FirmwareEnv:
    """Start the lab (+ repository, + vcsim), fill the inventory, save the blocks."""
    n = next(_SUBNETS)
    password = "fw-" + secrets.token_hex(8)
    data: dict[str, Any] = {
        "subnet": f"127.10.{n}.0/24",
        "port": 0,
        "password": password,
        "speed": speed,
        "bmcs": [{"model": "R640"} for _ in range(count)],
    }
    if durations:
        data["durations"] = durations
    for i, f in (faults or {}).items():
        data["bmcs"][i]["faults"] = f
    fleet = build_fleet(data, seed=n)
    lab = stack.enter_context(Lab(fleet=fleet, state_dir=tmp / "lab", repository=True))
    suffix = f"fw{n}"
    names = {"redfish": f"{suffix}-redfish", "inventory": f"{suffix}-inv"}
    url = f"sqlite:///{tmp / 'inventory.db'}"
    await RedfishCredentials(
        username=fleet.username,
        password=password,
        ca_bundle=str(lab.ca_path),
        read_timeout=10.0,
    ).asave(names["redfish"], overwrite=True)
    await InventoryStore(url=url).asave(names["inventory"], overwrite=True)
    found = await discovery(
        ranges=[f"127.10.{n}.1-{count}"],
        ports=[lab.bmcs[0].port],
        credentials_block=names["redfish"],
        inventory_block=names["inventory"],
        resume_minutes=0,
    )
    assert found.found == count
    env = FirmwareEnv(lab=lab, vc=None, inventory_url=url, names=names)
    if vcenter:
        spec = VcsimSpec.from_fleet(fleet, cluster_size=cluster_size)
        vc = stack.enter_context(Vcsim(spec=spec, state_dir=tmp / "vcsim"))
        names["vcenter"] = f"{suffix}-vcenter"
        await VCenterCredentials(
            host=vc.host,
            port=vc.port,
            username=vc.username,
            password=vc.password,
            ca_bundle=str(vc.ca_path),
        ).asave(names["vcenter"], overwrite=True)
        await asyncio.to_thread(
            vcenter_sync, vcenter_block=names["vcenter"], inventory_block=names["inventory"]
        )
        env.vc = vc
        for cluster in spec.clusters:
            for host in cluster.hosts:
                env.host_of[host.service_tag] = host.name
                env.cluster_of[host.name] = cluster.name
    return env


def faults(**kw: Any) -> dict[str, Any]:
    """Validated fault settings (fails early on a misspelt fault)."""
    return Faults(**kw).model_dump(exclude_defaults=True)
