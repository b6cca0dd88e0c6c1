"""Start the reboot lab (machines + their peers) in a background thread.

.. code-block:: python

    with MachineLab(machines=MachineLab.generate(2), state_dir=tmp) as lab:
        lab.snapshot("m1.lab.test")["answering"]      # True
        lab.act("m1.lab.test", "reset", source="test")
        lab.wait_answering("m1.lab.test", False, timeout_s=5)
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

from lab.loop_thread import LoopThread
from lab.machines.core import MachineCore, Peer
from lab.machines.state import Machine, MachineFaults, MachineSpec

__all__ = ["MachineLab"]


class MachineLab:
    """Lab machines and their reboot peers, served from a background thread.

    Args:
        machines: The machines.
        state_dir: Where peers keep their files (configs, keys, logs).
        speed: Lab seconds per real second.
        peers: Peer starters (see :data:`lab.machines.core.Peer`).
    """

    def __init__(
        self,
        *,
        machines: list[MachineSpec],
        state_dir: Path,
        speed: float = 1.0,
        peers: list[Peer] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.core = MachineCore(
            machines=machines, state_dir=self.state_dir, speed=speed, peers=peers
        )
        self._runner = LoopThread(
            name="rackflow-machines", start=self.core.start, stop=self.core.stop
        )

    @staticmethod
    def generate(
        count: int,
        *,
        subnet: str = "127.78.0.0/24",
        domain: str = "lab.test",
        shutdown_s: float = 1.0,
        boot_s: float = 2.0,
    ) -> list[MachineSpec]:
        """Specs of ``count`` machines ``m1.<domain>``... on consecutive loopback addresses."""
        hosts = ipaddress.IPv4Network(subnet).hosts()
        return [
            MachineSpec(
                name=f"m{i}.{domain}",
                address=str(next(hosts)),
                shutdown_s=shutdown_s,
                boot_s=boot_s,
            )
            for i in range(1, count + 1)
        ]

    @property
    def control_url(self) -> str:
        """Base URL of the control API (empty until started)."""
        return self.core.control_url

    def start(self) -> None:
        """Start the machines and every peer (stopped again on failure)."""
        self._runner.run()

    def stop(self) -> None:
        """Stop everything (idempotent)."""
        self._runner.shutdown()

    def __enter__(self) -> MachineLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def machine(self, name: str) -> Machine:
        """The live state object of one machine (read it; act through :meth:`act`)."""
        return self.core.machine(name)

    def ping_port(self, name: str) -> int:
        """The TCP port the machine answers on while up."""
        return self.core.ping_port(name)

    def snapshot(self, name: str) -> dict[str, Any]:
        """One machine's state as plain data (phase, answering, cycles, events)."""

        async def read() -> dict[str, Any]:
            return self.core.machine(name).snapshot()

        return self._runner.call(read)

    def act(self, name: str, action: str, *, source: str = "test") -> dict[str, Any]:
        """Carry out a power action on the lab loop (what a peer would do)."""
        return self._runner.call(lambda: self.core.machine(name).act(action, source=source))

    def set_faults(self, name: str, faults: MachineFaults) -> None:
        """Replace a machine's faults."""
        self._runner.call(lambda: self.core.machine(name).set_faults(faults))

    def wait_answering(self, name: str, answering: bool, *, timeout_s: float = 30.0) -> None:
        """Block until the machine answers (or stops answering).

        Raises:
            TimeoutError: It did not within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.snapshot(name)["answering"] is answering:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{name} answering != {answering} after {timeout_s} s")

    def call(self, make: Any) -> Any:
        """Run a coroutine on the lab loop (peers' state is loop-owned)."""
        return self._runner.call(make)
