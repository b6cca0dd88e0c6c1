"""Retry conditions shared by rackflow's tasks.

Prefect calls ``retry_condition_fn(task, task_run, state)`` with a plain
function (a ``functools.partial`` silently means "never retry", PREFECT.md).
"""

from __future__ import annotations

from typing import Any

from clients.errors import RackflowError, is_retryable


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
    try:
        # _sync: inside an async task run state.result() would hand back an
        # un-awaited coroutine (Prefect's async_dispatch), i.e. "never retry".
        exc = state.result(raise_on_failure=False, _sync=True)
    except Exception:  # noqa: BLE001 - an unreadable state is not worth a retry
        return False
    if isinstance(exc, RackflowError):
        return is_retryable(exc)
    return isinstance(exc, OSError)
