"""The state model of one simulated iDRAC9, independent of any protocol.

:class:`BmcState` holds what the device knows (identity, power, firmware,
sessions) and what the lab observed (requests per endpoint, connections held
by a hung listener). Protocol front-ends (``lab.idrac.redfish``) read and
change it; they never keep device state of their own. Time comes from the
shared :class:`~lab.clock.LabClock`, so later additions (firmware jobs
walking through Dell JobStates, reboots) progress in lab time.

Errors are the project's own (``clients.errors``): the front-end turns a
``RemoteError`` into the matching Redfish error response.

All methods run on the lab's event loop thread.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import random
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from clients.errors import AuthError, BusyError
from lab.clock import LabClock
from lab.fleet import BmcSpec, Component, Faults
from lab.idrac.jobs import JobQueue
from lab.settings import Durations

SESSION_IDLE_TIMEOUT_S = 30 * 60
MSG_NO_SESSION = "Base.1.12.NoValidSession"
MSG_ACCESS_DENIED = "Base.1.12.AccessDenied"
MSG_SESSION_LIMIT = "IDRAC.2.8.RAC0218"


@dataclass
class Session:
    """One Redfish session (an X-Auth-Token)."""

    id: str
    token: str = field(repr=False)
    username: str
    created: float
    last_used: float


class SessionTable:
    """Session slots of one iDRAC: a hard limit, idle expiry in lab time.

    Args:
        clock: The lab clock.
        max_sessions: Slots (an iDRAC9 has 8).
        idle_timeout_s: Lab seconds after which an unused session expires.
    """

    def __init__(
        self, *, clock: LabClock, max_sessions: int, idle_timeout_s: float = SESSION_IDLE_TIMEOUT_S
    ) -> None:
        self._clock = clock
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self._by_id: dict[str, Session] = {}
        # iDRAC session ids are small increasing integers.
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        self._expire()
        return len(self._by_id)

    def create(self, username: str) -> Session:
        """Open a session.

        Args:
            username: Who logged in.

        Returns:
            The new session.

        Raises:
            BusyError: Every slot is taken (503, RAC0218).
        """
        self._expire()
        if len(self._by_id) >= self.max_sessions:
            raise BusyError(
                status=503,
                code=MSG_SESSION_LIMIT,
                message="The maximum number of user sessions is reached.",
            )
        now = self._clock.now()
        session = Session(
            id=str(next(self._ids)),
            token=secrets.token_hex(16),
            username=username,
            created=now,
            last_used=now,
        )
        self._by_id[session.id] = session
        return session

    def by_token(self, token: str) -> Session | None:
        """Find a live session by token and mark it used.

        Args:
            token: The X-Auth-Token value.

        Returns:
            The session, or None if unknown or expired.
        """
        self._expire()
        for session in self._by_id.values():
            if hmac.compare_digest(session.token, token):
                session.last_used = self._clock.now()
                return session
        return None

    def get(self, session_id: str) -> Session | None:
        """Find a live session by id."""
        self._expire()
        return self._by_id.get(session_id)

    def delete(self, session_id: str) -> bool:
        """Close a session, freeing its slot.

        Returns:
            Whether the session existed.
        """
        return self._by_id.pop(session_id, None) is not None

    def ids(self) -> list[str]:
        """Ids of the live sessions."""
        self._expire()
        return list(self._by_id)

    def clear(self) -> None:
        """Drop every session (the iDRAC restarted)."""
        self._by_id.clear()

    def _expire(self) -> None:
        limit = self._clock.now() - self.idle_timeout_s
        for sid in [s.id for s in self._by_id.values() if s.last_used < limit]:
            del self._by_id[sid]


@dataclass
class FirmwareEntry:
    """One FirmwareInventory member (``Installed-159-2.19.1__BIOS.Setup.1-1``)."""

    state: str
    component: Component

    @property
    def version(self) -> str:
        """The version this entry reports."""
        if self.state == "Previous" and self.component.previous_version:
            return self.component.previous_version
        return self.component.version

    @property
    def id(self) -> str:
        """The Dell member Id; it changes with every update."""
        c = self.component
        return f"{self.state}-{c.component_id}-{self.version}__{c.fqdd}"


class BmcState:
    """One simulated iDRAC and its server.

    Args:
        spec: The configured identity and faults.
        clock: The lab clock.
        username: Account accepted by this BMC.
        password: Its password.
        max_sessions: Session slots.
    """

    def __init__(
        self,
        *,
        spec: BmcSpec,
        clock: LabClock,
        username: str,
        password: str,
        max_sessions: int,
        durations: Durations | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.address = spec.address
        self.port = spec.port
        self.faults: Faults = spec.faults
        self.power_state: str = spec.power_state
        self.health: str = spec.health
        self.components: list[Component] = list(spec.components)
        self.sessions = SessionTable(clock=clock, max_sessions=max_sessions)
        self.requests: Counter[str] = Counter()
        self.unavailable_answers = 0  # 503s served while busy (starting up, busy_503_s)
        self.hung_connections = 0
        self.rng = random.Random(spec.service_tag)
        self._username = username
        self._password = password
        self.durations = durations or Durations()
        self.jobs = JobQueue(rng=random.Random(f"jobs:{spec.service_tag}"))
        #: OutOfPOST (host up), InPOST (booting/applying updates) or PoweredOff.
        self.server_status = "OutOfPOST" if spec.power_state == "On" else "PoweredOff"
        #: The iDRAC is restarting: nothing listens (see ``lab.listeners.kind_for``).
        self.offline = False
        #: Lab time until which every request is answered 503.
        self.busy_until = 0.0
        #: The running power transition (shutdown/reboot/boot), if any.
        self.power_task: asyncio.Task[Any] | None = None
        #: Updates found by the last InstallFromRepository (None: none ran yet).
        self.repo_updates: list[dict[str, Any]] | None = None
        #: Set by the lab core: rebind the listener after ``offline`` changed.
        self.relisten: Callable[[], Awaitable[None]] | None = None
        #: Set by the lab core: download a URL (loopback only) -> bytes.
        self.fetch: Callable[[str], Awaitable[bytes]] | None = None
        self.background: set[asyncio.Task[Any]] = set()

    @property
    def key(self) -> str:
        """``address:port`` where the BMC is served now."""
        return f"{self.address}:{self.port}"

    @property
    def service_tag(self) -> str:
        """The server's service tag."""
        return self.spec.service_tag

    def check_credentials(self, username: str, password: str) -> bool:
        """Tell whether a username/password pair is accepted right now.

        Args:
            username: Offered user name.
            password: Offered password.

        Returns:
            True when they match and no auth failure is injected.
        """
        if self.faults.auth_failure:
            return False
        user_ok = hmac.compare_digest(username.encode(), self._username.encode())
        pass_ok = hmac.compare_digest(password.encode(), self._password.encode())
        return user_ok and pass_ok

    def login(self, username: str, password: str) -> Session:
        """Create a session for valid credentials.

        Args:
            username: Offered user name.
            password: Offered password.

        Returns:
            The new session.

        Raises:
            AuthError: Wrong credentials (401).
            BusyError: No free session slot (503, RAC0218).
        """
        if not self.check_credentials(username, password):
            raise AuthError(
                status=401,
                code=MSG_ACCESS_DENIED,
                message="While attempting to establish a connection to "
                "/redfish/v1/SessionService/Sessions, the service denied access.",
            )
        return self.sessions.create(username)

    def authenticate(
        self, *, token: str | None = None, basic: tuple[str, str] | None = None
    ) -> str:
        """Check a request's credentials.

        Args:
            token: X-Auth-Token header value, if any.
            basic: (username, password) from Basic auth, if any.

        Returns:
            The authenticated user name.

        Raises:
            AuthError: No valid session or credentials (401).
        """
        if token is not None:
            session = self.sessions.by_token(token)
            if session is not None and not self.faults.auth_failure:
                return session.username
        elif basic is not None and self.check_credentials(*basic):
            return basic[0]
        raise AuthError(
            status=401,
            code=MSG_NO_SESSION,
            message="There is no valid session established with the implementation.",
        )

    def component(self, fqdd: str) -> Component | None:
        """Find an installed component by FQDD."""
        return next((c for c in self.components if c.fqdd == fqdd), None)

    @property
    def bios_version(self) -> str:
        """Installed BIOS version (from the BIOS component when present)."""
        bios = self.component("BIOS.Setup.1-1")
        return bios.version if bios else self.spec.bios_version

    @property
    def idrac_version(self) -> str:
        """Installed iDRAC firmware version."""
        idrac = self.component("iDRAC.Embedded.1-1")
        return idrac.version if idrac else self.spec.idrac_version

    @property
    def transitioning(self) -> bool:
        """Whether a power transition (shutdown, reboot, boot) is under way."""
        return self.power_task is not None and not self.power_task.done()

    @property
    def busy(self) -> bool:
        """Whether requests are answered 503 right now."""
        return self.clock.now() < self.busy_until

    def install(self, fqdd: str, version: str) -> None:
        """Install a firmware version: the old one becomes ``Previous-``.

        Args:
            fqdd: The component's FQDD.
            version: The new version.
        """
        for i, comp in enumerate(self.components):
            if comp.fqdd == fqdd and comp.version != version:
                self.components[i] = comp.model_copy(
                    update={"version": version, "previous_version": comp.version}
                )
        if fqdd.startswith("iDRAC."):
            # The Lifecycle Controller is versioned with the iDRAC firmware.
            self.install("LC.Embedded.1", version)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run background work of this BMC on the lab loop, keeping a reference.

        Args:
            coro: The coroutine.

        Returns:
            Its task.
        """
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def firmware_entries(self) -> list[FirmwareEntry]:
        """The FirmwareInventory members, in the order an iDRAC lists them.

        Returns:
            ``Installed-`` entries, a ``Current-`` duplicate of each (as Dell
            does), then ``Previous-`` entries for components with a previous
            version.
        """
        installed = [FirmwareEntry("Installed", c) for c in self.components]
        current = [FirmwareEntry("Current", c) for c in self.components]
        previous = [
            FirmwareEntry("Previous", c) for c in self.components if c.previous_version is not None
        ]
        return [*installed, *current, *previous]

    def firmware_entry(self, entry_id: str) -> FirmwareEntry | None:
        """Find a FirmwareInventory member by its Id."""
        return next((e for e in self.firmware_entries() if e.id == entry_id), None)

    def snapshot(self) -> dict[str, Any]:
        """Plain data about this BMC for the admin API (no secrets).

        Returns:
            Identity, live state, faults and observation counters.
        """
        return {
            "address": self.address,
            "port": self.port,
            "service_tag": self.service_tag,
            "model": self.spec.model,
            "power_state": self.power_state,
            "health": self.health,
            "bios_version": self.bios_version,
            "idrac_version": self.idrac_version,
            "server_status": self.server_status,
            "offline": self.offline,
            "pending_jobs": len(self.jobs.pending()),
            "jobs": len(self.jobs.all()),
            "faults": self.faults.model_dump(),
            "sessions": len(self.sessions),
            "requests": sum(self.requests.values()),
            "hung_connections": self.hung_connections,
        }
