"""One simulated machine's power and boot state, shared by every reboot path of the lab.

Every peer that can reboot a machine (the sshd host's ``reboot``, an
ipmi_sim BMC's chassis control, a PDU outlet over SNMP, the iLO Redfish
personality, the fake XenAPI) acts on the same :class:`Machine`, and the
machine's "answers ping" (a TCP listener on its own loopback address) follows
it: a flow can only tell a reboot happened by watching the machine stop
answering and answer again, as on real hardware.

Phases::

    up --reboot/soft--> stopping --shutdown_s--> down --boot_s--> up
    up/stopping/booting --off/reset/cycle--> down (at once)
    off --on--> booting --boot_s--> up

Durations are lab seconds (:class:`lab.clock.LabClock`); nothing completes
instantly. Every method must run on the lab's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lab.clock import LabClock

log = logging.getLogger(__name__)

__all__ = ["Action", "Machine", "MachineFaults", "MachineSpec", "Phase", "Refused"]


class Phase(StrEnum):
    """Where a machine is in its power/boot cycle."""

    UP = "up"  # OS running: answers ping and SSH
    STOPPING = "stopping"  # OS shutting down: still answers
    DOWN = "down"  # not answering; power may be on (POST) or off
    BOOTING = "booting"  # powered, not answering yet


class Action(StrEnum):
    """What a reboot path can ask of a machine."""

    REBOOT = "reboot"  # OS reboot (ssh `reboot`, XenAPI clean reboot)
    SOFT = "soft"  # ACPI soft off: OS shuts down, power goes off
    OFF = "off"  # hard power off
    ON = "on"  # power on
    RESET = "reset"  # hard reset (power stays on)
    CYCLE = "cycle"  # off, short pause, on


class Refused(Exception):
    """The machine cannot do this now (e.g. an OS reboot of a machine that is down)."""


@dataclass
class MachineFaults:
    """Faults of one machine.

    Attributes:
        ignore_sources: Paths whose commands are accepted but do nothing
            (e.g. ``{"pdu"}``: the outlet is not wired to this machine).
        never_boots: Once down, the machine never answers again.
    """

    ignore_sources: set[str] = field(default_factory=set)
    never_boots: bool = False


@dataclass(frozen=True)
class MachineSpec:
    """A lab machine's identity and timings.

    Attributes:
        name: Its FQDN in the inventory (e.g. ``web01.lab.test``).
        address: Its own loopback address (``127.78.0.N``).
        ping_port: TCP port that answers while the machine is up (0: any free one).
        shutdown_s: Lab seconds an OS shutdown takes before it stops answering.
        boot_s: Lab seconds from power on / reset to answering again.
        cycle_pause_s: Lab seconds between off and on in a power cycle.
    """

    name: str
    address: str
    ping_port: int = 0
    shutdown_s: float = 2.0
    boot_s: float = 5.0
    cycle_pause_s: float = 1.0


ChangeHook = Callable[["Machine"], Awaitable[None]]


class Machine:
    """The power and boot state of one lab machine (see the module docstring).

    Args:
        spec: Identity and timings.
        clock: The lab clock.
    """

    def __init__(self, *, spec: MachineSpec, clock: LabClock) -> None:
        self.spec = spec
        self.clock = clock
        self.powered = True
        self.phase = Phase.UP
        self.faults = MachineFaults()
        self.cycles = 0  # completed down -> up transitions
        self.events: list[dict[str, Any]] = []
        self._pending: asyncio.Task[None] | None = None
        self._hooks: list[ChangeHook] = []

    @property
    def name(self) -> str:
        """The machine's name (FQDN)."""
        return self.spec.name

    @property
    def answering(self) -> bool:
        """True while the OS is up (answers ping and SSH)."""
        return self.phase in (Phase.UP, Phase.STOPPING)

    def on_change(self, hook: ChangeHook) -> None:
        """Call ``hook(machine)`` whenever :attr:`answering` flips (listeners, sshd)."""
        self._hooks.append(hook)

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the control API and tests."""
        return {
            "name": self.name,
            "address": self.spec.address,
            "powered": self.powered,
            "phase": self.phase.value,
            "answering": self.answering,
            "cycles": self.cycles,
            "events": list(self.events),
        }

    def _record(self, event: str, source: str, **extra: Any) -> None:
        self.events.append({"t": time.time(), "event": event, "source": source, **extra})
        log.info("machine %s: %s (%s)", self.name, event, source)

    async def act(self, action: Action | str, *, source: str) -> dict[str, Any]:
        """Carry out a power action asked by one reboot path.

        Args:
            action: What to do.
            source: Which path asked (``ssh``, ``ipmi``, ``pdu``, ``ilo``, ``xen``).

        Returns:
            :meth:`snapshot` after the action was accepted.

        Raises:
            Refused: The action makes no sense now (OS reboot of a machine that is down).
            ValueError: Unknown action.
        """
        action = Action(action)
        if source in self.faults.ignore_sources:
            self._record(f"{action.value} ignored", source)
            return self.snapshot()
        self._record(action.value, source)
        if action in (Action.REBOOT, Action.SOFT):
            if self.phase is not Phase.UP:
                raise Refused(f"{self.name} is {self.phase.value}: no OS to {action.value}")
            self._replace(self._shutdown(power_off=action is Action.SOFT))
        elif action is Action.OFF:
            await self._go_down(power_off=True)
        elif action is Action.ON:
            if not self.powered:
                self.powered = True
                self._replace(self._boot())
        elif action is Action.RESET:
            await self._go_down(power_off=False)
            self._replace(self._boot())
        elif action is Action.CYCLE:
            await self._go_down(power_off=True)
            self._replace(self._power_on_after(self.spec.cycle_pause_s))
        return self.snapshot()

    async def set_faults(self, faults: MachineFaults) -> None:
        """Replace the machine's faults."""
        self.faults = faults

    async def close(self) -> None:
        """Cancel pending transitions (lab shutdown)."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()

    def _replace(self, coro: Awaitable[None]) -> None:
        # A newer command wins over a transition still in flight (a reset
        # during a shutdown cuts it short, as on real hardware).
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = asyncio.ensure_future(coro)

    async def _set_phase(self, phase: Phase) -> None:
        was = self.answering
        self.phase = phase
        if was != self.answering:
            self._record("up" if self.answering else "down", "machine")
            if self.answering:
                self.cycles += 1
            for hook in list(self._hooks):
                try:
                    await hook(self)
                except Exception:  # a peer's hook must not break the machine
                    log.exception("machine %s: change hook failed", self.name)

    async def _go_down(self, *, power_off: bool) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        if power_off:
            self.powered = False
        await self._set_phase(Phase.DOWN)

    async def _shutdown(self, *, power_off: bool) -> None:
        await self._set_phase(Phase.STOPPING)
        await self.clock.sleep(self.spec.shutdown_s)
        await self._go_down_from_pending(power_off=power_off)
        if not power_off:
            await self._boot()

    async def _go_down_from_pending(self, *, power_off: bool) -> None:
        # Called from the pending task itself: must not cancel itself.
        if power_off:
            self.powered = False
        await self._set_phase(Phase.DOWN)

    async def _power_on_after(self, pause_s: float) -> None:
        await self.clock.sleep(pause_s)
        self.powered = True
        self._record("on", "cycle")
        await self._boot()

    async def _boot(self) -> None:
        await self._set_phase(Phase.BOOTING)
        if self.faults.never_boots:
            self._record("hangs in POST", "fault")
            return
        await self.clock.sleep(self.spec.boot_s)
        await self._set_phase(Phase.UP)
