"""Prefect task: restart a VM through XenAPI (clean shutdown, else hard, then start).

The ``XenAPI`` package is synchronous: the task runs the client in a worker
thread (``asyncio.to_thread``) with socket timeouts on every call. Never
cached; only transient failures are retried, and a retry re-reads the power
state first (a VM already halted is only started).
"""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.xen import XenCredentials
from tasks.retry import SLOW_ACTION_RETRY


@task(cache_policy=NO_CACHE, **SLOW_ACTION_RETRY)
async def xenapi_reboot(
    vm_uuid: str, *, credentials: str, shutdown_timeout_s: float = 120.0
) -> str:
    """Restart a XenServer / XCP-ng VM.

    Args:
        vm_uuid: The VM's uuid.
        credentials: ``XenCredentials`` block name.
        shutdown_timeout_s: Seconds to give the clean shutdown before a hard one.

    Returns:
        What was done, e.g. ``"clean shutdown, start"``.

    Raises:
        AuthError: Credentials refused (not retried).
        NotFoundError: No VM with this uuid (not retried).
        TransportError: The pool master did not answer (retried once).
    """
    creds = await XenCredentials.aload(credentials)

    def run() -> str:
        with creds.get_client() as xen:
            return xen.reboot_vm(vm_uuid, shutdown_timeout_s=shutdown_timeout_s)

    how = await asyncio.to_thread(run)
    get_run_logger().info("XenAPI: VM %s restarted: %s", vm_uuid, how)
    return how
