"""Prefect task: reboot a server through its HPE iLO (Redfish).

The task takes the iLO's address and the ``IloCredentials`` block NAME and
opens its own session (logged out on exit). A reboot is never cached; only
transient failures (connection drops, busy iLO) are retried, and a retry
re-reads the POST state first, so a server already rebooting is not reset again.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ilo import IloCredentials
from tasks.retry import SLOW_ACTION_RETRY


@task(cache_policy=NO_CACHE, **SLOW_ACTION_RETRY)
async def ilo_reboot(
    address: str,
    *,
    port: int | None = None,
    credentials: str,
    force_after_s: float = 300.0,
    poll_s: float | None = None,
) -> str:
    """Restart a server gracefully through its iLO, forced when the OS ignores it.

    Args:
        address: iLO address.
        port: iLO HTTPS port (default: the block's).
        credentials: ``IloCredentials`` block name.
        force_after_s: Seconds to wait for the OS to restart before ``ForceRestart``.
        poll_s: Seconds between POST-state reads (default: force_after_s / 10, at
            most 2 s, so the short in-POST window is not missed).

    Returns:
        What worked: ``GracefulRestart``, ``ForceRestart``, ``On`` or ``none (...)``.

    Raises:
        AuthError: Credentials refused (not retried; nothing was touched).
        DeadlineExceeded: Not even the forced restart took effect.
        TransportError: The iLO did not answer (retried once).
    """
    creds = await IloCredentials.aload(credentials)
    interval = poll_s if poll_s is not None else min(2.0, max(force_after_s / 10, 0.01))
    async with creds.get_client(address, port=port) as ilo:
        how = await ilo.reboot(force_after_s=force_after_s, poll_s=interval)
    get_run_logger().info("iLO %s: reboot done by %s", address, how)
    return how
