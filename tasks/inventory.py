"""Prefect tasks that write discovery results into the inventory.

They take the ``InventoryStore`` block by NAME (None: the default store) and
open the inventory inside the task. They write, so they never cache; a retry
repeats the whole batch, which is safe because an upsert of the same
observation is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from blocks.inventory import InventoryStore
from clients.errors import PreconditionError
from clients.inventory import ServerObservation, ServerRecord, ServerStatus
from tasks.retry import retry_on_transient

__all__ = [
    "load_inventory_store",
    "load_machine",
    "mark_servers_offline",
    "record_servers",
]


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


@task(
    cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2, retry_condition_fn=retry_on_transient
)
def load_target_servers(
    targets: Sequence[str],
    model: str | None = None,
    inventory_block: str | None = None,
) -> list[ServerRecord]:
    """The servers a procedure acts on: named ones, else an inventory query.

    Args:
        targets: Service tags (or any key :meth:`Inventory.get` accepts).
        model: With no targets: every online server of this model (None: all online).
        inventory_block: ``InventoryStore`` block name (None: the default store).

    Returns:
        The records, in the order given.

    Raises:
        PreconditionError: A target is unknown, has no BMC address, or nothing matched.
    """
    store = load_inventory_store(inventory_block)
    with store.get_client() as inventory:
        if targets:
            records = []
            for key in targets:
                record = inventory.get(key)
                if record is None:
                    raise PreconditionError(subject=key, reason="not in the inventory")
                records.append(record)
        else:
            records = inventory.list(status=ServerStatus.ONLINE, model=model)
    if not records:
        raise PreconditionError(subject="targets", reason="no server matched")
    for record in records:
        if not record.bmc_address or not record.bmc_port:
            raise PreconditionError(subject=record.identity, reason="no known BMC address")
    return records


@task(
    cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2, retry_condition_fn=retry_on_transient
)
def note_pending_change(
    key: str, change: str, detail: dict[str, Any] | None, inventory_block: str | None = None
) -> None:
    """Record (or, with ``detail=None``, clear) a change rackflow made and has not undone.

    A later run reads ``attributes["pending:<change>"]`` to finish or undo it after a
    crash (e.g. ``pending:maintenance`` = "run R put this host in maintenance mode").

    Args:
        key: Server key (service tag).
        change: What kind of change, e.g. ``maintenance`` or ``firmware-job``.
        detail: What to remember (run id, host, job id); None clears it.
        inventory_block: ``InventoryStore`` block name (None: the default store).
    """
    store = load_inventory_store(inventory_block)
    with store.get_client() as inventory:
        inventory.annotate(key, attributes={f"pending:{change}": detail})


@task(
    cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2, retry_condition_fn=retry_on_transient
)
def load_machine(machine: str, inventory_block: str | None = None) -> ServerRecord:
    """The inventory record of one managed machine (its identity and reboot paths).

    Args:
        machine: Service tag, FQDN, or any key :meth:`Inventory.get` accepts.
        inventory_block: ``InventoryStore`` block name (None: the default store).

    Returns:
        The record.

    Raises:
        PreconditionError: The machine is not in the inventory: rackflow acts only
            on machines it manages.
    """
    store = load_inventory_store(inventory_block)
    with store.get_client() as inventory:
        record = inventory.get(machine)
    if record is None:
        raise PreconditionError(
            subject=machine,
            reason="not in the inventory: only managed machines are acted on "
            "(add it with `rackflow inventory import`)",
        )
    return record
