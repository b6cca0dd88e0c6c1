"""Host power and Lifecycle Controller readiness.

Part of :class:`~clients.redfish.update.DellUpdates`.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from clients.errors import PreconditionError, ProtocolError
from clients.redfish.jobs import LcStatus
from clients.redfish.models import System
from clients.redfish.update_base import LC_STATUS, RESET, SYSTEM, DellBase, json_body

__all__ = ["HostOps", "ResetType"]

logger = logging.getLogger("rackflow.clients.redfish.update")


class ResetType(StrEnum):
    """``ComputerSystem.Reset`` ResetType values an iDRAC accepts."""

    ON = "On"
    FORCE_OFF = "ForceOff"
    GRACEFUL_SHUTDOWN = "GracefulShutdown"
    GRACEFUL_RESTART = "GracefulRestart"
    FORCE_RESTART = "ForceRestart"
    POWER_CYCLE = "PowerCycle"
    PUSH_POWER_BUTTON = "PushPowerButton"
    NMI = "Nmi"


class HostOps(DellBase):
    """Reset the host, read its power, and wait for the Lifecycle Controller."""

    # -- host power -------------------------------------------------------------------

    async def reset(self, kind: ResetType | str) -> None:
        """``ComputerSystem.Reset`` of the host.

        Args:
            kind: GracefulRestart, ForceRestart, PowerCycle, On, ForceOff, ...

        Raises:
            PreconditionError: Unknown reset type.
            RackflowError: The iDRAC refused (e.g. 409 when already in that state).
        """
        try:
            reset_type = ResetType(kind)
        except ValueError:
            allowed = ", ".join(t.value for t in ResetType)
            raise PreconditionError(
                subject="reset", reason=f"unknown ResetType {kind!r}; one of {allowed}"
            ) from None
        await self._bmc.post(RESET, {"ResetType": reset_type.value})
        logger.info("host reset %s requested on %s", reset_type.value, self._bmc.base_url)

    async def system(self) -> System:
        """The host's ComputerSystem, read straight from ``System.Embedded.1`` (one GET).

        ``RedfishClient.system`` finds the member through the collection when
        it has not read the service root; on an iDRAC the path is known.

        Returns:
            Model, power state, health, BIOS version, ...

        Raises:
            ProtocolError: A malformed system.
        """
        data = await self._bmc.get_json(SYSTEM)
        return System.from_redfish(data, target=self._target(SYSTEM))

    async def power_state(self) -> str:
        """The host's ``PowerState`` (On, Off, PoweringOn, PoweringOff).

        Returns:
            The power state.

        Raises:
            ProtocolError: The system has no PowerState.
        """
        data = await self._bmc.get_json(SYSTEM)
        state = data.get("PowerState")
        if not isinstance(state, str) or not state:
            raise ProtocolError(target=self._target(SYSTEM), detail="no PowerState")
        return state

    async def wait_power_state(
        self, state: str, *, timeout_s: float, interval_s: float = 5.0
    ) -> str:
        """Wait until the host reports ``state`` (survives BMC outages like the job wait).

        Args:
            state: ``On`` or ``Off``.
            timeout_s: Deadline.
            interval_s: Pause between reads.

        Returns:
            The state.

        Raises:
            DeadlineExceeded: Not reached in time (e.g. a host that never comes back).
        """
        return await self._wait_through_resets(
            self.power_state,
            done=lambda s: s == state,
            operation=lambda: f"host power {state} on {self._bmc.base_url}",
            timeout_s=timeout_s,
            interval_s=interval_s,
        )

    # -- Lifecycle Controller ---------------------------------------------------------

    async def lc_status(self) -> LcStatus:
        """``DellLCService.GetRemoteServicesAPIStatus``.

        Returns:
            Status, LCStatus, ServerStatus, RTStatus; ``.ready`` tells if jobs may be queued.

        Raises:
            ProtocolError: The answer is not a JSON object.
        """
        response = await self._bmc.post(LC_STATUS, {}, idempotent=True)
        return LcStatus.from_redfish(json_body(response, self._target(LC_STATUS)))

    async def wait_lc_ready(self, *, timeout_s: float, interval_s: float = 5.0) -> LcStatus:
        """Wait for the Lifecycle Controller to be Ready (before queueing, after resets).

        Args:
            timeout_s: Deadline.
            interval_s: Pause between reads.

        Returns:
            The ready status.

        Raises:
            DeadlineExceeded: Not ready in time.
        """
        seen: list[LcStatus] = []

        async def remember(status: LcStatus) -> None:
            seen[:] = [status]

        return await self._wait_through_resets(
            self.lc_status,
            done=lambda s: s.ready,
            seen=remember,
            operation=lambda: (
                f"Lifecycle Controller ready on {self._bmc.base_url}"
                + (f" (last: {seen[-1].status}/{seen[-1].lc_status})" if seen else "")
            ),
            timeout_s=timeout_s,
            interval_s=interval_s,
        )

    async def wait_host_up(self, *, timeout_s: float, interval_s: float = 5.0) -> LcStatus:
        """Wait for the host to be back: powered on and the Lifecycle Controller ready.

        Right after a reset the host may not have gone down yet (a power read
        still says On), and the LC of a host that stayed off reports Ready with
        ``ServerStatus`` PoweredOff: neither is "back". So the two waits run
        again, within the deadline, until the LC is ready with the host not
        powered off.

        Args:
            timeout_s: Deadline for all of it.
            interval_s: Pause between reads.

        Returns:
            The ready status.

        Raises:
            DeadlineExceeded: Not back in time (e.g. a host that never returns).
        """
        deadline = self._clock() + timeout_s
        while True:
            await self.wait_power_state(
                "On", timeout_s=max(0.0, deadline - self._clock()), interval_s=interval_s
            )
            status = await self.wait_lc_ready(
                timeout_s=max(0.0, deadline - self._clock()), interval_s=interval_s
            )
            if status.server_status != "PoweredOff":
                return status
            await self._sleep(min(interval_s, max(0.0, deadline - self._clock())))
