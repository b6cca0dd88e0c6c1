"""A throwaway PostgreSQL server from Debian's ``postgresql`` packages.

::

    with postgres_url(driver="asyncpg") as url:  # postgresql+asyncpg://...@127.0.0.1:<port>/...
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = url

``initdb`` and ``pg_ctl`` come from the newest ``/usr/lib/postgresql/<v>/bin``.
Everything lives in a temporary directory (data, unix socket, log) that is
removed on exit. The server listens on 127.0.0.1 only, at a free port, with a
random superuser password handed to initdb in a file (never on a command
line). initdb refuses to run as root, so as root the binaries run as the
``postgres`` user (``runuser -u postgres --``) and the directory is chowned to
it. The URL carries the password: do not log it (:func:`redact` it first).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import psycopg

__all__ = ["PostgresError", "PostgresServer", "find_pg_bin", "postgres_url", "redact"]

_SUPERUSER = "postgres"
_FAST_SETTINGS = "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"


class PostgresError(RuntimeError):
    """The server could not be found, initialised, started or reached."""


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl.

    Returns:
        The directory, or None when the server packages are not installed.
    """
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        version = bindir.parent.name
        if (bindir / "pg_ctl").exists() and version.isdigit():
            candidates.append((int(version), bindir))
    return max(candidates)[1] if candidates else None


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and reports).

    Args:
        url: A SQLAlchemy URL.

    Returns:
        The same URL without the password.
    """
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A PostgreSQL server in its own temporary directory (context manager).

    Args:
        durable: Keep PostgreSQL's crash-safety defaults (fsync, synchronous
            commit, full page writes). False turns them off: faster, and fine
            for data thrown away at the end.
        start_timeout_s: How long initdb, the start and the first connection may take.
        bindir: Server binaries; default :func:`find_pg_bin`.
    """

    def __init__(
        self, *, durable: bool = False, start_timeout_s: float = 60.0, bindir: Path | None = None
    ) -> None:
        self.durable = durable
        self.start_timeout_s = start_timeout_s
        self.bindir = bindir
        self.host = "127.0.0.1"
        self.port = 0
        self.user = _SUPERUSER
        self.root: Path | None = None
        self.version: str | None = None
        self._password = secrets.token_urlsafe(18)
        self._started = False

    def __repr__(self) -> str:
        return f"PostgresServer(host={self.host!r}, port={self.port}, version={self.version!r})"

    @property
    def pid(self) -> int | None:
        """Process id of the running postmaster (its backends are its children), or None."""
        if self.root is None or not self._started:
            return None
        try:
            first = (self.root / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    @property
    def password(self) -> str:
        """The superuser's password (random per server; tests check it never leaks)."""
        return self._password

    def url(self, database: str = "postgres", *, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of one database on this server.

        Args:
            database: Database name.
            driver: ``psycopg`` (sync, psycopg 3) or ``asyncpg`` (what Prefect's server uses).

        Returns:
            ``postgresql+<driver>://postgres:<password>@127.0.0.1:<port>/<database>``.
        """
        auth = f"{self.user}:{self._password}"
        return f"postgresql+{driver}://{auth}@{self.host}:{self.port}/{database}"

    # -- life cycle ---------------------------------------------------------
    def start(self) -> None:
        """Create the cluster in a temporary directory, start it, wait until it answers.

        Raises:
            PostgresError: No binaries, no way to run them, or the server did not start.
        """
        bindir = self.bindir or find_pg_bin()
        if bindir is None:
            raise PostgresError(
                "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                "(apt-get install postgresql)"
            )
        self.bindir = bindir
        self.version = bindir.parent.name
        self._check_user()
        self.root = Path(tempfile.mkdtemp(prefix="rackflow-pg-"))
        try:
            self._init()
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory. Safe to call twice."""
        if self.root is None:
            return
        if self._started:
            data = self.root / "data"
            self._run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def create_database(self, name: str, *, driver: str = "psycopg") -> str:
        """Create an empty database and return its SQLAlchemy URL.

        Args:
            name: Database name (an identifier chosen by the caller, not user input).
            driver: Driver of the returned URL (see :meth:`url`).

        Returns:
            The database's URL.

        Raises:
            PostgresError: The server refused.
        """
        try:
            with self._connect(autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as exc:
            raise PostgresError(f"could not create database {name!r}: {exc}") from exc
        return self.url(name, driver=driver)

    # -- internals ----------------------------------------------------------
    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _check_user(self) -> None:
        if not self._as_root:
            return
        if shutil.which("runuser") is None:
            raise PostgresError("running as root without runuser: cannot start postgres")
        try:
            pwd.getpwnam(_SUPERUSER)
        except KeyError:
            raise PostgresError("running as root and there is no 'postgres' user") from None

    def _own(self, path: Path) -> None:
        if self._as_root:
            entry = pwd.getpwnam(_SUPERUSER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None and self.root is not None
        prefix = ["runuser", "-u", _SUPERUSER, "--"] if self._as_root else []
        return subprocess.run(  # noqa: S603 - our fixed argv, no shell
            [*prefix, str(self.bindir / tool), *args],
            cwd=self.root,  # the postgres user may not be able to enter our cwd
            capture_output=True,
            text=True,
            timeout=self.start_timeout_s + 30,
            check=False,
        )

    def _init(self) -> None:
        assert self.root is not None
        sockets = self.root / "sock"
        sockets.mkdir()
        for directory in (self.root, sockets):
            self._own(directory)
        pwfile = self.root / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._password + "\n")
        self._own(pwfile)
        try:
            init = self._run(
                "initdb", "-D", str(self.root / "data"), "-U", _SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C",
            )  # fmt: skip
        finally:
            pwfile.unlink()
        if init.returncode != 0:
            raise PostgresError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        self.port = _free_port()
        with (self.root / "data" / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '{self.host}'\nport = {self.port}\n"
                f"unix_socket_directories = '{sockets}'\n"
            )
            if not self.durable:
                conf.write(_FAST_SETTINGS)

    def _launch(self) -> None:
        assert self.root is not None
        log = self.root / "server.log"
        started = self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-l", str(log),
            "-w", "-t", str(int(self.start_timeout_s)), "start",
        )  # fmt: skip
        if started.returncode != 0:
            detail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise PostgresError(
                f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{detail}"
            )
        self._started = True

    def _connect(self, *, autocommit: bool = False, timeout_s: int = 10) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self._password,
            dbname="postgres",
            connect_timeout=timeout_s,
            autocommit=autocommit,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                with self._connect(timeout_s=5):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"the server did not accept connections: {exc}") from exc
                time.sleep(0.2)


@contextmanager
def postgres_url(
    *, database: str = "rackflow", driver: str = "psycopg", durable: bool = False
) -> Iterator[str]:
    """Run a throwaway server with one empty database for the duration of the block.

    Args:
        database: Name of the database to create.
        driver: ``psycopg`` or ``asyncpg`` (the URL's SQLAlchemy driver).
        durable: Keep PostgreSQL's crash-safety settings (see :class:`PostgresServer`).

    Yields:
        The database's SQLAlchemy URL (it holds the password).

    Raises:
        PostgresError: The server could not be started.
    """
    with PostgresServer(durable=durable) as server:
        yield server.create_database(database, driver=driver)
