"""Prefect tasks: read and power-cycle a switched PDU outlet over SNMP.

Tasks take the PDU's address and the ``SnmpCredentials`` block NAME and open
the client inside. Nothing is cached (an outlet's state is only worth what
it is now). Only transient failures (no answer, an outlet still switching)
are retried; a refused community or a bad outlet fails at once. The reboot
is check-then-act: a retry re-reads the outlet first, so an outlet a lost
answer left off is switched on rather than cycled a second time.
"""

from __future__ import annotations

from typing import cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.snmp import SnmpCredentials
from clients.pdu import OutletState
from clients.snmp import PduClient, RebootMode
from tasks.retry import SLOW_ACTION_RETRY, TRANSIENT_RETRY

__all__ = ["pdu_outlet_state", "snmp_reboot"]


async def _open(host: str, port: int, credentials: str, model: str) -> PduClient:
    # cast: Prefect's aload is typed loosely (returns its own type var).
    creds = cast(SnmpCredentials, await SnmpCredentials.aload(credentials))
    return creds.get_client(host, port=port, model=model)


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRY)
async def pdu_outlet_state(
    host: str, *, port: int = 161, credentials: str, model: str, outlet: str
) -> OutletState:
    """Read whether a PDU outlet is powered.

    Args:
        host: PDU address.
        port: UDP port of its SNMP agent.
        credentials: ``SnmpCredentials`` block name.
        model: ``apc`` or ``sentry3``.
        outlet: The outlet as the model writes it (``4``, ``AA4``).

    Returns:
        ``"on"`` or ``"off"``.

    Raises:
        PreconditionError: Unknown model or bad outlet (nothing was sent).
        AuthError: Credentials refused (not retried).
        TransportError: No answer: wrong community or unreachable (retried).
    """
    async with await _open(host, port, credentials, model) as pdu:
        return await pdu.outlet_state(outlet)


@task(cache_policy=NO_CACHE, **SLOW_ACTION_RETRY)
async def snmp_reboot(
    host: str,
    *,
    port: int = 161,
    credentials: str,
    model: str,
    outlet: str,
    mode: RebootMode = "single",
    off_delay_s: float = 5.0,
) -> str:
    """Power-cycle the machine behind a PDU outlet.

    The outlet is read first: an outlet that is off is only switched on (the
    machine was not running, so there is nothing to cycle; a retry after a
    lost answer lands here too).

    Args:
        host: PDU address.
        port: UDP port of its SNMP agent.
        credentials: ``SnmpCredentials`` block name (read-write community or v3 user).
        model: ``apc`` or ``sentry3``.
        outlet: The outlet as the model writes it (``4``, ``AA4``).
        mode: ``single`` (the PDU's own reboot command) or ``off_on`` (off,
            wait ``off_delay_s``, on).
        off_delay_s: Seconds the outlet stays off in ``off_on`` mode.

    Returns:
        What was done: ``reboot``, ``off_on`` or ``on (outlet was off)``.

    Raises:
        PreconditionError: Unknown model, bad outlet or mode (nothing was sent).
        AuthError: The credentials may not switch outlets (read-only community).
        TransportError: No answer: wrong community or unreachable (retried once).
    """
    logger = get_run_logger()
    async with await _open(host, port, credentials, model) as pdu:
        pdu.profile.parse_outlet(outlet)  # fail on a bad outlet before any packet
        if await pdu.outlet_state(outlet) == "off":
            await pdu.set_outlet(outlet, "on")
            logger.info("PDU %s outlet %s was off: switched on", host, outlet)
            return "on (outlet was off)"
        await pdu.reboot(outlet, mode=mode, off_delay_s=off_delay_s)
    logger.info("PDU %s outlet %s: power-cycled (%s)", host, outlet, mode)
    return "reboot" if mode == "single" else "off_on"
