"""Redfish client for Dell iDRAC9 and other BMCs.

``RedfishClient`` talks to one BMC; the models are frozen pydantic views of
the resources it reads. See IDRAC.md for the behaviour this copes with.
"""

from clients.redfish.client import RedfishClient
from clients.redfish.models import (
    ComponentKind,
    FirmwareComponent,
    Manager,
    ServiceRoot,
    System,
    classify_component,
)

__all__ = [
    "ComponentKind",
    "FirmwareComponent",
    "Manager",
    "RedfishClient",
    "ServiceRoot",
    "System",
    "classify_component",
]
