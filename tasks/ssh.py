"""Prefect tasks over SSH to a machine's OS: reboot it.

The task takes the ``SshCredentials`` block by NAME and opens the client
inside (in a thread: paramiko is synchronous). A reboot is an action: never
cached. It retries only transient failures (could not connect, connection
broke before a command was sent); a refused key, an untrusted host key or
every reboot command failing are not retried. A session that broke after a
command went unanswered is not a failure but that command accepted (see
:mod:`clients.ssh`): a retry could reboot the machine twice.
"""

from __future__ import annotations

import asyncio
from typing import cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ssh import SshCredentials
from clients.ssh import RebootResult
from tasks.retry import TRANSIENT_RETRY

__all__ = ["ssh_reboot"]


@task(cache_policy=NO_CACHE, **TRANSIENT_RETRY)
async def ssh_reboot(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    credentials: str,
    windows: bool | None = None,
    command_timeout_s: float = 20.0,
) -> str:
    """Reboot a machine's OS over SSH (``reboot``, then ``shutdown -r now``).

    Returns once a command was accepted; the machine goes down afterwards.
    Watch it with :func:`tasks.ping.wait_for_reachability` (down, then up).
    A command that does not exit within ``command_timeout_s`` counts as failed
    and the next one runs; if the session is gone by then, the unanswered
    command counts as accepted (the reboot may have cut the network first).

    Args:
        host: The machine's address.
        port: SSH port (default: the block's).
        user: Login user (default: the block's).
        credentials: Name of the ``SshCredentials`` block.
        windows: ``True``: the host runs Windows (``shutdown /r /t 0`` only);
            ``False``: a Unix (``reboot``, ``shutdown -r now``); ``None``
            (unknown): the Unix forms, then the Windows form.
        command_timeout_s: Limit for each reboot command.

    Returns:
        The command the host accepted.

    Raises:
        RebootFailed: Every command failed (the message lists each error).
        AuthError: The host refused the key.
        HostKeyError: The host key is unknown or changed (nothing was run).
        TransportError: Could not connect (retried).
    """
    logger = get_run_logger()
    # cast: Prefect's aload is typed loosely (returns its own type var).
    creds = cast(SshCredentials, await SshCredentials.aload(credentials))

    def reboot() -> RebootResult:
        with creds.get_client(host, port=port, user=user) as ssh:
            return ssh.reboot(windows=windows, timeout_s=command_timeout_s)

    result = await asyncio.to_thread(reboot)
    for failure in result.failures:
        logger.warning("%s: %r failed: %s", host, failure.command, failure.error)
    how = "session dropped" if result.session_dropped else "exit 0"
    logger.info("%s: reboot accepted: %r (%s)", host, result.command, how)
    return result.command
