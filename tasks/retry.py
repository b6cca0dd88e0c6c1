"""Retry conditions and retry settings shared by rackflow's tasks.

Prefect calls ``retry_condition_fn(task, task_run, state)`` with a plain
function (a ``functools.partial`` silently means "never retry", PREFECT.md).

Tasks spread a settings dict into ``@task``::

    @task(cache_policy=NO_CACHE, **TRANSIENT_RETRY)
"""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from clients.errors import RackflowError, is_retryable

__all__ = ["SLOW_ACTION_RETRY", "TRANSIENT_RETRY", "failure_of", "retry_on_transient"]


def failure_of(state: Any) -> BaseException | None:
    """The exception a failed task run's state holds.

    Args:
        state: The failed state.

    Returns:
        The exception, or None when the state cannot be read or holds none.
    """
    try:
        # _sync: inside an async task run state.result() would hand back an
        # un-awaited coroutine (Prefect's async_dispatch), i.e. "never retry".
        exc = state.result(raise_on_failure=False, _sync=True)
    except Exception:  # noqa: BLE001 - an unreadable state is not worth a retry
        return None
    return exc if isinstance(exc, BaseException) else None


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry rackflow errors flagged retryable and OS-level socket failures.

    Args:
        task: The Prefect task (unused).
        task_run: The task run (unused).
        state: The failed state; its exception decides.

    Returns:
        True for retryable :mod:`clients.errors` and ``OSError``; False for
        everything else (bad input, wrong credentials, missing blocks).
    """
    exc = failure_of(state)
    if isinstance(exc, RackflowError):
        return is_retryable(exc)
    return isinstance(exc, OSError)


TRANSIENT_RETRY: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}
"""Calls that answer in seconds (a read, a BMC power command, an SSH ``reboot``):
two retries of transient failures, a few seconds apart, jittered so a fleet's
tasks do not retry in step."""

SLOW_ACTION_RETRY: dict[str, Any] = {
    "retries": 1,
    "retry_delay_seconds": 5,
    "retry_condition_fn": retry_on_transient,
}
"""Power actions that wait on the machine (a graceful iLO restart, a VM's clean
shutdown, a PDU outlet's off-on): one retry of a transient failure, which
re-reads the power state first, so a machine already cycling is not hit twice."""
