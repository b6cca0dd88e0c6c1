"""The asynchronous core of the lab: state models, listeners and admin API on one loop.

:class:`LabCore` runs inside whatever event loop starts it (the background
thread of :class:`lab.server.Lab`, or :func:`lab.server.serve` in the
foreground). Every method must be called on that loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from clients.errors import PreconditionError
from lab.admin import build_admin_app
from lab.clock import LabClock
from lab.fleet import Faults, FleetSpec, check_loopback
from lab.idrac.redfish import build_app
from lab.idrac.state import BmcState
from lab.listeners import BmcListener, kind_for
from lab.repository import FirmwareRepository
from lab.tls import LabCertificates

log = logging.getLogger(__name__)
_PORT_ATTEMPTS = 20


class LabCore:
    """Every simulated BMC of a fleet, served from the running event loop.

    Args:
        fleet: The fleet to simulate.
        state_dir: Where certificates (and later device state) are kept.
        repository: A firmware repository to serve on the same loop, if any.
    """

    def __init__(
        self, *, fleet: FleetSpec, state_dir: Path, repository: FirmwareRepository | None = None
    ) -> None:
        self.fleet = fleet
        self.repository = repository
        self.state_dir = Path(state_dir)
        self.clock = LabClock(speed=fleet.speed)
        self.certs = LabCertificates(directory=self.state_dir / "tls")
        self.bmcs = [
            BmcState(
                spec=spec,
                clock=self.clock,
                username=spec.username or fleet.username,
                password=spec.password or fleet.password,
                max_sessions=fleet.max_sessions,
                durations=fleet.durations,
            )
            for spec in fleet.bmcs
        ]
        for bmc in self.bmcs:
            bmc.relisten = self._relisten_hook(bmc)
            bmc.fetch = self.fetch
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._admin: web.AppRunner | None = None
        self._listeners: dict[int, BmcListener] = {}
        self.admin_url = ""
        self.startup_s = 0.0

    async def start(self) -> None:
        """Create certificates, bind every BMC and the admin API.

        Raises:
            OSError: A BMC address could not be bound.
        """
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.certs.ensure()
        # The iDRACs' own HTTP client (they download packages and catalogs).
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._runner = web.AppRunner(
            build_app(self.resolve), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        for bmc in self.bmcs:
            self._listeners[id(bmc)] = BmcListener(
                bmc,
                runner=self._runner,
                certs=self.certs,
                self_signed=self.fleet.tls == "self-signed",
            )
        try:
            await self._bind_all()
            self._admin = web.AppRunner(build_admin_app(self), access_log=None)
            await self._admin.setup()
            site = web.TCPSite(self._admin, "127.0.0.1", 0)
            await site.start()
            port = self._admin.addresses[0][1]
            self.admin_url = f"http://127.0.0.1:{port}"
            if self.repository is not None:
                await self.repository.start()
            self.startup_s = time.monotonic() - started
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Cancel device work, unbind everything and drop open connections."""
        work = [t for bmc in self.bmcs for t in bmc.background if not t.done()]
        for task in work:
            task.cancel()
        if work:
            await asyncio.gather(*work, return_exceptions=True)
        for listener in self._listeners.values():
            await listener.close()
        if self.repository is not None:
            await self.repository.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _bind_all(self) -> None:
        if self.fleet.single_host or self.fleet.port != 0:
            for bmc in self.bmcs:
                await self._listeners[id(bmc)].bind()
            return
        # Port 0: one free port shared by every address. Another process may
        # hold it on a later address, so start over with a new port then.
        zero = [b for b in self.bmcs if b.port == 0]
        fixed = [b for b in self.bmcs if b.port != 0]
        for bmc in fixed:
            await self._listeners[id(bmc)].bind()
        for attempt in range(_PORT_ATTEMPTS):
            try:
                port = 0
                for bmc in zero:
                    port = await self._listeners[id(bmc)].bind(port)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == _PORT_ATTEMPTS - 1:
                    raise
                log.debug("shared port collided, retrying (attempt %d)", attempt + 1)
                for bmc in zero:
                    await self._listeners[id(bmc)].close()
                    bmc.port = 0

    def _relisten_hook(self, bmc: BmcState) -> Callable[[], Awaitable[None]]:
        async def relisten() -> None:
            listener = self._listeners.get(id(bmc))
            if listener is None or listener.kind == kind_for(bmc):
                return
            try:
                await listener.bind(bmc.port)
            except OSError:
                log.warning("%s: cannot rebind after an iDRAC reset", bmc.key, exc_info=True)

        return relisten

    async def fetch(self, url: str) -> bytes:
        """Download a URL as an iDRAC does (callers check it is loopback).

        Args:
            url: HTTP(S) URL.

        Returns:
            The body.

        Raises:
            OSError: Connection failure or a non-200 answer.
        """
        if self._http is None:
            raise OSError("lab is not running")
        try:
            # iDRACs do not verify repository certificates unless told to.
            async with self._http.get(url, ssl=False) as resp:
                if resp.status != 200:
                    raise OSError(f"HTTP {resp.status} for {url}")
                return await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise OSError(f"{url}: {exc!r}") from exc

    def resolve(self, address: str, port: int) -> BmcState | None:
        """The BMC served at a local (address, port), if any."""
        for bmc in self.bmcs:
            listener = self._listeners.get(id(bmc))
            if listener is not None and listener.bound_at == (address, port):
                return bmc
        return None

    def find(self, address: str, port: int | None = None) -> BmcState:
        """Find a BMC by its current address (and port).

        Args:
            address: Current address, or ``address:port``.
            port: Port, needed when several BMCs share the address (single-host mode).

        Returns:
            The BMC.

        Raises:
            PreconditionError: No BMC, or several, match.
        """
        if port is None and address.count(":") == 1:
            address, _, port_text = address.partition(":")
            port = int(port_text)
        found = [b for b in self.bmcs if b.address == address and port in (None, b.port)]
        if len(found) != 1:
            what = "no BMC" if not found else f"{len(found)} BMCs (give the port)"
            where = f"{address}:{port}" if port is not None else address
            raise PreconditionError(subject=where, reason=f"{what} at this address")
        return found[0]

    async def move(self, bmc: BmcState, new_address: str, new_port: int | None = None) -> None:
        """Serve a BMC at another address: the old one refuses, the new one answers.

        Args:
            bmc: The BMC to move (keeps identity, sessions and state).
            new_address: New loopback address.
            new_port: New port (default: keep the port).

        Raises:
            PreconditionError: The new address is not loopback or already taken.
        """
        port = bmc.port if new_port is None else new_port
        try:
            new_address = check_loopback(new_address)  # same rule as the fleet file
        except ValueError as exc:
            raise PreconditionError(subject=new_address, reason=str(exc)) from exc
        if any(b is not bmc and b.address == new_address and b.port == port for b in self.bmcs):
            raise PreconditionError(
                subject=f"{new_address}:{port}", reason="another BMC is served there"
            )
        listener = self._listeners[id(bmc)]
        old_address, old_port = bmc.address, bmc.port
        await listener.close()
        bmc.address = new_address
        try:
            await listener.bind(port)
        except OSError as exc:
            bmc.address, bmc.port = old_address, old_port
            await listener.bind(old_port)
            raise PreconditionError(
                subject=f"{new_address}:{port}", reason=f"cannot bind: {exc}"
            ) from exc

    async def set_faults(self, bmc: BmcState, faults: Faults) -> None:
        """Change a BMC's faults, rebinding when hang / not_listening changed.

        Args:
            bmc: The BMC.
            faults: Its new faults (replacing the old ones).
        """
        bmc.faults = faults
        listener = self._listeners[id(bmc)]
        if listener.kind != kind_for(bmc):
            await listener.bind(bmc.port)

    def request_counts(self) -> dict[str, dict[str, int]]:
        """Requests seen per BMC (``addr:port``) and endpoint (``GET /redfish/v1/...``)."""
        return {bmc.key: dict(bmc.requests) for bmc in self.bmcs}
