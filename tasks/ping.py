"""Prefect tasks that watch whether a machine answers (ICMP or TCP).

They observe live state, so they never cache (``NO_CACHE``), and they do not
retry: not answering is a result, not a failure, and the wait has its own
deadline.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from clients import ping as ping_client
from clients.ping import Method, Reachability

__all__ = ["check_reachable", "wait_for_reachability"]


@task(cache_policy=NO_CACHE)
async def check_reachable(
    address: str, port: int | None = None, method: Method = "auto", timeout_s: float = 2.0
) -> Reachability:
    """Check once whether a machine answers.

    Args:
        address: The machine's address.
        port: TCP port to connect to (needed for ``tcp``; makes ``auto`` use TCP).
        method: ``auto``, ``icmp`` or ``tcp``.
        timeout_s: How long to wait for the answer.

    Returns:
        The answer (reachable or not, round-trip time, why not).

    Raises:
        PreconditionError: TCP without a port, or ICMP not permitted on this worker.
    """
    answer = await ping_client.ping(address, port=port, method=method, timeout_s=timeout_s)
    get_run_logger().info(
        "%s %s over %s%s",
        address,
        "answers" if answer.reachable else "does not answer",
        answer.method,
        f" ({answer.error})" if answer.error else f" in {answer.rtt_ms:.1f} ms",
    )
    return answer


@task(cache_policy=NO_CACHE)
async def wait_for_reachability(
    address: str,
    *,
    port: int | None = None,
    method: Method = "auto",
    reachable: bool,
    deadline_s: float,
    interval_s: float = 1.0,
) -> float:
    """Wait until a machine answers (``reachable=True``) or stops answering (False).

    Args:
        address: The machine's address.
        port: TCP port (see :func:`check_reachable`).
        method: ``auto``, ``icmp`` or ``tcp``.
        reachable: The state waited for.
        deadline_s: Give up after this many seconds.
        interval_s: Pause between checks.

    Returns:
        Seconds waited.

    Raises:
        DeadlineExceeded: The state did not come before the deadline.
        PreconditionError: Bad input (see :func:`check_reachable`).
    """
    waited = await ping_client.wait_for_reachability(
        address,
        port=port,
        method=method,
        reachable=reachable,
        deadline_s=deadline_s,
        interval_s=interval_s,
        probe_timeout_s=min(2.0, max(interval_s, 0.5)),
    )
    state = "answers" if reachable else "stopped answering"
    get_run_logger().info("%s %s after %.1f s", address, state, waited)
    return waited
