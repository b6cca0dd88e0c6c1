"""Prefect tasks for chassis power over IPMI (RMCP+): read it, switch it, reboot.

Each task takes the ``IpmiCredentials`` block by NAME and opens its own
session inside a thread (pyghmi blocks); the session is always logged out.
Power actions are check-then-act (``on`` when already on sends nothing) and
never cached; the status read is not cached either (``NO_CACHE``): a power
state from a minute ago is worthless to a reboot flow. Retries cover
transient failures only (no answer, BMC busy): a refused password, an
unknown action or a reset of a machine that is off are not retried.

A chassis power on/off/cycle reaches the BMC's power state within seconds;
the tasks wait for it (fresh session per read, so a BMC that drops sessions
meanwhile is tolerated). Whether the OS came back is for the caller to watch
(``tasks.ping``).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ipmi import IpmiCredentials
from clients.errors import PreconditionError, TransportError
from clients.ipmi import POWER_ACTIONS, PowerChange
from clients.polling import poll
from tasks.retry import TRANSIENT_RETRY

__all__ = ["IPMI_ACTIONS", "REBOOT_MODES", "ipmi_power", "ipmi_reboot"]

IPMI_ACTIONS = ("status", *POWER_ACTIONS)
REBOOT_MODES = ("reset", "cycle")
# Power state the BMC reports once an action took effect (soft: the OS
# decides when; reset: power never changes).
_SETTLED = {"on": "on", "off": "off", "cycle": "on"}
_SETTLE_S = 30.0
_SETTLE_INTERVAL_S = 0.25


def _require(subject: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise PreconditionError(subject=subject, reason=f"{value!r} is not one of {list(allowed)}")


async def _power(address: str, port: int | None, credentials: str, action: str) -> str:
    """Carry out ``action`` (or read the status) and return the power state after it."""
    logger = get_run_logger()
    creds: IpmiCredentials = await IpmiCredentials.aload(credentials)

    def run() -> tuple[str | None, PowerChange | None]:
        with creds.get_client(address, port=port) as bmc:
            if action == "status":
                return bmc.power_status(), None
            change = bmc.power(action)
            try:
                return bmc.power_status(), change
            except TransportError:
                # The command went out: a task retry must not send it again.
                return None, change

    state, change = await asyncio.to_thread(run)
    if change is None:
        logger.info("%s: chassis power is %s", address, state)
        return str(state)
    logger.info("%s: %s; power now %s", address, change.detail, state or "unknown")
    want = _SETTLED.get(action)
    if state is None or (change.sent and want is not None and state != want):
        state = await _wait_power(creds, address, port, want)
        logger.info("%s: power %s after %s", address, state, action)
    return state


async def _wait_power(
    creds: IpmiCredentials, address: str, port: int | None, want: str | None
) -> str:
    """Read the power state (fresh session each time) until it is ``want`` (None: any)."""

    def read() -> str:
        with creds.get_client(address, port=port) as bmc:
            return bmc.power_status()

    async def fetch() -> str:
        return await asyncio.to_thread(read)

    return await poll(
        fetch,
        until=lambda state: want is None or state == want,
        operation=f"{address}: chassis power {want or 'readable'}",
        timeout_s=_SETTLE_S,
        interval_s=_SETTLE_INTERVAL_S,
        tolerate=(TransportError,),
    )


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRY)
async def ipmi_power(
    address: str, *, port: int | None = None, credentials: str, action: str
) -> str:
    """Read or change a machine's chassis power through its BMC.

    ``on`` when already on, ``off``/``soft`` when already off send nothing.
    On/off/cycle wait until the BMC reports the new state; ``soft`` returns
    at once (the OS shuts down in its own time; the state then is usually
    still ``on``).

    Args:
        address: BMC address.
        port: BMC UDP port (default: the block's).
        credentials: Name of the ``IpmiCredentials`` block.
        action: ``status``, ``on``, ``off``, ``cycle``, ``reset`` or ``soft``.

    Returns:
        The chassis power state (``on``/``off``) after the action, or the status.

    Raises:
        PreconditionError: Unknown action (checked before anything is loaded
            or sent), or cycle/reset while the power is off.
        AuthError: User, password or privilege refused (not retried).
        RemoteError: The BMC refused the command, e.g. 0xD4 insufficient privilege.
        TransportError: The BMC did not answer (retried).
        DeadlineExceeded: The power state did not follow within 30 s.
    """
    _require("action", action, IPMI_ACTIONS)
    return await _power(address, port, credentials, action)


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRY)
async def ipmi_reboot(
    address: str,
    *,
    port: int | None = None,
    credentials: str,
    mode: Literal["reset", "cycle"] = "reset",
) -> str:
    """Hard-reboot a machine through its BMC: chassis reset or power cycle.

    The machine must be powered on (a reset or cycle does not power on a
    machine that is off, and it may be off on purpose). The OS goes down at
    once and boots again; watch it come back with ``tasks.ping``.

    Args:
        address: BMC address.
        port: BMC UDP port (default: the block's).
        credentials: Name of the ``IpmiCredentials`` block.
        mode: ``reset`` (power stays on) or ``cycle`` (off, pause, on).

    Returns:
        The chassis power state after the reboot was sent (``on``; a cycle
        is waited for until power is back).

    Raises:
        PreconditionError: Unknown mode, or the machine is powered off.
        AuthError: Credentials or privilege refused (not retried).
        RemoteError: The BMC refused the command.
        TransportError: The BMC did not answer (retried).
        DeadlineExceeded: Power did not come back within 30 s after a cycle.
    """
    _require("mode", mode, REBOOT_MODES)
    return await _power(address, port, credentials, mode)
