"""A stateful fake iDRAC9 for Redfish client tests (httpx.MockTransport).

It answers at the wire like an iDRAC9 does (IDRAC.md): sessions with few
slots, RAC0218, Redfish error bodies, string Retry-After headers, $expand.
No tests here: the test_redfish_* modules import it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from clients.redfish import RedfishClient

BASE = "https://127.10.0.1:8443"
USER, PASSWORD = "root", "s3cret-Pa55word!"
SESSIONS = "/redfish/v1/SessionService/Sessions"
FW = "/redfish/v1/UpdateService/FirmwareInventory"

INVENTORY = [
    ("Installed-25227-7.00.00.174__iDRAC.Embedded.1-1", "7.00.00.174"),
    ("Current-25227-7.00.00.174__iDRAC.Embedded.1-1", "7.00.00.174"),
    ("Previous-25227-6.10.30.00__iDRAC.Embedded.1-1", "6.10.30.00"),
    ("Installed-159-2.19.1__BIOS.Setup.1-1", "2.19.1"),
    ("Current-159-2.19.1__BIOS.Setup.1-1", "2.19.1"),
    ("Installed-27763-1.0.6__CPLD.Embedded.1", "1.0.6"),
    ("Installed-101548-25.5.9.0001__RAID.Integrated.1-1", "25.5.9.0001"),
    ("Installed-104684-22.31.6__NIC.Integrated.1-1-1", "22.31.6"),
    ("Installed-2022-4.35__Enclosure.Internal.0-1:RAID.Integrated.1-1", "4.35"),
    ("Installed-103160-DL64__Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1", "DL64"),
    ("Installed-25.1-00.1D.6E__PSU.Slot.1", "00.1D.6E"),
    ("Installed-28897-7.00.00.174__LC.Embedded.1", "7.00.00.174"),
]


def error_response(status: int, message_id: str, message: str, **headers: str) -> httpx.Response:
    body = {
        "error": {
            "code": "Base.1.12.GeneralError",
            "message": "A general error has occurred. See ExtendedInfo for more information",
            "@Message.ExtendedInfo": [
                {"MessageId": message_id, "Message": message, "Severity": "Critical"}
            ],
        }
    }
    return httpx.Response(status, json=body, headers=headers)


class FakeIdrac:
    """A stateful iDRAC9 at the HTTP level: sessions, resources, inventory, faults."""

    def __init__(
        self,
        *,
        max_sessions: int = 8,
        session_service: bool = True,
        expand: str = "supported",  # "supported" | "refused" (400) | "ignored"
        inventory: bool = True,
        vendor_root: bool = True,
    ) -> None:
        self.max_sessions = max_sessions
        self.session_service = session_service
        self.expand = expand
        self.inventory = inventory
        self.vendor_root = vendor_root
        self.sessions: dict[str, str] = {}  # token -> session id
        self.next_id = 0
        self.logins = 0
        self.log: list[tuple[str, str, str]] = []  # (method, path?query, auth kind)
        self.routes: dict[tuple[str, str], httpx.Response] = {}  # canned answers

    # -- bookkeeping
    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p, _ in self.log if m == method and p.startswith(prefix))

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- wire
    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = request.url.query.decode()
        auth = self._auth_kind(request)
        self.log.append((request.method, path + (f"?{query}" if query else ""), auth))
        canned = self.routes.get((request.method, path))
        if canned is not None:
            return canned
        if request.method == "GET" and path.rstrip("/") == "/redfish/v1":
            return httpx.Response(200, json=self._root())
        if path.startswith("/redfish/v1/SessionService") or path == "/redfish/v1/Sessions":
            return self._sessions(request, path)
        if auth == "none":
            return error_response(401, "Base.1.12.NoValidSession", "no valid session")
        if request.method == "GET":
            return self._get(path, query)
        return error_response(405, "Base.1.12.OperationNotAllowed", "not allowed")

    def _auth_kind(self, request: httpx.Request) -> str:
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            return "token" if token in self.sessions else "none"
        basic = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return "basic" if basic == expected else "none"

    def _root(self) -> dict[str, Any]:
        root: dict[str, Any] = {
            "@odata.id": "/redfish/v1",
            "RedfishVersion": "1.11.0",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "Managers": {"@odata.id": "/redfish/v1/Managers"},
            "UpdateService": {"@odata.id": "/redfish/v1/UpdateService"},
        }
        if self.vendor_root:
            root |= {
                "Product": "Integrated Dell Remote Access Controller",
                "Vendor": "Dell",
                "Oem": {"Dell": {"ServiceTag": "8CYCZ23", "ManagerMACAddress": "d0:94:66:00:01"}},
            }
        if self.session_service:
            root["SessionService"] = {"@odata.id": "/redfish/v1/SessionService"}
            root["Links"] = {"Sessions": {"@odata.id": SESSIONS}}
        return root

    def _sessions(self, request: httpx.Request, path: str) -> httpx.Response:
        if not self.session_service:
            return error_response(404, "Base.1.12.ResourceMissingAtURI", "no such resource")
        if request.method == "POST" and path == SESSIONS:
            self.logins += 1
            creds = json.loads(request.content)
            if creds != {"UserName": USER, "Password": PASSWORD}:
                return error_response(401, "Base.1.12.InsufficientPrivilege", "bad credentials")
            if len(self.sessions) >= self.max_sessions:
                return error_response(
                    503,
                    "IDRAC.2.8.RAC0218",
                    "The maximum number of user sessions is reached.",
                    **{"Retry-After": "30"},
                )
            self.next_id += 1
            token = f"token-{self.next_id}"
            self.sessions[token] = str(self.next_id)
            location = f"{SESSIONS}/{self.next_id}"
            return httpx.Response(
                201,
                json={"@odata.id": location, "Id": str(self.next_id), "UserName": USER},
                headers={"X-Auth-Token": token, "Location": location},
            )
        if request.method == "DELETE" and path.startswith(SESSIONS + "/"):
            token = request.headers.get("X-Auth-Token", "")
            if self.sessions.get(token) != path.rsplit("/", 1)[1]:
                return error_response(401, "Base.1.12.NoValidSession", "no valid session")
            del self.sessions[token]
            return httpx.Response(200, json={})
        return error_response(405, "Base.1.12.OperationNotAllowed", "not allowed")

    def _get(self, path: str, query: str) -> httpx.Response:
        body = self._resource(path, query)
        if isinstance(body, httpx.Response):
            return body
        if body is None:
            return error_response(404, "Base.1.12.ResourceMissingAtURI", f"{path} not found")
        return httpx.Response(200, json=body)

    def _resource(self, path: str, query: str) -> dict[str, Any] | httpx.Response | None:
        def coll(*members: str) -> dict[str, Any]:
            return {"Members": [{"@odata.id": m} for m in members]}

        if path == "/redfish/v1/Systems":
            return coll("/redfish/v1/Systems/System.Embedded.1")
        if path == "/redfish/v1/Systems/System.Embedded.1":
            return {
                "@odata.id": path,
                "Id": "System.Embedded.1",
                "Model": "PowerEdge R640",
                "SKU": "8CYCZ23",
                "SerialNumber": "CNIVC0097M0123",
                "PowerState": "On",
                "Status": {"Health": "OK", "HealthRollup": "OK"},
                "ProcessorSummary": {"Count": 2},
                "MemorySummary": {"TotalSystemMemoryGiB": 192},
            }
        if path == "/redfish/v1/Managers":
            return coll("/redfish/v1/Managers/iDRAC.Embedded.1")
        if path == "/redfish/v1/Managers/iDRAC.Embedded.1":
            return {"@odata.id": path, "Id": "iDRAC.Embedded.1", "FirmwareVersion": "7.00.00.174"}
        if path.startswith(FW) and self.inventory:
            return self._inventory(path, query)
        return None

    def _member(self, member_id: str, version: str) -> dict[str, Any]:
        return {
            "@odata.id": f"{FW}/{member_id}",
            "Id": member_id,
            "Name": member_id.split("__")[1],
            "Version": version,
            "Updateable": not member_id.startswith("Previous"),
        }

    def _inventory(self, path: str, query: str) -> dict[str, Any] | httpx.Response | None:
        by_id = dict(INVENTORY)
        if path == FW:
            if query and self.expand == "refused":
                return error_response(400, "Base.1.12.QueryNotSupported", "no $expand here")
            expanded = bool(query) and self.expand == "supported"
            members = [
                self._member(i, v) if expanded else {"@odata.id": f"{FW}/{i}"} for i, v in INVENTORY
            ]
            return {"@odata.id": FW, "Members": members, "Members@odata.count": len(members)}
        member_id = path.removeprefix(FW + "/")
        return self._member(member_id, by_id[member_id]) if member_id in by_id else None


def client_for(fake: FakeIdrac, **kwargs: Any) -> RedfishClient:
    kwargs.setdefault("username", USER)
    kwargs.setdefault("password", PASSWORD)
    return RedfishClient(base_url=BASE, transport=fake.transport(), **kwargs)
