"""A lab firmware repository: Dell Update Packages, ``index.json`` and a Dell catalog over HTTP.

Served over plain HTTP on ``127.0.0.1:<port>`` (port 0 = a free one) from
files under ``state_dir``, on whichever event loop starts it (the
:class:`~lab.server.Lab` loop normally). Layout::

    index.json              {"packages": [{file, component, component_id, version, models, name}]}
    Catalog.xml, .xml.gz    Dell catalog, baseLocation = this repository (UTF-16, like Dell's)
    <package files>         e.g. BIOS_8R8XJ_WN64_2.19.2.EXE (a JSON header the lab iDRAC reads)

.. code-block:: python

    with Lab(fleet=fleet, state_dir=tmp, repository=True) as lab:
        pkg = lab.repository.package_for("PowerEdge R640", "bios")
        uri = lab.repository.url(pkg.file)           # SimpleUpdate ImageURI
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web

from clients.errors import PreconditionError
from lab.catalog import build_catalog
from lab.dup import Package, short_model, version_key

INDEX = "index.json"
CATALOG = "Catalog.xml"


class FirmwareRepository:
    """Packages on disk plus the HTTP site that serves them.

    Args:
        packages: Initial packages (e.g. :func:`lab.dup.default_packages`).
        state_dir: Directory the files are written to (created).
        port: Port to listen on (0 = any free port).
    """

    def __init__(self, *, packages: Iterable[Package], state_dir: Path, port: int = 0) -> None:
        self.directory = Path(state_dir)
        self.port = port
        self._packages: dict[str, Package] = {}
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._extra_catalogs: dict[str, str] = {}
        #: Requests per file name (``GET index.json``, ``GET BIOS_...EXE``...).
        self.requests: Counter[str] = Counter()
        for pkg in packages:
            self._packages[pkg.file] = pkg

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash); valid once started."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the ``IPAddress`` of InstallFromRepository."""
        return f"127.0.0.1:{self.port}"

    @property
    def packages(self) -> list[Package]:
        """Packages currently listed."""
        with self._lock:
            return list(self._packages.values())

    def url(self, file: str) -> str:
        """Full URL of a file in the repository."""
        return f"{self.base_url}/{file}"

    def package_for(self, model: str, component: str) -> Package:
        """The newest package of a component kind for a model.

        Args:
            model: ``R640`` or ``PowerEdge R640``.
            component: ``idrac``, ``bios``, ``cpld``, ``raid``, ``nic`` or ``backplane``.

        Returns:
            The package.

        Raises:
            PreconditionError: No package for that model and component.
        """
        found = [p for p in self.packages if p.component == component and p.applies_to(model)]
        if not found:
            raise PreconditionError(
                subject=f"{short_model(model)} {component}", reason="no package in the repository"
            )
        return max(found, key=lambda p: version_key(p.version))

    def target_version(self, model: str, component: str) -> str:
        """Version the repository would install for a model's component."""
        return self.package_for(model, component).version

    def add_package(self, package: Package) -> Package:
        """Add (or replace) a package: file written, index and catalog regenerated.

        Args:
            package: The package.

        Returns:
            The package.
        """
        with self._lock:
            self._packages[package.file] = package
        self._write_file(package)
        self._write_indexes()
        return package

    def remove(self, file: str, *, keep_listed: bool = False) -> None:
        """Delete a package file.

        Args:
            file: File name.
            keep_listed: Keep it in ``index.json`` / the catalog, so a client
                finds it listed and the iDRAC's download fails (a broken mirror).

        Raises:
            PreconditionError: Unknown file.
        """
        with self._lock:
            if file not in self._packages:
                raise PreconditionError(subject=file, reason="not in the repository")
            if not keep_listed:
                del self._packages[file]
        (self.directory / file).unlink(missing_ok=True)
        self._write_indexes()

    def write_catalog(self, name: str, *, base_location: str) -> str:
        """Publish another catalog with a chosen ``baseLocation`` (e.g. an unrewritten mirror).

        Args:
            name: File name, e.g. ``Mirror.xml`` (``.gz`` names are gzipped).
            base_location: ``baseLocation`` to write (``downloads.dell.com``...).

        Returns:
            The catalog URL.
        """
        self._extra_catalogs[name] = base_location
        self._write_indexes()
        return self.url(name)

    def write(self) -> None:
        """Write every package file, the index and the catalogs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for pkg in self.packages:
            self._write_file(pkg)
        self._write_indexes()

    async def start(self) -> None:
        """Write the files and serve them (call on the serving loop)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.write()  # the catalog names the bound port

    async def stop(self) -> None:
        """Stop serving (files stay)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"].strip("/")
        self.requests[f"{request.method} {name}"] += 1
        path = (self.directory / name).resolve()
        if not path.is_relative_to(self.directory.resolve()) or not path.is_file():
            raise web.HTTPNotFound(text=f"{name} not found\n")
        return web.FileResponse(path)

    def _write_file(self, package: Package) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / package.file).write_bytes(package.content())

    def _write_indexes(self) -> None:
        packages = self.packages
        index = {"packages": [p.index_entry() for p in packages]}
        _atomic(self.directory / INDEX, json.dumps(index, indent=2).encode())
        catalogs = {CATALOG: self.host, **self._extra_catalogs}
        for name, base in catalogs.items():
            body = build_catalog(packages, base_location=base)
            stem = name.removesuffix(".gz")
            _atomic(self.directory / stem, body)
            _atomic(self.directory / f"{stem}.gz", gzip.compress(body, mtime=0))


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
