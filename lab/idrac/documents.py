"""Redfish JSON documents of a simulated iDRAC9, rendered from its state.

Shapes follow what iDRAC9 firmware 6.x/7.x returns (Dell OEM extensions
included where clients read them); only fields the project or common tools
read are emitted.
"""

from __future__ import annotations

from typing import Any

from lab.idrac.power import RESET_TYPES
from lab.idrac.state import BmcState, FirmwareEntry, Session
from lab.models import profile_for

SYSTEM_ID = "System.Embedded.1"
MANAGER_ID = "iDRAC.Embedded.1"
V1 = "/redfish/v1"
DELL_OEM = f"{V1}/Managers/{MANAGER_ID}/Oem/Dell"
TRANSFER_PROTOCOLS = ("HTTP", "HTTPS")


def _ref(path: str) -> dict[str, str]:
    return {"@odata.id": path}


def redfish_version(idrac_version: str) -> str:
    """The RedfishVersion an iDRAC9 of this firmware line reports.

    Args:
        idrac_version: iDRAC firmware version, e.g. ``7.00.00.174``.

    Returns:
        The Redfish schema version string.
    """
    major = idrac_version.split(".", 1)[0]
    return {"4": "1.9.0", "5": "1.11.0", "6": "1.15.0"}.get(major, "1.17.0")


def error_body(*, code: str, message: str, severity: str = "Critical") -> dict[str, Any]:
    """A Redfish error body carrying one @Message.ExtendedInfo entry.

    Args:
        code: MessageId, e.g. ``IDRAC.2.8.RAC0218``.
        message: Human-readable message.
        severity: Redfish severity.

    Returns:
        The ``{"error": ...}`` document.
    """
    return {
        "error": {
            "code": code,
            "message": message,
            "@Message.ExtendedInfo": [
                {
                    "@odata.type": "#Message.v1_1_1.Message",
                    "Message": message,
                    "MessageArgs": [],
                    "MessageId": code,
                    "RelatedProperties": [],
                    "Resolution": "Retry the operation or contact the administrator.",
                    "Severity": severity,
                }
            ],
        }
    }


def success_body() -> dict[str, Any]:
    """The body iDRAC sends with a successful DELETE."""
    return {
        "@Message.ExtendedInfo": [
            {
                "Message": "Successfully Completed Request",
                "MessageArgs": [],
                "MessageId": "Base.1.12.Success",
                "Resolution": "None",
                "Severity": "OK",
            }
        ]
    }


def collection(path: str, kind: str, name: str, members: list[str]) -> dict[str, Any]:
    """A Redfish collection of links."""
    return {
        "@odata.context": f"{V1}/$metadata#{kind}.{kind}",
        "@odata.id": path,
        "@odata.type": f"#{kind}.{kind}",
        "Name": name,
        "Members": [_ref(m) for m in members],
        "Members@odata.count": len(members),
    }


def service_root(bmc: BmcState) -> dict[str, Any]:
    """``GET /redfish/v1`` (no authentication needed)."""
    return {
        "@odata.context": f"{V1}/$metadata#ServiceRoot.ServiceRoot",
        "@odata.id": V1,
        "@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot",
        "Id": "RootService",
        "Name": "Root Service",
        "Product": "Integrated Dell Remote Access Controller",
        "Vendor": "Dell",
        "RedfishVersion": redfish_version(bmc.idrac_version),
        "UUID": _service_uuid(bmc),
        "Oem": {
            "Dell": {
                "@odata.type": "#DellServiceRoot.v1_0_0.DellServiceRoot",
                "IsBranded": 0,
                "ManagerMACAddress": bmc.spec.manager_mac,
                "ServiceTag": bmc.service_tag,
            }
        },
        "Links": {"Sessions": _ref(f"{V1}/SessionService/Sessions")},
        "SessionService": _ref(f"{V1}/SessionService"),
        "Systems": _ref(f"{V1}/Systems"),
        "Managers": _ref(f"{V1}/Managers"),
        "UpdateService": _ref(f"{V1}/UpdateService"),
        "ProtocolFeaturesSupported": {
            "ExpandQuery": {
                "ExpandAll": True,
                "Levels": True,
                "Links": True,
                "MaxLevels": 1,
                "NoLinks": True,
            },
            "SelectQuery": False,
        },
    }


def _service_uuid(bmc: BmcState) -> str:
    # The service UUID differs from the system UUID on a real iDRAC.
    sys_uuid = bmc.spec.uuid
    return "3256444f-c0" + sys_uuid[11:]


def session_service(bmc: BmcState) -> dict[str, Any]:
    """``GET /redfish/v1/SessionService``."""
    return {
        "@odata.id": f"{V1}/SessionService",
        "@odata.type": "#SessionService.v1_1_8.SessionService",
        "Id": "SessionService",
        "Name": "Session Service",
        "ServiceEnabled": True,
        "SessionTimeout": int(bmc.sessions.idle_timeout_s),
        "Sessions": _ref(f"{V1}/SessionService/Sessions"),
    }


def session(s: Session) -> dict[str, Any]:
    """One session resource (never the token or password)."""
    return {
        "@odata.id": f"{V1}/SessionService/Sessions/{s.id}",
        "@odata.type": "#Session.v1_3_0.Session",
        "Id": s.id,
        "Name": "User Session",
        "Description": "User Session",
        "UserName": s.username,
        "Password": None,
    }


