"""Per-model hardware defaults for simulated Dell PowerEdge servers.

Versions and component IDs are plausible values for 14G (R640/R740) and 15G
(R650/R750) servers as they appear in iDRAC firmware inventories. The fixed
IDs from IDRAC.md (iDRAC 25227, BIOS 159, CPLD 27763) are exact; the others
are stable stand-ins so that matching by ComponentID works across updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelProfile:
    """What a fresh server of one model looks like."""

    model: str
    generation: str
    bios_version: str
    idrac_version: str
    previous_idrac_version: str
    previous_bios_version: str
    cpld_version: str
    raid_name: str
    raid_version: str
    nic_name: str
    nic_version: str
    backplane_version: str
    cpu_model: str
    memory_gib: int


PROFILES: dict[str, ModelProfile] = {
    "R640": ModelProfile(
        model="PowerEdge R640",
        generation="14G",
        bios_version="2.19.1",
        idrac_version="7.00.00.174",
        previous_idrac_version="6.10.30.00",
        previous_bios_version="2.17.1",
        cpld_version="1.0.6",
        raid_name="PERC H730P Mini",
        raid_version="25.5.9.0001",
        nic_name="Broadcom Gigabit Ethernet BCM5720",
        nic_version="22.00.6",
        backplane_version="4.35",
        cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
        memory_gib=384,
    ),
    "R740": ModelProfile(
        model="PowerEdge R740",
        generation="14G",
        bios_version="2.19.1",
        idrac_version="7.00.00.174",
        previous_idrac_version="6.10.30.00",
        previous_bios_version="2.17.1",
        cpld_version="1.1.4",
        raid_name="PERC H740P Mini",
        raid_version="51.16.0-4076",
        nic_name="Intel(R) Ethernet 10G 4P X710 rNDC",
        nic_version="22.5.7",
        backplane_version="4.35",
        cpu_model="Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        memory_gib=768,
    ),
    "R650": ModelProfile(
        model="PowerEdge R650",
        generation="15G",
        bios_version="1.13.2",
        idrac_version="7.10.30.00",
        previous_idrac_version="7.00.00.174",
        previous_bios_version="1.11.2",
        cpld_version="1.0.1",
        raid_name="PERC H755 Front",
        raid_version="52.26.0-5179",
        nic_name="Broadcom Adv. Dual 25Gb Ethernet",
        nic_version="22.71.3",
        backplane_version="7.10",
        cpu_model="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
        memory_gib=512,
    ),
    "R750": ModelProfile(
        model="PowerEdge R750",
        generation="15G",
        bios_version="1.13.2",
        idrac_version="7.10.30.00",
        previous_idrac_version="7.00.00.174",
        previous_bios_version="1.11.2",
        cpld_version="1.1.1",
        raid_name="PERC H755 Front",
        raid_version="52.26.0-5179",
        nic_name="Intel(R) Ethernet 25G 2P E810-XXV OCP",
        nic_version="22.5.7",
        backplane_version="7.10",
        cpu_model="Intel(R) Xeon(R) Gold 6354 CPU @ 3.00GHz",
        memory_gib=1024,
    ),
}


def profile_for(model: str) -> ModelProfile:
    """Find the profile of a model given as ``R640`` or ``PowerEdge R640``.

    Args:
        model: Short or full model name.

    Returns:
        The model's profile.

    Raises:
        ValueError: If the model is not one the lab simulates.
    """
    short = model.removeprefix("PowerEdge").strip().upper()
    if short not in PROFILES:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown model {model!r} (known: {known})")
    return PROFILES[short]


def default_components(
    profile: ModelProfile, *, bios_version: str, idrac_version: str
) -> list[dict[str, Any]]:
    """Build the firmware components a fresh server of this model reports.

    Args:
        profile: The server's model profile.
        bios_version: Installed BIOS version.
        idrac_version: Installed iDRAC firmware version.

    Returns:
        Component dicts (``fqdd``, ``component_id``, ``name``, ``version``,
        ``updateable``, ``previous_version``) in inventory order.
    """
    raid = "RAID.Integrated.1-1"
    return [
        _c(
            "iDRAC.Embedded.1-1",
            "25227",
            "Integrated Dell Remote Access Controller",
            idrac_version,
            previous=profile.previous_idrac_version,
        ),
        _c("BIOS.Setup.1-1", "159", "BIOS", bios_version, previous=profile.previous_bios_version),
        _c("CPLD.Embedded.1", "27763", "System CPLD", profile.cpld_version),
        _c(raid, "104298", profile.raid_name, profile.raid_version),
        _c("NIC.Integrated.1-1-1", "103314", profile.nic_name, profile.nic_version),
        _c(
            f"Enclosure.Internal.0-1:{raid}",
            "104444",
            "BP14G+ 0:1" if profile.generation == "14G" else "BP15G+ 0:1",
            profile.backplane_version,
        ),
        _c(
            f"Disk.Bay.0:Enclosure.Internal.0-1:{raid}",
            "104940",
            "Disk 0 in Backplane 1 of Integrated RAID Controller 1",
            "DL63",
        ),
        _c("PSU.Slot.1", "104196", "PS1 Status", "00.1D.9B"),
        _c("LC.Embedded.1", "28897", "Lifecycle Controller", idrac_version, updateable=False),
        _c("Diagnostics.Embedded.1", "196", "Dell 64 Bit uEFI Diagnostics", "4301A73"),
    ]


def _c(
    fqdd: str,
    component_id: str,
    name: str,
    version: str,
    *,
    previous: str | None = None,
    updateable: bool = True,
) -> dict[str, Any]:
    return {
        "fqdd": fqdd,
        "component_id": component_id,
        "name": name,
        "version": version,
        "updateable": updateable,
        "previous_version": previous,
    }
