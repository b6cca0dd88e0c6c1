"""The ``machine-<id>`` concurrency limits behind the machine leases: names and creation.

A lease is only exclusive when its limit exists with ``limit=1``: with an
unknown name Prefect lets everyone in (PREFECT.md). A run creates the limit
on first use (:func:`tasks.lease.machine_lease`), or, acting on a fleet, the
limits of every machine up front with :func:`ensure_machine_limits`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists

__all__ = ["ensure_limits_later", "ensure_machine_limits", "lease_name", "safe_limit_name"]

logger = logging.getLogger("rackflow.tasks.lease")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_PAGE = 200
# Limits created at once: up front (the rollout waits for them), in the background (where
# they must leave room in the API client's pool of 16 connections to the leases themselves).
_CREATES_AT_ONCE = 8
_CREATES_LATER_AT_ONCE = 2


def safe_limit_name(text: str) -> str:
    """A Prefect concurrency limit name (Prefect forbids ``/ % & > <``)."""
    return _UNSAFE.sub("_", text.strip())


def lease_name(machine: str) -> str:
    """The concurrency limit name of a machine."""
    return safe_limit_name(f"machine-{machine}")


async def ensure_machine_limits(
    machines: Sequence[str], *, at_once: int = _CREATES_AT_ONCE
) -> None:
    """Create the lease limits of many machines at once, before acting on them.

    A run over a fleet calls this once and then ``machine_lease(...,
    ensure_limit=False)``: one paged read of the existing limits and a create
    per missing one, instead of a read (and maybe a create) per machine.

    Args:
        machines: Machine ids (service tags or FQDNs).
        at_once: Creates in flight at once.
    """
    wanted = {lease_name(m) for m in machines}
    if not wanted:
        return
    async with get_client() as client:
        ok: set[str] = set()
        offset = 0
        while True:
            page = await client.read_global_concurrency_limits(limit=_PAGE, offset=offset)
            ok.update(lim.name for lim in page if lim.limit == 1)
            offset += len(page)
            if len(page) < _PAGE:
                break
        gate = asyncio.Semaphore(at_once)

        async def create(name: str) -> None:
            async with gate:
                try:
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=1)
                    )
                except ObjectAlreadyExists:  # another run made it, or its limit is not 1
                    await client.upsert_global_concurrency_limit_by_name(name, limit=1)

        await asyncio.gather(*(create(n) for n in sorted(wanted - ok)))


async def ensure_limits_later(machines: Sequence[str]) -> None:
    """:func:`ensure_machine_limits` in the background: never raises (each lease makes its own).

    Args:
        machines: Machine ids acted on later in the run.
    """
    try:
        await ensure_machine_limits(machines, at_once=_CREATES_LATER_AT_ONCE)
    except Exception as exc:  # noqa: BLE001 - each lease then makes its own limit
        logger.warning("lease limits not made ahead: %s", exc)
