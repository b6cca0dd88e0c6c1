"""HPE iLO (4/5/6) power control over Redfish: reset types, POST state, a safe reboot.

:class:`IloClient` is a :class:`~clients.redfish.RedfishClient` (same sessions,
re-login on 401, logout on exit, error mapping) that knows iLO's single
computer system, ``/redfish/v1/Systems/1``, and its OEM ``PostState``: the
only way iLO tells that a reboot really started, since ``PowerState`` stays
``On`` through a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from clients.errors import (
    BusyError,
    DeadlineExceeded,
    PreconditionError,
    ProtocolError,
    TransportError,
)
from clients.polling import poll
from clients.redfish import RedfishClient

__all__ = ["FINISHED_POST", "IloClient", "IloResetType", "IloStatus"]

logger = logging.getLogger("rackflow.clients.ilo")

SYSTEM_PATH = "/redfish/v1/Systems/1"
RESET_PATH = f"{SYSTEM_PATH}/Actions/ComputerSystem.Reset"
FINISHED_POST = "FinishedPost"
# Seconds to see a forced restart take effect: iLO resets the host within a second or two.
DEFAULT_CONFIRM_S = 60.0


class IloResetType(StrEnum):
    """``ResetType`` values an iLO accepts on ``ComputerSystem.Reset``."""

    ON = "On"
    FORCE_OFF = "ForceOff"
    GRACEFUL_SHUTDOWN = "GracefulShutdown"
    FORCE_RESTART = "ForceRestart"
    GRACEFUL_RESTART = "GracefulRestart"
    PUSH_POWER_BUTTON = "PushPowerButton"
    NMI = "Nmi"


@dataclass(frozen=True)
class IloStatus:
    """Power and POST state of the server, read in one request.

    Attributes:
        power_state: ``On``, ``Off`` (also ``PoweringOn``/``PoweringOff``).
        post_state: ``FinishedPost`` (OS running), ``InPost``, ``PowerOff``, ...;
            None when the iLO does not report it.
    """

    power_state: str
    post_state: str | None


def _post_state(data: dict[str, Any]) -> str | None:
    # iLO 5/6 put OEM data under "Hpe"; iLO 4 (Gen9) under "Hp".
    oem = data.get("Oem")
    if not isinstance(oem, dict):
        return None
    for vendor in ("Hpe", "Hp"):
        section = oem.get(vendor)
        if isinstance(section, dict) and isinstance(section.get("PostState"), str):
            value: str = section["PostState"]
            return value
    return None


class IloClient(RedfishClient):
    """Power control of one HPE iLO; use as ``async with IloClient(...) as ilo:``.

    Takes the arguments of :class:`~clients.redfish.RedfishClient`; no I/O
    until the first call.
    """

    async def status(self) -> IloStatus:
        """Read ``PowerState`` and ``Oem.Hpe.PostState`` of ``Systems/1``.

        Returns:
            The power and POST state.

        Raises:
            ProtocolError: ``PowerState`` missing.
            RackflowError: Any error of :meth:`get_json` (AuthError, TransportError, ...).
        """
        data = await self.get_json(SYSTEM_PATH)
        power = data.get("PowerState")
        if not isinstance(power, str):
            raise ProtocolError(target=self._target(SYSTEM_PATH), detail="no PowerState")
        return IloStatus(power_state=power, post_state=_post_state(data))

    async def power_state(self) -> str:
        """Read the server's ``PowerState`` (``On`` / ``Off``).

        Returns:
            The power state.

        Raises:
            RackflowError: Any error of :meth:`status`.
        """
        return (await self.status()).power_state

    async def post_state(self) -> str | None:
        """Read the server's ``Oem.Hpe.PostState``.

        Returns:
            ``FinishedPost``, ``InPost``, ``PowerOff``, ...; None when not reported.

        Raises:
            RackflowError: Any error of :meth:`status`.
        """
        return (await self.status()).post_state

    async def reset(self, reset_type: IloResetType | str) -> None:
        """Ask for a reset of the server.

        Args:
            reset_type: One of :class:`IloResetType` (or its string value).

        Raises:
            PreconditionError: Not a reset type iLO knows.
            RemoteError: iLO refused (e.g. 400 ``InvalidOperationForSystemState``:
                ``On`` while on, ``ForceRestart`` while off).
            RackflowError: Any other error of :meth:`post`.
        """
        try:
            kind = IloResetType(reset_type)
        except ValueError:
            raise PreconditionError(
                subject="reset_type", reason=f"{reset_type!r} is not an iLO reset type"
            ) from None
        # Not idempotent: a repeated ForceRestart resets the host twice.
        await self.post(RESET_PATH, {"ResetType": kind.value})
        logger.info("iLO %s: %s requested", self.base_url, kind.value)

    async def reboot(
        self,
        *,
        force_after_s: float = 300.0,
        poll_s: float = 5.0,
        confirm_s: float = DEFAULT_CONFIRM_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> str:
        """Restart the server gracefully, forcing it when the OS does not react.

        Check-then-act: a server that is off is powered on; one already in
        POST (booting) is left alone. Otherwise ``GracefulRestart``, then wait
        for ``PostState`` to leave ``FinishedPost`` (the OS shut down and the
        server reset); if it did not within ``force_after_s``, ``ForceRestart``.
        ``poll_s`` must stay well below the server's POST time, or the short
        ``InPost`` window between two ``FinishedPost`` reads is missed.

        Args:
            force_after_s: Seconds to give the OS before forcing the restart.
            poll_s: Seconds between reads of the POST state.
            confirm_s: Seconds to see the forced restart take effect.
            clock: Monotonic clock (tests).
            sleep: Async sleep (tests).

        Returns:
            What worked: ``GracefulRestart``, ``ForceRestart``, ``On`` (was off)
            or ``none (already in POST: <state>)``.

        Raises:
            DeadlineExceeded: Not even the forced restart left ``FinishedPost``.
            ProtocolError: The iLO reports no ``PostState`` (nothing to watch).
            RackflowError: Errors of :meth:`status` and :meth:`reset`.
        """
        status = await self.status()
        if status.power_state == "Off":
            await self.reset(IloResetType.ON)
            return IloResetType.ON.value
        if status.post_state is None:
            raise ProtocolError(target=self._target(SYSTEM_PATH), detail="no Oem PostState")
        if status.post_state != FINISHED_POST:
            return f"none (already in POST: {status.post_state})"
        await self.reset(IloResetType.GRACEFUL_RESTART)
        left = await self._left_post(force_after_s, poll_s=poll_s, clock=clock, sleep=sleep)
        if left is not None:
            return IloResetType.GRACEFUL_RESTART.value
        logger.warning(
            "iLO %s: OS did not restart within %.0f s of GracefulRestart; forcing",
            self.base_url,
            force_after_s,
        )
        await self.reset(IloResetType.FORCE_RESTART)
        left = await self._left_post(confirm_s, poll_s=poll_s, clock=clock, sleep=sleep)
        if left is not None:
            return IloResetType.FORCE_RESTART.value
        raise DeadlineExceeded(
            operation=f"ForceRestart of {self.base_url} (PostState still {FINISHED_POST})",
            waited_s=confirm_s,
        )

    async def _left_post(
        self,
        timeout_s: float,
        *,
        poll_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> IloStatus | None:
        """Wait for PostState to leave FinishedPost; None when it did not in time."""
        try:
            return await poll(
                self.status,
                until=lambda s: s.post_state != FINISHED_POST,
                operation=f"reboot of {self.base_url}",
                timeout_s=timeout_s,
                interval_s=poll_s,
                # The iLO itself stays up; a dropped read or a busy BMC is "not yet".
                tolerate=(TransportError, BusyError),
                clock=clock,
                sleep=sleep,
            )
        except DeadlineExceeded:
            return None
