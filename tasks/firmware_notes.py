"""The ``pending:firmware-job`` notes of a run: which firmware jobs rackflow started.

Plain calls around the run's :class:`~tasks.inventory.RunInventory` (no task
runs on the happy path); on a failure they delete the run's jobs that never
ran through :func:`tasks.firmware_jobs.delete_unstarted_jobs`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger

from clients.errors import RackflowError
from clients.inventory import ServerRecord
from tasks.firmware_jobs import delete_unstarted_jobs
from tasks.inventory import RunInventory

__all__ = ["JobNotes"]


class JobNotes:
    """One run's ``pending:firmware-job`` notes: the firmware jobs rackflow started.

    A note is written before the step it protects (the intention, "starting
    <component>", before the request; the job id before the job is followed)
    and cleared on every terminal outcome: done; failed, once the run's jobs
    that never ran are deleted; found current after a crash. It stays only
    while a job of the run may still be pending on the iDRAC (it has
    started, or could not be deleted, or a start was cut off after its
    request): the next run follows or adopts that job by the note, and this
    run starts nothing more on that server (``held``).

    Args:
        inventory: The run's inventory handle.
        credentials_block: ``RedfishCredentials`` block name (to delete jobs).
    """

    CHANGE = "firmware-job"

    def __init__(self, inventory: RunInventory, credentials_block: str) -> None:
        self._inventory = inventory
        self._credentials = credentials_block
        self.written: set[str] = set()
        self.held: dict[str, str] = {}

    @staticmethod
    def earlier(server: ServerRecord) -> dict[str, Any]:
        """The note an earlier run left on the server (as loaded at this run's start)."""
        note = (server.attributes or {}).get(f"pending:{JobNotes.CHANGE}")
        return dict(note) if isinstance(note, dict) else {}

    @staticmethod
    def intention(run: str, **detail: Any) -> dict[str, Any]:
        """The note written before an update request: no job id yet, and when it starts."""
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return {"run": run, "job": None, **detail, "starting": started}

    async def note(self, server: str, detail: dict[str, Any] | None) -> None:
        """Write (or, with None, clear) the server's note, on disk before the caller goes on."""
        self.written.add(server)
        await self._inventory.note(server, self.CHANGE, detail)

    async def after_failure(
        self, server: ServerRecord, job_ids: list[str], *, maybe_started: bool
    ) -> str:
        """Settle the note of a failed update; delete the run's jobs that never ran.

        Called before the maintenance window is left, so that no job of the
        run can flash at the next reboot outside of it.

        Args:
            server: The server.
            job_ids: The update's jobs (empty: the start failed before returning one).
            maybe_started: Without job ids: the request may have reached the iDRAC.

        Returns:
            What became of the jobs, for the failure message ("" when nothing to say).
        """
        key = server.identity
        if not job_ids:
            if not maybe_started:
                return await self._clear(key)
            self.held[key] = "a start was cut off after its request: a job may be pending"
            return (
                "the request may have reached the iDRAC: the note stays; the next run adopts "
                "the one job it made, or refuses to guess"
            )
        assert server.bmc_address is not None and server.bmc_port is not None
        try:
            cleanup = await delete_unstarted_jobs(
                server.bmc_address, server.bmc_port, self._credentials, job_ids
            )
        except Exception as exc:  # noqa: BLE001 - said in the message; the note keeps the ids
            self.held[key] = f"job {', '.join(job_ids)} may still be pending"
            return f"job {', '.join(job_ids)} NOT deleted ({exc}); the note stays"
        if cleanup.left:
            self.held[key] = cleanup.message
            return f"{cleanup.message}; the note stays (the next run follows it)"
        return "; ".join(m for m in (cleanup.message, await self._clear(key)) if m)

    async def settle_current(self, server: ServerRecord, current: set[str]) -> None:
        """An earlier run's note whose components this run found current: clear it.

        That run's job did its work (or someone else did): the note would
        only make a later run wait for the server and excuse a job by it.

        Args:
            server: The server.
            current: Components this run found at their target version.
        """
        note = self.earlier(server)
        kinds = [k for k in note.get("components") or [note.get("component")] if k]
        if not kinds or server.identity in self.written or not set(kinds) <= current:
            return
        await self.note(server.identity, None)
        get_run_logger().info(
            "%s: %s found current: the note of run %s is cleared",
            server.identity,
            ", ".join(kinds),
            note.get("run"),
        )

    async def _clear(self, key: str) -> str:
        try:
            await self.note(key, None)
        except RackflowError as exc:
            get_run_logger().warning("%s: firmware-job note not cleared: %s", key, exc)
            return f"inventory note not cleared: {exc}"
        return ""
