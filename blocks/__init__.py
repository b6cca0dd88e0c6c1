"""rackflow's Prefect blocks (registered through the ``prefect.collections`` entry point)."""

from blocks.inventory import InventoryStore
from blocks.redfish import RedfishCredentials
from blocks.vcenter import VCenterCredentials

__all__ = ["InventoryStore", "RedfishCredentials", "VCenterCredentials"]
