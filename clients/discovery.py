"""Find Redfish BMCs on a set of addresses, fast and with bounded sockets.

Per address: a TCP connect (cheap: most addresses of a datacenter range do
not answer, and a bare connect costs far less than an HTTP client), then an
unauthenticated ``GET /redfish/v1`` to recognise a Redfish service and
fingerprint it, then authenticated reads of the System, the Manager and the
firmware inventory over one session that is always logged out.

Addresses that refuse, time out or are not Redfish are outcomes, not
errors: the caller counts them. Every wait is bounded by the connect and
read timeouts, so a BMC that accepts and never answers costs at most those.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum

import httpx
from pydantic import BaseModel

from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    ProtocolError,
    RackflowError,
    RemoteError,
    ServerError,
    TlsError,
    TransportError,
)
from clients.inventory import FirmwareObservation, ServerObservation, ServerStatus
from clients.redfish import RedfishClient, ServiceRoot


class ProbeOutcome(StrEnum):
    """What one address turned out to be."""

    FOUND = "found"
    AUTH_FAILED = "auth-failed"
    NOT_REDFISH = "not-redfish"
    NO_ANSWER = "no-answer"
    TLS_ERROR = "tls-error"
    ERROR = "error"


class ProbeResult(BaseModel):
    """The outcome of probing one (address, port)."""

    address: str
    port: int
    outcome: ProbeOutcome
    observation: ServerObservation | None = None
    detail: str | None = None
    retryable: bool = False
    elapsed_s: float = 0.0


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards ``wanted`` (never above the hard limit).

    Args:
        wanted: File descriptors the scan needs (sockets in flight plus headroom).

    Returns:
        The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


async def tcp_connect(address: str, port: int, *, timeout: float) -> str | None:
    """Try a TCP connection.

    Args:
        address: IPv4 address.
        port: TCP port.
        timeout: Seconds before giving up.

    Returns:
        None when the port accepted, else a short reason ("refused", "timeout", ...).
    """
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:  # EMFILE: out of descriptors is this address's outcome, not a crash
        return exc.strerror or type(exc).__name__
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (address, port))
        return None
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    finally:
        sock.close()


def _observation_from_root(
    address: str, port: int, root: ServiceRoot, status: ServerStatus
) -> ServerObservation:
    return ServerObservation(
        bmc_address=address,
        bmc_port=port,
        status=status,
        seen_at=datetime.now(UTC),
        service_tag=root.service_tag,
        vendor=root.vendor,
        product=root.product,
        redfish_version=root.redfish_version,
        uuid=root.uuid,
    )


async def _read_identity(
    bmc: RedfishClient, base: ServerObservation, *, read_firmware: bool
) -> ServerObservation:
    system = await bmc.system()
    manager = await bmc.manager()
    firmware: list[FirmwareObservation] = []
    if read_firmware:
        firmware = [
            FirmwareObservation(
                fqdd=c.fqdd,
                component_id=c.component_id,
                kind=str(c.kind),
                name=c.name,
                version=c.version,
                updateable=c.updateable,
            )
            for c in await bmc.firmware_inventory()
            if c.state in (None, "Installed")
        ]
    return base.model_copy(
        update={
            "status": ServerStatus.ONLINE,
            "service_tag": system.service_tag or base.service_tag,
            "vendor": base.vendor or system.manufacturer,
            "model": system.model,
            "serial": system.serial_number,
            "uuid": system.uuid or base.uuid,
            "bios_version": system.bios_version,
            "bmc_firmware_version": manager.firmware_version,
            "bmc_model": manager.model,
            "power_state": system.power_state,
            "health": system.health_rollup or system.health,
            "host_name": system.host_name,
            "cpu_count": system.cpu_count,
            "memory_gib": system.memory_gib,
            "firmware": firmware,
        }
    )


class Scanner:
    """Probe many addresses with bounded concurrency over one shared HTTP client.

    Args:
        username: BMC user for the authenticated reads.
        password: BMC password (kept in memory only; never logged).
        verify: TLS verification for httpx (an SSLContext, or False).
        connect_timeout: Seconds for TCP connect and TLS set-up.
        read_timeout: Seconds for each HTTP answer.
        concurrency: Addresses probed at once (sockets in flight).
        known: (address, port) -> service tag already in the inventory; when the
            unauthenticated root shows the same tag, the authenticated reads are
            skipped (``refresh=False`` in the flow).
        read_firmware: Also read the firmware inventory of each BMC found.
    """

    def __init__(
        self,
        *,
        username: str,
        password: str,
        verify: ssl.SSLContext | bool,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        concurrency: int = 256,
        known: Mapping[tuple[str, int], str] | None = None,
        read_firmware: bool = True,
    ) -> None:
        self._username = username
        self._password = password
        self._verify = verify
        self._connect_timeout = connect_timeout
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None
        )
        self._concurrency = max(1, concurrency)
        self._known = dict(known or {})
        self._read_firmware = read_firmware
        self.requests_made = 0

    async def scan(self, endpoints: Sequence[tuple[str, int]]) -> list[ProbeResult]:
        """Probe every endpoint.

        Args:
            endpoints: (address, port) pairs.

        Returns:
            One result per endpoint, in the same order.
        """
        raise_fd_limit(self._concurrency * 2 + 256)
        limits = httpx.Limits(
            max_connections=self._concurrency, max_keepalive_connections=self._concurrency
        )
        sem = asyncio.Semaphore(self._concurrency)
        async with httpx.AsyncClient(
            verify=self._verify, timeout=self._timeout, limits=limits
        ) as http:

            async def one(address: str, port: int) -> ProbeResult:
                async with sem:
                    return await self.probe(address, port, http=http)

            return list(await asyncio.gather(*(one(a, p) for a, p in endpoints)))

    async def probe(self, address: str, port: int, *, http: httpx.AsyncClient) -> ProbeResult:
        """Probe one endpoint (TCP, then the service root, then authenticated reads).

        Args:
            address: IPv4 address.
            port: HTTPS port.
            http: The shared HTTP client.

        Returns:
            The outcome; never raises for what the address did.
        """
        started = time.monotonic()
        result = await self._probe(address, port, http)
        result.elapsed_s = round(time.monotonic() - started, 3)
        return result

    async def _probe(self, address: str, port: int, http: httpx.AsyncClient) -> ProbeResult:
        refused = await tcp_connect(address, port, timeout=self._connect_timeout)
        if refused is not None:
            return ProbeResult(
                address=address, port=port, outcome=ProbeOutcome.NO_ANSWER, detail=refused
            )
        bmc = RedfishClient(
            base_url=f"https://{address}:{port}",
            username=self._username,
            password=self._password,
            http_client=http,
            timeout=self._timeout,
        )
        try:
            root = await bmc.service_root()
        except RackflowError as exc:
            self.requests_made += bmc.requests_made
            return self._root_failure(address, port, exc)
        if not root.redfish_version:
            self.requests_made += bmc.requests_made
            return ProbeResult(
                address=address,
                port=port,
                outcome=ProbeOutcome.NOT_REDFISH,
                detail="service root has no RedfishVersion",
            )
        base = _observation_from_root(address, port, root, ServerStatus.ONLINE)
        if root.service_tag and self._known.get((address, port)) == root.service_tag:
            self.requests_made += bmc.requests_made
            return ProbeResult(
                address=address, port=port, outcome=ProbeOutcome.FOUND, observation=base
            )
        # The same client goes on: it knows from the root whether the service has
        # sessions (sushy-tools has none and answers 401 to a session POST).
        try:
            return await self._authenticated(bmc, address, port, base)
        finally:
            self.requests_made += bmc.requests_made

    async def _authenticated(
        self, bmc: RedfishClient, address: str, port: int, base: ServerObservation
    ) -> ProbeResult:
        try:
            async with bmc:
                obs = await _read_identity(bmc, base, read_firmware=self._read_firmware)
        except AuthError as exc:
            failed = base.model_copy(update={"status": ServerStatus.AUTH_FAILED})
            return ProbeResult(
                address=address,
                port=port,
                outcome=ProbeOutcome.AUTH_FAILED,
                observation=failed,
                detail=str(exc),
            )
        except RackflowError as exc:
            return ProbeResult(
                address=address,
                port=port,
                outcome=ProbeOutcome.ERROR,
                observation=base,
                detail=str(exc),
                retryable=exc.retryable or isinstance(exc, BusyError | ServerError),
            )
        return ProbeResult(address=address, port=port, outcome=ProbeOutcome.FOUND, observation=obs)

    @staticmethod
    def _root_failure(address: str, port: int, exc: RackflowError) -> ProbeResult:
        outcome = ProbeOutcome.ERROR
        retryable = False
        if isinstance(exc, TlsError):
            outcome = ProbeOutcome.TLS_ERROR
        elif isinstance(exc, TransportError):
            outcome = ProbeOutcome.NO_ANSWER
        elif isinstance(exc, BusyError | ServerError):
            retryable = True
        elif isinstance(exc, NotFoundError | AuthError | ProtocolError | RemoteError):
            outcome = ProbeOutcome.NOT_REDFISH
        return ProbeResult(
            address=address, port=port, outcome=outcome, detail=str(exc), retryable=retryable
        )
