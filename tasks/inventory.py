"""Prefect tasks that read and write the inventory: discovery results, the servers
a procedure targets (:class:`TargetQuery`), a rollout's bookkeeping.

They take the ``InventoryStore`` block by NAME (None: the default store) and
open the inventory inside the task. Writes never cache; a retry repeats the
whole batch, which is safe because an upsert of the same observation is
idempotent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from blocks.inventory import InventoryStore
from clients.discovery import ProbeResult, Scanner
from clients.errors import PreconditionError, RackflowError, is_retryable
from clients.inventory import (
    Inventory,
    ServerObservation,
    ServerRecord,
    default_inventory_url,
)
from clients.inventory.query import TargetQuery, select_servers
from tasks.firmware import load_credentials
from tasks.retry import retry_on_transient

__all__ = [
    "RunInventory",
    "TargetQuery",
    "load_target_servers",
    "read_server_observation",
    "load_inventory_store",
    "load_machine",
    "mark_servers_offline",
    "record_servers",
]

T = TypeVar("T")


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
async def load_target_servers(
    targets: Sequence[str],
    model: str | None = None,
    inventory_block: str | None = None,
    query: TargetQuery | None = None,
) -> list[ServerRecord]:
    """The servers a procedure acts on: named ones, else those an inventory query selects.

    Args:
        targets: Service tags (or any key :meth:`Inventory.get` accepts), each once.
        model: With no targets and no query: every online server of this model
            (None: every online server).
        inventory_block: ``InventoryStore`` block name (None: the default store).
        query: With no targets: the servers it selects, ordered by identity.

    Returns:
        The records: in the order given, or by identity for a query.

    Raises:
        PreconditionError: Targets and a query (or a model and a query) both given, a
            target unknown or repeated, nothing selected, or a server without a BMC address.
    """
    if targets and query is not None:
        raise PreconditionError(subject="targets", reason="give targets or a query, not both")
    if model and query is not None:
        raise PreconditionError(subject="model", reason="give it in the query (query.models)")
    chosen = query or TargetQuery(models=[model] if model else [])
    store = await InventoryStore.aload(inventory_block) if inventory_block else InventoryStore()
    if not isinstance(store, InventoryStore):
        raise PreconditionError(subject=str(inventory_block), reason="not an InventoryStore block")

    def read() -> list[ServerRecord]:
        with store.get_client() as inventory:
            return select_servers(inventory, targets, chosen)

    records = await asyncio.to_thread(read)
    for record in records:
        if not record.bmc_address or not record.bmc_port:
            raise PreconditionError(subject=record.identity, reason="no known BMC address")
    return records


@task(
    cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_transient
)
async def read_server_observation(address: str, port: int, credentials_block: str) -> ProbeResult:
    """Re-read one server (identity, versions, firmware) as discovery would.

    Like ``tasks.discovery.refresh_server_record`` without the write: a
    rollout records the observation through its :class:`RunInventory`.

    Args:
        address: BMC address.
        port: BMC port.
        credentials_block: ``RedfishCredentials`` block name.

    Returns:
        What was read (``observation`` None when the BMC did not answer).
    """
    creds = await load_credentials(credentials_block)
    scanner = Scanner(
        username=creds.username,
        password=creds.password.get_secret_value(),
        verify=creds.ssl_context(),
        connect_timeout=creds.connect_timeout,
        read_timeout=creds.read_timeout,
        concurrency=1,
    )
    [result] = await scanner.scan([(address, port)])
    return result


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


class RunInventory:
    """One flow run's bookkeeping in the inventory, as plain calls (no task runs).

    A rolling update writes small records around every risky step (the
    pending-change notes a later run recovers from, the refreshed versions).
    As Prefect tasks each write cost a task run, a block load and an inventory
    open with its migration check: more than the write. Here the run opens the
    inventory once and writes through one thread of its own (serialized, as
    SQLite wants, never behind other threads). Each write is awaited before
    the caller goes on: a note is on disk before the step it protects.

    Use as ``async with await RunInventory.open(inventory_block) as inventory:``.

    Args:
        store: The inventory store block (loaded by :meth:`open`).
    """

    _ATTEMPTS = 3

    def __init__(self, store: InventoryStore) -> None:
        self._store = store
        self._inventory: Inventory | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rackflow-inventory")

    @classmethod
    async def open(cls, inventory_block: str | None) -> RunInventory:
        """Load the block and open the inventory (migrating it when needed).

        Args:
            inventory_block: ``InventoryStore`` block name (None: the default store).

        Returns:
            The opened handle; close it with ``async with`` or :meth:`aclose`.

        Raises:
            PreconditionError: The block is of another type.
            TransportError: The database cannot be reached.
        """
        store = await InventoryStore.aload(inventory_block) if inventory_block else InventoryStore()
        if not isinstance(store, InventoryStore):
            raise PreconditionError(
                subject=str(inventory_block), reason="not an InventoryStore block"
            )
        self = cls(store)
        try:
            await self._call(self._open)
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        return self

    def _open(self) -> None:
        url = self._store.url.get_secret_value() if self._store.url else default_inventory_url()
        inventory = Inventory(url=url)
        inventory.open()
        self._inventory = inventory

    async def __aenter__(self) -> RunInventory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the inventory and stop the writer thread."""
        try:
            if self._inventory is not None:
                await self._call(self._inventory.close)
        finally:
            self._inventory = None
            self._thread.shutdown(wait=False)

    async def _call(self, fn: Callable[[], T]) -> T:
        call = functools.partial(contextvars.copy_context().run, fn)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def _write(self, fn: Callable[[Inventory], T]) -> T:
        """Run one write, again after a retryable failure (a locked database)."""
        for attempt in range(1, self._ATTEMPTS + 1):
            try:
                return await self._call(lambda: fn(self._opened()))
            except RackflowError as exc:
                if attempt == self._ATTEMPTS or not is_retryable(exc):
                    raise
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _opened(self) -> Inventory:
        if self._inventory is None:
            raise PreconditionError(subject="inventory", reason="the run's inventory is closed")
        return self._inventory

    async def note(self, key: str, change: str, detail: dict[str, Any] | None) -> None:
        """Record (or, with ``detail=None``, clear) a change rackflow made and has not undone.

        Kept in ``attributes["pending:<change>"]``, read by a later run after a crash.

        Args:
            key: Server key (service tag).
            change: What kind of change, e.g. ``maintenance`` or ``firmware-job``.
            detail: What to remember (run id, host, job id); None clears it.

        Raises:
            PreconditionError: Unknown server.
            RackflowError: The database failed (after retries when retryable).
        """
        attributes = {f"pending:{change}": detail}
        await self._write(lambda inv: inv.annotate(key, attributes=attributes))

    async def record(
        self, observations: list[ServerObservation], run_id: str | None = None
    ) -> dict[str, int]:
        """Upsert observations (as :func:`record_servers` does), in one transaction.

        Args:
            observations: What was read from the servers.
            run_id: Run to stamp on the rows (None: the current flow run).

        Returns:
            Counts by outcome.
        """
        stamp = _run_id(run_id)
        counts = await self._write(lambda inv: inv.upsert_many(observations, run_id=stamp))
        return {outcome.value: n for outcome, n in counts.items()}
