"""The socket a simulated BMC is reachable on; what is bound follows its faults.

- healthy, slow, failing BMCs: an HTTPS site of the shared aiohttp runner;
- ``hang``: a plain TCP server that accepts and never sends a byte (not even a
  TLS handshake), holding every connection until the lab stops;
- ``not_listening``: nothing bound, so connecting is refused.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Literal

from aiohttp import web

from lab.idrac.state import BmcState
from lab.tls import LabCertificates

Kind = Literal["https", "hang", "none"]
log = logging.getLogger(__name__)


def kind_for(bmc: BmcState) -> Kind:
    """What a BMC's faults require to be bound."""
    if bmc.faults.not_listening or bmc.offline:
        return "none"
    return "hang" if bmc.faults.hang else "https"


class _Held:
    """Connections a hung listener holds; closed for good once the listener is."""

    def __init__(self) -> None:
        self.transports: set[asyncio.BaseTransport] = set()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for transport in list(self.transports):
            transport.close()
        self.transports.clear()


class _HangProtocol(asyncio.Protocol):
    """Accepts a connection and never answers."""

    def __init__(self, bmc: BmcState, held: _Held) -> None:
        self._bmc = bmc
        self._held = held
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._held.closed:
            # Accepted just before the listener closed: do not leak it.
            transport.close()
            return
        self._transport = transport
        self._bmc.hung_connections += 1
        self._held.transports.add(transport)

    def data_received(self, data: bytes) -> None:
        """Swallow whatever the client sends (a TLS ClientHello, a request)."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._held.transports.discard(self._transport)


class BmcListener:
    """Binds and unbinds one BMC's socket.

    Args:
        bmc: The BMC (its ``address``, ``port`` and ``faults`` decide what is bound).
        runner: The shared aiohttp runner serving Redfish.
        certs: Where TLS contexts come from.
        self_signed: Serve a self-signed certificate (factory iDRAC) instead of a CA one.
    """

    def __init__(
        self, bmc: BmcState, *, runner: web.AppRunner, certs: LabCertificates, self_signed: bool
    ) -> None:
        self.bmc = bmc
        self._runner = runner
        self._certs = certs
        self._self_signed = self_signed
        self.kind: Kind | None = None
        self.bound_at: tuple[str, int] | None = None
        self._site: web.SockSite | None = None
        self._hang_server: asyncio.Server | None = None
        self._held = _Held()

    async def bind(self, port: int | None = None) -> int:
        """Bind the BMC's address with what its faults require.

        Args:
            port: Port to bind (0 = any free one); default the BMC's own port.

        Returns:
            The port now assigned to the BMC (also stored in ``bmc.port``).

        Raises:
            OSError: The address/port cannot be bound (in use, not local).
        """
        await self.close()
        kind = kind_for(self.bmc)
        sock = _listen_socket(self.bmc.address, self.bmc.port if port is None else port)
        bound = sock.getsockname()[:2]
        try:
            if kind == "https":
                ctx = self._certs.server_context(self.bmc.address, self_signed=self._self_signed)
                site = web.SockSite(self._runner, sock, ssl_context=ctx, backlog=128)
                await site.start()
                self._site = site
            elif kind == "hang":
                loop = asyncio.get_running_loop()
                self._held = _Held()
                self._hang_server = await loop.create_server(
                    lambda: _HangProtocol(self.bmc, self._held), sock=sock, backlog=128
                )
            else:
                # Not listening: the port was only reserved to learn its number.
                sock.close()
        except BaseException:
            sock.close()
            raise
        self.kind = kind
        self.bound_at = (str(bound[0]), int(bound[1]))
        self.bmc.port = self.bound_at[1]
        return self.bound_at[1]

    async def close(self) -> None:
        """Unbind, and drop connections still open to the old address."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._hang_server is not None:
            self._hang_server.close()
            self._hang_server = None
        self._held.close()
        if self.bound_at is not None and self.kind == "https":
            _drop_connections(self._runner, self.bound_at)
        self.kind = None
        self.bound_at = None


def _listen_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _drop_connections(runner: web.AppRunner, bound_at: tuple[str, int]) -> None:
    server = runner.server
    for handler in list(getattr(server, "connections", []) if server is not None else []):
        transport = getattr(handler, "transport", None)
        if transport is None:
            continue
        sockname = transport.get_extra_info("sockname")
        if sockname is not None and tuple(sockname[:2]) == bound_at:
            transport.close()