def system(bmc: BmcState) -> dict[str, Any]:
    """``GET /redfish/v1/Systems/System.Embedded.1``."""
    spec = bmc.spec
    path = f"{V1}/Systems/{SYSTEM_ID}"
    return {
        "@odata.id": path,
        "@odata.type": "#ComputerSystem.v1_12_0.ComputerSystem",
        "Id": SYSTEM_ID,
        "Name": "System",
        "SystemType": "Physical",
        "Manufacturer": "Dell Inc.",
        "Model": spec.model,
        # Dell puts the service tag in SKU; SerialNumber is the board serial.
        "SKU": spec.service_tag,
        "SerialNumber": spec.board_serial,
        "PartNumber": "0" + spec.board_serial[2:8],
        "UUID": spec.uuid,
        "AssetTag": "",
        "HostName": spec.host_name,
        "BiosVersion": bmc.bios_version,
        "PowerState": bmc.power_state,
        "IndicatorLED": "Lit",
        "Status": {"Health": bmc.health, "HealthRollup": bmc.health, "State": "Enabled"},
        "ProcessorSummary": {
            "Count": spec.cpu_count,
            "LogicalProcessorCount": spec.cpu_count * 32,
            "Model": _cpu_model(spec.model),
            "Status": {"Health": "OK", "HealthRollup": "OK", "State": "Enabled"},
        },
        "MemorySummary": {
            "TotalSystemMemoryGiB": spec.memory_gib,
            "MemoryMirroring": "System",
            "Status": {"Health": "OK", "HealthRollup": "OK", "State": "Enabled"},
        },
        "Links": {"ManagedBy": [_ref(f"{V1}/Managers/{MANAGER_ID}")]},
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": f"{path}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
            }
        },
        "Oem": {"Dell": {"DellSystem": {"ChassisServiceTag": spec.service_tag}}},
    }


def _cpu_model(model: str) -> str:
    return profile_for(model).cpu_model


def manager(bmc: BmcState) -> dict[str, Any]:
    """``GET /redfish/v1/Managers/iDRAC.Embedded.1``."""
    generation = profile_for(bmc.spec.model).generation
    return {
        "@odata.id": f"{V1}/Managers/{MANAGER_ID}",
        "@odata.type": "#Manager.v1_9_0.Manager",
        "Id": MANAGER_ID,
        "Name": "Manager",
        "Description": "BMC",
        "ManagerType": "BMC",
        "Model": f"{generation} Monolithic",
        "FirmwareVersion": bmc.idrac_version,
        "UUID": _service_uuid(bmc),
        "Status": {"Health": "OK", "State": "Enabled"},
        "PowerState": "On",
        "Links": {
            "ManagerForServers": [_ref(f"{V1}/Systems/{SYSTEM_ID}")],
            "Oem": {
                "Dell": {
                    "DellJobService": _ref(f"{DELL_OEM}/DellJobService"),
                    "DellLCService": _ref(f"{DELL_OEM}/DellLCService"),
                    "Jobs": _ref(f"{V1}/Managers/{MANAGER_ID}/Jobs"),
                }
            },
        },
    }


def update_service(bmc: BmcState) -> dict[str, Any]:
    """``GET /redfish/v1/UpdateService``."""
    return {
        "@odata.id": f"{V1}/UpdateService",
        "@odata.type": "#UpdateService.v1_8_0.UpdateService",
        "Id": "UpdateService",
        "Name": "Update Service",
        "ServiceEnabled": True,
        "Status": {"Health": "OK", "State": "Enabled"},
        "FirmwareInventory": _ref(f"{V1}/UpdateService/FirmwareInventory"),
        "Actions": {
            "#UpdateService.SimpleUpdate": {
                "target": f"{V1}/UpdateService/Actions/UpdateService.SimpleUpdate",
                "TransferProtocol@Redfish.AllowableValues": list(TRANSFER_PROTOCOLS),
                "@Redfish.OperationApplyTimeSupport": {
                    "@odata.type": "#Settings.v1_3_0.OperationApplyTimeSupport",
                    "SupportedValues": ["Immediate", "OnReset"],
                },
            }
        },
    }


def firmware_inventory(bmc: BmcState, *, expanded: bool) -> dict[str, Any]:
    """``GET /redfish/v1/UpdateService/FirmwareInventory`` (optionally ``$expand``-ed)."""
    path = f"{V1}/UpdateService/FirmwareInventory"
    entries = bmc.firmware_entries()
    doc = collection(
        path,
        "SoftwareInventoryCollection",
        "Firmware Inventory Collection",
        [f"{path}/{e.id}" for e in entries],
    )
    if expanded:
        doc["Members"] = [firmware_member(e) for e in entries]
    return doc


def firmware_member(entry: FirmwareEntry) -> dict[str, Any]:
    """One ``FirmwareInventory/<Id>`` member."""
    c = entry.component
    state = "Enabled" if entry.state in ("Installed", "Current") else "Disabled"
    return {
        "@odata.id": f"{V1}/UpdateService/FirmwareInventory/{entry.id}",
        "@odata.type": "#SoftwareInventory.v1_5_0.SoftwareInventory",
        "Id": entry.id,
        "Name": c.name,
        "Description": "Represents Firmware Inventory",
        "Version": entry.version,
        "SoftwareId": c.component_id,
        "Updateable": c.updateable,
        "ReleaseDate": "00:00:00Z",
        "Status": {"Health": "OK", "State": state},
        "Oem": {
            "Dell": {
                "DellSoftwareInventory": {
                    "ComponentID": c.component_id,
                    "ComponentType": "FRMW" if c.fqdd.split(".")[0] != "BIOS" else "BIOS",
                    "ElementName": c.name,
                    "FQDD": c.fqdd,
                    "Id": f"DCIM:{entry.state.upper()}#{c.component_id}__{c.fqdd}",
                    "Status": entry.state,
                    "VersionString": entry.version,
                }
            }
        },
    }
