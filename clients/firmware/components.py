"""The firmware components rackflow updates, their order, and when an update applies.

Re-exported by :mod:`clients.firmware.sources` (where they were first defined).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from clients.errors import PreconditionError
from clients.redfish.models import ComponentKind

__all__ = ["UPDATE_ORDER", "ApplyTime", "parse_component", "parse_components"]

# The order of a full server update (IDRAC.md): iDRAC first, backplane last.
UPDATE_ORDER: tuple[ComponentKind, ...] = (
    ComponentKind.IDRAC,
    ComponentKind.BIOS,
    ComponentKind.CPLD,
    ComponentKind.RAID,
    ComponentKind.NIC,
    ComponentKind.BACKPLANE,
)


class ApplyTime(StrEnum):
    """``@Redfish.OperationApplyTime`` of a SimpleUpdate."""

    ON_RESET = "OnReset"
    IMMEDIATE = "Immediate"


def parse_component(value: ComponentKind | str) -> ComponentKind:
    """Read an updatable component name: idrac, bios, cpld, raid, nic or backplane.

    Args:
        value: A ComponentKind or its name, any case.

    Returns:
        The component kind.

    Raises:
        PreconditionError: Not one of the updatable components.
    """
    text = str(value).strip().lower()
    for kind in UPDATE_ORDER:
        if kind.value == text:
            return kind
    allowed = ", ".join(k.value for k in UPDATE_ORDER)
    raise PreconditionError(
        subject="component", reason=f"unknown component {value!r}; expected one of {allowed}"
    )


def parse_components(values: Sequence[ComponentKind | str]) -> list[ComponentKind]:
    """Read a list of components to update: at least one, each updatable, each once.

    Args:
        values: ComponentKinds or their names, any case.

    Returns:
        The components, in the order given.

    Raises:
        PreconditionError: Naming every component that is not updatable or given twice.
    """
    allowed = [k.value for k in UPDATE_ORDER]
    if not values:
        raise PreconditionError(
            subject="components", reason=f"no component given; choose from {', '.join(allowed)}"
        )
    names = [str(getattr(v, "value", v)).strip().lower() for v in values]
    problems = []
    unknown = [n for n in names if n not in allowed]
    if unknown:
        problems.append(f"not updatable: {', '.join(unknown)} (updatable: {', '.join(allowed)})")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # Each mention would be one more update, and one more reboot.
        problems.append(f"given more than once: {', '.join(repeated)}")
    if problems:
        raise PreconditionError(subject="components", reason="; ".join(problems))
    return [parse_component(n) for n in names]
