"""Start a simulated iDRAC fleet: in a background thread (:class:`Lab`) or in the foreground.

.. code-block:: python

    with Lab(fleet=FleetSpec.generate(count=4, port=0), state_dir=tmp, repository=True) as lab:
        httpx.get(f"https://{lab.bmcs[0].key}/redfish/v1",
                  verify=ssl.create_default_context(cafile=lab.ca_path))
        lab.repository.url(lab.repository.package_for("R640", "bios").file)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from lab.clock import LabClock
from lab.core import LabCore
from lab.dup import default_packages
from lab.fleet import Faults, FleetSpec
from lab.idrac.state import BmcState
from lab.loop_thread import LoopThread
from lab.repository import FirmwareRepository

T = TypeVar("T")


class Lab:
    """A simulated fleet served from a background thread with its own event loop.

    Args:
        fleet: The fleet to simulate.
        state_dir: Where the lab keeps its CA and certificates (created).
        repository: Also serve a firmware repository: True for one with
            :func:`lab.dup.default_packages` of the fleet (files under
            ``state_dir/repository``), or a :class:`FirmwareRepository` of your own.
    """

    def __init__(
        self,
        *,
        fleet: FleetSpec,
        state_dir: Path,
        repository: bool | FirmwareRepository = False,
    ) -> None:
        self.fleet = fleet
        self.state_dir = Path(state_dir)
        self._core = LabCore(
            fleet=fleet,
            state_dir=self.state_dir,
            repository=make_repository(repository, fleet=fleet, state_dir=self.state_dir),
        )
        self._runner = LoopThread(name="rackflow-lab", start=self._core.start, stop=self._core.stop)

    @property
    def ca_path(self) -> Path:
        """PEM file of the lab CA (verify BMC certificates against it in ``ca`` mode)."""
        return self._core.certs.ca_path

    @property
    def admin_url(self) -> str:
        """Base URL of the admin API (``http://127.0.0.1:<port>``); empty until started."""
        return self._core.admin_url

    @property
    def clock(self) -> LabClock:
        """The lab clock (``now()`` in lab seconds, ``speed``)."""
        return self._core.clock

    @property
    def repository(self) -> FirmwareRepository | None:
        """The firmware repository served with the lab, if any (``base_url`` once started)."""
        return self._core.repository

    @property
    def bmcs(self) -> list[BmcState]:
        """Every BMC's state, in fleet order (``key`` is its live ``addr:port``)."""
        return list(self._core.bmcs)

    def start(self) -> None:
        """Start serving; returns once every BMC is bound.

        Raises:
            RuntimeError: Already started.
            OSError: An address could not be bound (the lab is stopped again).
            TimeoutError: Binding took longer than two minutes.
        """
        self._runner.run()

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        self._runner.shutdown()

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def bmc(self, address: str, port: int | None = None) -> BmcState:
        """Find a BMC by its current address (``addr`` or ``addr:port``).

        Args:
            address: Current address of the BMC.
            port: Needed when several BMCs share an address (single-host mode).

        Returns:
            The BMC's state.

        Raises:
            PreconditionError: No BMC, or more than one, at that address.
        """
        return self._core.find(address, port)

    def move_bmc(
        self,
        old_address: str,
        new_address: str,
        *,
        port: int | None = None,
        new_port: int | None = None,
    ) -> None:
        """Serve a BMC at a new address: same identity and state, the old address refuses.

        Args:
            old_address: Where the BMC is now (``addr`` or ``addr:port``).
            new_address: Where it will answer.
            port: Current port, if the address is ambiguous.
            new_port: New port (default: unchanged).

        Raises:
            PreconditionError: Unknown BMC, or the new address is taken or not loopback.
        """
        bmc = self._core.find(old_address, port)
        self._call(lambda: self._core.move(bmc, new_address, new_port))

    def set_faults(self, address: str, faults: Faults, *, port: int | None = None) -> None:
        """Replace a BMC's faults (rebinding for hang / not_listening).

        Args:
            address: Current address of the BMC (``addr`` or ``addr:port``).
            faults: The new faults.
            port: Current port, if the address is ambiguous.

        Raises:
            PreconditionError: Unknown BMC.
        """
        bmc = self._core.find(address, port)
        self._call(lambda: self._core.set_faults(bmc, faults))

    def request_counts(self) -> dict[str, dict[str, int]]:
        """Requests received per BMC ``addr:port`` and endpoint (``GET /redfish/v1/Systems/{id}``).

        Returns:
            A snapshot of the counters.
        """

        async def snapshot() -> dict[str, dict[str, int]]:
            return self._core.request_counts()

        return self._call(snapshot)

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the lab loop and wait for its result (lab state is loop-owned).

        Args:
            make: Builds the coroutine, e.g. ``lambda: some_async(lab.bmcs[0])``.

        Returns:
            Its result.
        """
        return self._call(make)

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._runner.call(make)


def make_repository(
    repository: bool | FirmwareRepository, *, fleet: FleetSpec, state_dir: Path, port: int = 0
) -> FirmwareRepository | None:
    """Resolve the ``repository`` argument of :class:`Lab` / :func:`serve`.

    Args:
        repository: False (none), True (default packages of the fleet) or a repository.
        fleet: The fleet (its installed versions give the default targets).
        state_dir: Lab state directory (files go under ``repository/``).
        port: Port of a default repository (0 = any free port).

    Returns:
        The repository, or None.
    """
    if isinstance(repository, FirmwareRepository):
        return repository
    if not repository:
        return None
    return FirmwareRepository(
        packages=default_packages(fleet), state_dir=Path(state_dir) / "repository", port=port
    )


async def serve(
    fleet: FleetSpec,
    state_dir: Path,
    ready: Callable[[LabCore], None] | None = None,
    *,
    repository: bool | FirmwareRepository = True,
    repository_port: int = 0,
) -> None:
    """Serve a fleet (and a firmware repository) on the running loop until cancelled.

    Args:
        fleet: The fleet.
        state_dir: Certificates directory root.
        ready: Called with the started core once every BMC is bound.
        repository: Serve a firmware repository (see :class:`Lab`).
        repository_port: Port of the default repository (0 = any free port).
    """
    repo = make_repository(repository, fleet=fleet, state_dir=state_dir, port=repository_port)
    core = LabCore(fleet=fleet, state_dir=Path(state_dir), repository=repo)
    await core.start()
    try:
        if ready is not None:
            ready(core)
        await asyncio.Event().wait()
    finally:
        await core.stop()
