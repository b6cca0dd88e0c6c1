"""PDU models: where each vendor's MIB keeps the outlet table, and how outlets are written.

A model is a :class:`PduProfile`; :class:`clients.snmp.PduClient` speaks SNMP
to it. Outlets are validated here, before any packet is sent:

* APC PowerNet (``apc``): outlets are positive integers (``4``);
  sPDUOutletCtl ``1.3.6.1.4.1.318.1.1.4.4.2.1.3.<outlet>`` reads 1 on / 2 off
  and takes 1 on, 2 off, 3 reboot.
* ServerTech Sentry3 (``sentry3``): outlets are tower letter, infeed letter,
  outlet number (``AA4`` = tower 1, infeed 1, outlet 4); outletControlAction
  ``1.3.6.1.4.1.1718.3.2.3.1.11.<t>.<i>.<o>`` takes 1 on, 2 off, 3 reboot,
  outletStatus ``...1.5.<t>.<i>.<o>`` reads 0 off / 1 on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from clients.errors import PreconditionError

__all__ = [
    "APC",
    "PROFILES",
    "SENTRY3",
    "Outlet",
    "OutletAction",
    "OutletState",
    "PduProfile",
    "profile_for",
]

OutletState = Literal["on", "off"]
OutletAction = Literal["on", "off", "reboot"]
Outlet = str | int

_APC = re.compile(r"[0-9]+")


def _apc_outlet(outlet: Outlet) -> tuple[int, ...]:
    text = str(outlet).strip()
    if isinstance(outlet, bool) or not _APC.fullmatch(text) or int(text) < 1:
        raise PreconditionError(
            subject="outlet", reason=f"APC outlets are positive integers, got {outlet!r}"
        )
    return (int(text),)


_SENTRY3 = re.compile(r"([A-Z])([A-Z])([0-9]+)")


def _sentry3_outlet(outlet: Outlet) -> tuple[int, ...]:
    match = _SENTRY3.fullmatch(outlet) if isinstance(outlet, str) else None
    if match is None or int(match.group(3)) < 1:
        raise PreconditionError(
            subject="outlet",
            reason=(
                "Sentry3 outlets are written tower letter, infeed letter, outlet "
                f"number (e.g. AA1), got {outlet!r}"
            ),
        )
    tower, infeed = (ord(letter) - ord("A") + 1 for letter in match.group(1, 2))
    return tower, infeed, int(match.group(3))


@dataclass(frozen=True)
class PduProfile:
    """Where and how one PDU model controls its outlets.

    Attributes:
        name: Model name (``apc``, ``sentry3``).
        control_column: OID of the outlet control column (index appended).
        status_column: OID of the column that reads the outlet's state.
        parse_outlet: Outlet as written -> OID index; raises PreconditionError.
        commands: Integer to SET for ``on``, ``off`` and ``reboot``.
        states: Status value -> ``on`` / ``off``.
        pending: Status values of an outlet in transition (name), worth a retry.
    """

    name: str
    control_column: str
    status_column: str
    parse_outlet: Callable[[Outlet], tuple[int, ...]]
    commands: Mapping[OutletAction, int]
    states: Mapping[int, OutletState]
    pending: Mapping[int, str] = field(default_factory=dict)

    def control_oid(self, outlet: Outlet) -> str:
        """The control OID of an outlet (validated)."""
        return _oid(self.control_column, self.parse_outlet(outlet))

    def status_oid(self, outlet: Outlet) -> str:
        """The status OID of an outlet (validated)."""
        return _oid(self.status_column, self.parse_outlet(outlet))


def _oid(column: str, index: tuple[int, ...]) -> str:
    return ".".join([column, *map(str, index)])


APC = PduProfile(
    name="apc",
    # PowerNet-MIB sPDUOutletCtl: reads the state, writes the command.
    control_column="1.3.6.1.4.1.318.1.1.4.4.2.1.3",
    status_column="1.3.6.1.4.1.318.1.1.4.4.2.1.3",
    parse_outlet=_apc_outlet,
    commands=MappingProxyType({"on": 1, "off": 2, "reboot": 3}),
    states=MappingProxyType({1: "on", 2: "off"}),
    pending=MappingProxyType(
        {3: "outletReboot", 5: "onWithDelay", 6: "offWithDelay", 7: "rebootWithDelay"}
    ),
)
"""APC PowerNet switched rack PDUs (AP79xx): outlets ``1``, ``2``, ..."""

SENTRY3 = PduProfile(
    name="sentry3",
    # Sentry3-MIB outletControlAction (write) and outletStatus (read).
    control_column="1.3.6.1.4.1.1718.3.2.3.1.11",
    status_column="1.3.6.1.4.1.1718.3.2.3.1.5",
    parse_outlet=_sentry3_outlet,
    commands=MappingProxyType({"on": 1, "off": 2, "reboot": 3}),
    states=MappingProxyType({0: "off", 1: "on", 4: "off", 5: "on", 8: "off", 9: "on"}),
    pending=MappingProxyType({2: "offWait", 3: "onWait", 6: "noComm", 7: "reading"}),
)
"""ServerTech Sentry3 CDUs: outlets ``AA1`` (tower A, infeed A, outlet 1), ..."""

PROFILES: Mapping[str, PduProfile] = MappingProxyType({"apc": APC, "sentry3": SENTRY3})


def profile_for(model: str) -> PduProfile:
    """The profile of a PDU model.

    Args:
        model: ``apc`` or ``sentry3`` (case-insensitive).

    Returns:
        The model's profile.

    Raises:
        PreconditionError: Unknown model.
    """
    found = PROFILES.get(model.strip().lower())
    if found is None:
        raise PreconditionError(
            subject="model", reason=f"unknown PDU model {model!r} (one of {', '.join(PROFILES)})"
        )
    return found
