"""The Prefect server's database for the rolling-update benchmark: PostgreSQL or SQLite.

PostgreSQL (the default, what PREFECT.md recommends for real fleets) is a
throwaway server from Debian's packages (``lab.postgres``), with its
crash-safety settings on (fsync, synchronous commit), as an operator would run
it; the Prefect server reaches it through ``PREFECT_API_DATABASE_CONNECTION_URL``
with the asyncpg driver. SQLite is Prefect's default file under ``PREFECT_HOME``.
Kept free of Prefect: the parent process stays small.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DATABASES = ("postgres", "sqlite")


@dataclass
class Database:
    """What the Prefect server runs on.

    Args:
        kind: ``postgres`` or ``sqlite``.
        label: Printed description (never the password).
        env: Variables for the Prefect server's environment only.
        pid: PostgreSQL's postmaster, for CPU accounting (None for SQLite: in-process).
    """

    kind: str
    label: str
    env: dict[str, str] = field(default_factory=dict)
    pid: int | None = None


@contextmanager
def database(kind: str, state: Path) -> Iterator[Database]:
    """Provide the Prefect server's database for the block.

    Args:
        kind: ``postgres`` or ``sqlite``.
        state: The run's state directory (SQLite's file lives under it).

    Yields:
        The database.

    Raises:
        lab.postgres.PostgresError: PostgreSQL could not be started.
        ValueError: Unknown kind.
    """
    if kind == "sqlite":
        yield Database(kind, f"SQLite ({state / 'prefect' / 'prefect.db'})")
        return
    if kind != "postgres":
        raise ValueError(f"unknown database {kind!r}")
    from lab.postgres import PostgresServer, redact

    with PostgresServer(durable=True) as server:
        url = server.create_database("prefect", driver="asyncpg")
        yield Database(
            kind,
            f"PostgreSQL {server.version} ({redact(url)}, fsync on)",
            env={"PREFECT_API_DATABASE_CONNECTION_URL": url},
            pid=server.pid,
        )


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a process, its reaped children and its live children (PostgreSQL backends).

    Args:
        pid: The parent (postmaster); None gives 0.

    Returns:
        user + system seconds, including children that already exited.
    """
    if pid is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[1] ppid; [11] utime, [12] stime, [13] cutime, [14] cstime
        if int(proc.name) == pid:
            total += sum(int(f) for f in fields[11:15])
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return round(total / ticks, 2)
