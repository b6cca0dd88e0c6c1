"""rackflow's Prefect blocks (registered through the ``prefect.collections`` entry point)."""

from blocks.bugzilla import BugzillaCredentials
from blocks.ilo import IloCredentials
from blocks.inventory import InventoryStore
from blocks.ipmi import IpmiCredentials
from blocks.redfish import RedfishCredentials
from blocks.snmp import SnmpCredentials
from blocks.ssh import SshCredentials
from blocks.vcenter import VCenterCredentials
from blocks.xen import XenCredentials

__all__ = [
    "BugzillaCredentials",
    "IloCredentials",
    "InventoryStore",
    "IpmiCredentials",
    "RedfishCredentials",
    "SnmpCredentials",
    "SshCredentials",
    "VCenterCredentials",
    "XenCredentials",
]
