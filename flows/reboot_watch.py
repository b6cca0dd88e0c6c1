"""Watching a machine go down and come back: where, how, and waiting for it.

How a machine is watched is decided before its lease is taken
(:func:`watch_target`): ICMP where the worker may send it, else a TCP connect
to its ping port or, failing that, to its SSH port (sshd goes away while the
machine is down, like its ping answers). A machine that cannot be watched is
refused before anything is touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from pydantic import BaseModel

from blocks.ssh import SshCredentials
from clients.errors import DeadlineExceeded, PreconditionError
from clients.inventory import ServerRecord
from clients.inventory.access import PingConfig, SshAccess
from clients.ping import IcmpMode, icmp_mode, icmp_usable, plan_check
from tasks.cancel import stop_requested
from tasks.ping import wait_for_reachability

__all__ = ["Target", "observe", "ping_target", "watch_target"]

_SSH_PORT = 22


def _log() -> Any:
    try:  # the run's log when in a flow (the UI shows it), else the module's
        return get_run_logger()
    except MissingContextError:
        return get_logger("rackflow.flows.reboot_watch")


class Target(BaseModel):
    """Where to check that the machine answers."""

    address: str
    ping: PingConfig


def ping_target(record: ServerRecord) -> Target:
    """The machine's address and ping configuration, as the inventory has them.

    Raises:
        PreconditionError: Nothing to watch it by (no address, name or SSH host).
    """
    access = record.access
    address = access.address or record.fqdn or (access.ssh.host if access.ssh else None)
    if address is None:
        raise PreconditionError(
            subject=record.identity,
            reason="no address to watch the machine by: set `address` (or `name`) in the "
            "inventory import file",
        )
    return Target(address=address, ping=access.ping or PingConfig())


async def watch_target(
    record: ServerRecord, *, icmp: Callable[[], IcmpMode | None] = icmp_mode
) -> Target:
    """How the chain will watch the machine go down and come back, decided before acting.

    ``auto`` without a port pings over ICMP when this worker may; otherwise it
    connects over TCP to the machine's SSH port (where sshd goes away while the
    machine is down, like ping answers).

    Args:
        record: The machine.
        icmp: The ICMP capability check (:func:`clients.ping.icmp_mode`; injectable).

    Returns:
        The target, with ``ping.method`` ``icmp`` or ``tcp`` (and its port).

    Raises:
        PreconditionError: No address, or no way to check it on this worker.
    """
    target = ping_target(record)
    ping, ssh = target.ping, record.access.ssh
    address, fallback = target.address, None
    if ping.method == "auto" and ping.port is None and ssh is not None:
        if not icmp_usable(address, probe=icmp):
            address, fallback = ssh.host, await _ssh_port(ssh)
    try:
        plan = plan_check(
            address, method=ping.method, port=ping.port, fallback_port=fallback, probe=icmp
        )
    except PreconditionError as exc:
        raise PreconditionError(subject=record.identity, reason=str(exc)) from None
    if plan.note:
        _log().info("%s: %s (its SSH port)", record.identity, plan.note)
    return Target(address=address, ping=PingConfig(method=plan.method, port=plan.port))


async def _ssh_port(ssh: SshAccess) -> int:
    if ssh.port is not None:
        return ssh.port
    try:  # the port the SSH method will use: the block's
        block: SshCredentials = await SshCredentials.aload(ssh.credentials)
        return block.port
    except Exception as exc:  # noqa: BLE001 - a missing block fails the ssh method; watch 22
        _log().warning("SSH block %r not loaded (%s): watching port %d", ssh.credentials,
                       exc, _SSH_PORT)  # fmt: skip
        return _SSH_PORT


async def observe(target: Target, *, reachable: bool, deadline_s: float, poll_s: float) -> str:
    """Wait for the machine to (stop) answer(ing), in slices so a stop request is seen.

    Returns:
        ``""`` once it did; the stop reason when a stop was requested first.

    Raises:
        DeadlineExceeded: It did not within ``deadline_s``.
    """
    started = time.monotonic()
    slice_s = max(poll_s * 3, 60.0)  # how often a stop request is looked for
    while True:
        remaining = deadline_s - (time.monotonic() - started)
        try:
            await wait_for_reachability(
                target.address, port=target.ping.port, method=target.ping.method,
                reachable=reachable, deadline_s=max(min(slice_s, remaining), poll_s / 2),
                interval_s=poll_s,
            )  # fmt: skip
            return ""
        except DeadlineExceeded:
            if time.monotonic() - started >= deadline_s:
                raise DeadlineExceeded(
                    operation=f"{target.address} {'answering' if reachable else 'going down'}",
                    waited_s=time.monotonic() - started,
                ) from None
        stop = await stop_requested()
        if stop:
            return stop
