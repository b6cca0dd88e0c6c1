"""A resolved firmware package, and versions read from Dell Update Package names."""

from __future__ import annotations

import posixpath
import re

from pydantic import BaseModel, ConfigDict

from clients.redfish.models import ComponentKind

__all__ = ["Package", "dup_version"]

# BIOS_8R8XJ_WN64_2.19.1.EXE, iDRAC-with-Lifecycle-Controller_Firmware_X_WN64_7.10.30.00_A00.EXE,
# BIOS_YNJ0T_WN64_1.10.2_02.EXE, Network_Firmware_3VFTR_LN64_20.36.10.10.BIN
_DUP_NAME = re.compile(
    r"_(?:WN64|WN32|LN64|LN32|LN|WIN)_(?P<ver>[0-9A-Za-z.\-]+?)(?:_A\d\d)?(?:_\d\d)?\.(?:exe|bin)$",
    re.IGNORECASE,
)


def dup_version(file: str) -> str | None:
    """Read the version out of a Dell Update Package file name.

    Args:
        file: File name or URL path, e.g. ``BIOS_8R8XJ_WN64_2.19.1.EXE``.

    Returns:
        The version (``2.19.1``), or None when the name does not follow Dell's pattern.
    """
    match = _DUP_NAME.search(posixpath.basename(file))
    return match["ver"] if match else None


class Package(BaseModel):
    """One package chosen for one component: what to download and what it installs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    file: str
    component: ComponentKind
    version: str | None = None
    component_id: str | None = None
    models: tuple[str, ...] = ()
    name: str | None = None
    reboot_required: bool | None = None
