"""An async Redfish client tuned for Dell iDRAC9, usable with any Redfish BMC.

Sessions, error mapping and the generic calls (``get_json``, ``post``,
``delete``) live in :mod:`clients.redfish.session`; this module reads the
resources rackflow needs: system, manager, firmware inventory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clients.errors import AuthError, BusyError, NotFoundError, ProtocolError, RemoteError
from clients.redfish.models import FirmwareComponent, Manager, System, dedupe_inventory
from clients.redfish.session import RedfishSession, path_of

__all__ = ["RedfishClient"]

logger = logging.getLogger("rackflow.clients.redfish")

SYSTEMS_PATH = "/redfish/v1/Systems"
MANAGERS_PATH = "/redfish/v1/Managers"
UPDATE_SERVICE_PATH = "/redfish/v1/UpdateService"
DELL_SYSTEM_ID = "System.Embedded.1"
DELL_MANAGER_ID = "iDRAC.Embedded.1"
EXPAND_QUERY = "?$expand=*($levels=1)"
# Per-member inventory reads in flight at once when $expand is not supported:
# BMC web servers are small; a few parallel GETs help, dozens hurt.
MEMBER_FETCH_CONCURRENCY = 4


class RedfishClient(RedfishSession):
    """Talk Redfish to one BMC; use as ``async with RedfishClient(...) as bmc:``.

    Construction does no I/O and builds no SSL context when ``http_client``
    is given. Leaving the ``async with`` deletes the session and closes the
    httpx client if this object built it.

    Args:
        base_url: ``https://host:port`` of the BMC (no path, no credentials).
        username: BMC user; None for unauthenticated use (service root only).
        password: BMC password. Never logged, never put in an error or repr.
        verify: TLS verification (an ``ssl.SSLContext``, True or False). Only
            used when this client builds its own httpx client.
        timeout: Per-request timeout (applied to every request, shared client too).
        transport: httpx transport for an own client (tests: ``httpx.MockTransport``).
        http_client: A shared ``httpx.AsyncClient``; used as is and NOT closed here.

    Raises:
        PreconditionError: Bad ``base_url``, or both ``transport`` and ``http_client``.
    """

    async def _members(self, collection: str) -> list[str]:
        data = await self.get_json(collection)
        members = data.get("Members")
        if not isinstance(members, list):
            raise ProtocolError(target=self._target(collection), detail="no Members list")
        paths = [m.get("@odata.id") for m in members if isinstance(m, dict)]
        return [p for p in paths if isinstance(p, str)]

    async def _preferred_member(self, collection: str, preferred_id: str) -> dict[str, Any]:
        """GET the preferred member directly on an iDRAC; else pick it from the collection."""
        if self._root is not None and self._root.is_idrac:
            try:
                return await self.get_json(f"{collection.rstrip('/')}/{preferred_id}")
            except NotFoundError:
                pass
        paths = await self._members(collection)
        if not paths:
            raise ProtocolError(target=self._target(collection), detail="collection is empty")
        chosen = next((p for p in paths if p.rstrip("/").endswith(f"/{preferred_id}")), paths[0])
        return await self.get_json(chosen)

    async def system(self) -> System:
        """Read the computer system (``System.Embedded.1`` preferred, else the first).

        Returns:
            Model, service tag (SKU), board serial, BIOS version, power, health, ...

        Raises:
            ProtocolError: No systems, or a malformed one.
            RackflowError: Any error of :meth:`get_json`.
        """
        collection = (self._root and self._root.systems_path) or SYSTEMS_PATH
        data = await self._preferred_member(path_of(collection), DELL_SYSTEM_ID)
        return System.from_redfish(data, target=self._target(path_of(collection)))

    async def manager(self) -> Manager:
        """Read the BMC's manager resource (``iDRAC.Embedded.1`` preferred, else the first).

        Returns:
            The manager's firmware version and model.

        Raises:
            ProtocolError: No managers, or a malformed one.
            RackflowError: Any error of :meth:`get_json`.
        """
        collection = (self._root and self._root.managers_path) or MANAGERS_PATH
        data = await self._preferred_member(path_of(collection), DELL_MANAGER_ID)
        return Manager.from_redfish(data, target=self._target(path_of(collection)))

    async def firmware_inventory(self) -> list[FirmwareComponent]:
        """Read ``UpdateService/FirmwareInventory``.

        Asks for ``$expand=*($levels=1)`` (one request on an iDRAC); when the
        service refuses or ignores it, reads members one by one. ``Current-``
        members duplicating ``Installed-`` ones are dropped.

        Returns:
            The components, in service order; [] when the service has no
            firmware inventory (e.g. the sushy emulator).

        Raises:
            ProtocolError: A malformed collection or member.
            RackflowError: Any other error of :meth:`get_json`.
        """
        update = (self._root and self._root.update_service_path) or UPDATE_SERVICE_PATH
        path = f"{path_of(update).rstrip('/')}/FirmwareInventory"
        try:
            data = await self._expanded(path)
        except NotFoundError:
            return []
        members = data.get("Members")
        if not isinstance(members, list):
            raise ProtocolError(target=self._target(path), detail="no Members list")
        bodies = await self._resolve_members([m for m in members if isinstance(m, dict)])
        components = [FirmwareComponent.from_redfish(b, target=self._target(path)) for b in bodies]
        return dedupe_inventory(components)

    async def _expanded(self, path: str) -> dict[str, Any]:
        try:
            return await self.get_json(path + EXPAND_QUERY)
        except (AuthError, NotFoundError, BusyError):
            raise
        except (RemoteError, ProtocolError) as err:
            # Older firmware answers 400/501 (or garbage) to $expand: read the plain list.
            logger.debug("$expand refused by %s (%s); reading members one by one", self._base, err)
            return await self.get_json(path)

    async def _resolve_members(self, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fetch members that came back as bare links; keep expanded ones as they are."""
        limit = asyncio.Semaphore(MEMBER_FETCH_CONCURRENCY)

        async def resolve(member: dict[str, Any]) -> dict[str, Any] | None:
            if set(member) - {"@odata.id"}:
                return member
            link = member.get("@odata.id")
            if not isinstance(link, str):
                return None
            async with limit:
                try:
                    return await self.get_json(link)
                except NotFoundError:
                    return None  # replaced by an update between list and read

        results = await asyncio.gather(*(resolve(m) for m in members))
        return [r for r in results if r is not None]
