"""Prefect tasks that write discovery results into the inventory.

They take the ``InventoryStore`` block by NAME (None: the default store) and
open the inventory inside the task. They write, so they never cache; a retry
repeats the whole batch, which is safe because an upsert of the same
observation is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from blocks.inventory import InventoryStore
from clients.errors import PreconditionError
from clients.inventory import ServerObservation
from tasks.retry import retry_on_transient

__all__ = ["load_inventory_store", "mark_servers_offline", "record_servers"]


def load_inventory_store(inventory_block: str | None) -> InventoryStore:
    """Load the named ``InventoryStore`` block, or the default store for None.

    Args:
        inventory_block: Block document name (``my-store``), or None.

    Returns:
        The block; call ``get_client()`` to open the inventory.

    Raises:
        PreconditionError: The block is of another type.
    """
    if not inventory_block:
        return InventoryStore()
    # Called from the sync tasks below: Prefect dispatches to the sync loader.
    block = InventoryStore.load(inventory_block)
    if not isinstance(block, InventoryStore):
        raise PreconditionError(subject=inventory_block, reason="not an InventoryStore block")
    return block


def _run_id(run_id: str | None) -> str | None:
    if run_id:
        return run_id
    current = flow_run.id
    return str(current) if current else None


@task(
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
)
def record_servers(
    observations: list[ServerObservation],
    inventory_block: str | None = None,
    run_id: str | None = None,
) -> dict[str, int]:
    """Upsert what discovery saw into the inventory, in one transaction.

    Args:
        observations: One observation per BMC that answered.
        inventory_block: ``InventoryStore`` block name (None: the default store).
        run_id: Discovery run to stamp on the rows (None: the current flow run).

    Returns:
        Counts by outcome: ``{"created": n, "updated": n, "moved": n}``.
    """
    logger = get_run_logger()
    store = load_inventory_store(inventory_block)
    with store.get_client() as inventory:
        counts = inventory.upsert_many(observations, run_id=_run_id(run_id))
    result = {outcome.value: n for outcome, n in counts.items()}
    logger.info(
        "inventory: %d created, %d updated, %d moved",
        result["created"],
        result["updated"],
        result["moved"],
    )
    return result


@task(
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
)
def mark_servers_offline(
    scanned: Sequence[tuple[str, int]],
    seen: Sequence[tuple[str, int]],
    inventory_block: str | None = None,
    run_id: str | None = None,
) -> int:
    """Mark known servers offline whose address was scanned but did not answer.

    Args:
        scanned: Every ``(address, port)`` the discovery probed (lists accepted too).
        seen: The endpoints where a BMC answered.
        inventory_block: ``InventoryStore`` block name (None: the default store).
        run_id: Discovery run to stamp on the rows (None: the current flow run).

    Returns:
        How many servers went offline in this call.
    """
    logger = get_run_logger()
    store = load_inventory_store(inventory_block)
    with store.get_client() as inventory:
        count = inventory.mark_offline(
            scanned=[(str(a), int(p)) for a, p in scanned],
            seen=[(str(a), int(p)) for a, p in seen],
            run_id=_run_id(run_id),
        )
    if count:
        logger.info("inventory: %d servers went offline", count)
    return count
