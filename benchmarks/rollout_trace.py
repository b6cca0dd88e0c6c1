"""Which server each task run of the rollout acted on (benchmark instrumentation only).

Task runs no longer carry a ``machine:<tag>`` tag (the lease tags the flow run
once), and the server keeps no parameter values. So the measured child listens
to Prefect's own task-run log: the engine logs "Finished in state ..." once per
task run, with the run's id in the record, from a method of the engine object
that holds the run's parameters. The handler reads those parameters (the BMC
address, the service tag, or the observations of ``record_servers``) and maps
the run to a server. Nothing is sent anywhere and the flow code is untouched;
the timings themselves are still read back from the Prefect server.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_FINISHED = "Finished in state"
_MAX_FRAMES = 8


class TaskRunServers(logging.Handler):
    """Collects ``task_run_id -> server tag`` from the task-run logger.

    Args:
        servers: The fleet from ``lab.json``: ``"addr:port" -> {"tag": ...}``.
    """

    def __init__(self, servers: dict[str, dict[str, Any]]) -> None:
        super().__init__(level=logging.INFO)
        self.tags = {s["tag"] for s in servers.values()}
        self.by_address = {key.rsplit(":", 1)[0]: s["tag"] for key, s in servers.items()}
        self.runs: dict[str, str] = {}
        self.unmatched = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Note the server of a finished task run (never raises).

        Args:
            record: A record of the ``prefect.task_runs`` logger.
        """
        run_id = getattr(record, "task_run_id", None)
        if not run_id or not str(record.msg).startswith(_FINISHED):
            return
        try:
            tag = self._server(_engine_parameters())
        except Exception:  # noqa: BLE001 - instrumentation must never break the flow
            tag = None
        if tag is None:
            self.unmatched += 1
        else:
            self.runs[str(run_id)] = tag

    def _server(self, params: dict[str, Any] | None) -> str | None:
        for value in (params or {}).values():
            if isinstance(value, str):
                if value in self.tags:
                    return value
                if value in self.by_address:
                    return self.by_address[value]
            elif isinstance(value, list) and value:
                first = value[0]
                for attr in ("service_tag", "bmc_address"):
                    found = self._server({attr: getattr(first, attr, None)})
                    if found:
                        return found
        return None

    def install(self) -> None:
        """Attach to Prefect's task-run logger (after Prefect configured its logging).

        Importing ``prefect.main`` runs Prefect's logging setup, a ``dictConfig``
        that would drop a handler attached before it.
        """
        import prefect.main  # noqa: F401

        logging.getLogger("prefect.task_runs").addHandler(self)

    def remove(self) -> None:
        """Detach from Prefect's task-run logger."""
        logging.getLogger("prefect.task_runs").removeHandler(self)


def _engine_parameters() -> dict[str, Any] | None:
    """The parameters of the task-run engine whose method is logging right now."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES * 4):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        params = getattr(owner, "parameters", None)
        if owner is not None and hasattr(owner, "task_run") and isinstance(params, dict):
            return params
        frame = frame.f_back
    return None
