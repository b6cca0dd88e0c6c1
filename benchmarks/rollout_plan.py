"""Sizes and settings of the rolling-update benchmark, shared by the parent and its children.

Kept free of Prefect and of the project's packages, so the parent process stays
small (a child's ``ru_maxrss`` starts at its parent's size).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Lab seconds of the emulated hardware per server: download + apply (in POST) + reboot.
#: ``step_s`` 0 makes the small transitions instant, so these three are the whole hardware
#: time of an OnReset BIOS update (the reboot is a quarter off, then POST, then boot).
DURATIONS: dict[str, float] = {"download_s": 3.0, "apply_s": 3.0, "reboot_s": 4.0, "step_s": 0.0}
POLL_INTERVAL_S = 0.5
SUBNET = "127.10.231.0/24"
SPEED = 1.0
TARGET_RATIO = 1.15
FIXED_REQUESTS = 40
CREDENTIALS_BLOCK = "bench-redfish"
INVENTORY_BLOCK = "bench-inventory"


@dataclass(frozen=True)
class Plan:
    """What one benchmark run builds and measures.

    Args:
        servers: Lab iDRACs, all updated.
        max_parallel: The flow's ``max_parallel``.
        poll_interval_s: ``StepDeadlines.poll_interval_s`` given to the flow.
        subnet: Loopback subnet of the lab BMCs.
        speed: Lab seconds per real second.
        durations: Lab ``Durations`` overrides.
    """

    servers: int
    max_parallel: int
    poll_interval_s: float = POLL_INTERVAL_S
    subnet: str = SUBNET
    speed: float = SPEED
    durations: dict[str, float] = field(default_factory=lambda: dict(DURATIONS))

    @property
    def hardware_s(self) -> float:
        """Real seconds of emulated hardware work per server."""
        d = self.durations
        return (d["download_s"] + d["apply_s"] + d["reboot_s"]) / self.speed

    @property
    def waves(self) -> int:
        """Rounds of ``max_parallel`` servers the fleet needs at best."""
        return math.ceil(self.servers / self.max_parallel)

    @property
    def ideal_s(self) -> float:
        """Wall time of the hardware alone: every wave back to back, no overhead."""
        return self.waves * self.hardware_s

    @property
    def address_range(self) -> str:
        """The lab's BMC addresses as a discovery range (``a.b.c.1-N``)."""
        base = self.subnet.split("/")[0].rsplit(".", 1)[0]
        return f"{base}.1-{self.servers}"

    def save(self, path: Path) -> None:
        """Write the plan as JSON.

        Args:
            path: Target file.
        """
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Plan:
        """Read a plan written by :meth:`save`.

        Args:
            path: The JSON file.

        Returns:
            The plan.
        """
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(**data)


def make_plan(*, quick: bool) -> Plan:
    """The full run (100 servers, 20 at once) or the quick check (20 servers, 10 at once).

    Args:
        quick: The quick check.

    Returns:
        The plan.
    """
    return Plan(servers=20, max_parallel=10) if quick else Plan(servers=100, max_parallel=20)


def request_bound(plan: Plan) -> int:
    """Most Redfish requests one server's update should take, whatever the fleet size.

    A fixed part (every task opens and closes its own session, plus the reads and
    actions of one update: 40 is generous) and at most two requests (power state +
    LC status) per poll interval of the hardware time. More means something
    polls too often, re-logs in, or retries in a loop.

    Args:
        plan: The poll interval and the hardware time.

    Returns:
        The bound.
    """
    return FIXED_REQUESTS + 2 * math.ceil(plan.hardware_s / plan.poll_interval_s)
