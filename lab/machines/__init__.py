"""The reboot lab: machines whose power state every reboot path shares (issue 4).

See :mod:`lab.machines.state` for the machine model, :mod:`lab.machines.core`
for the control API and peers, :class:`MachineLab` to start it from tests.

The names below are imported lazily: out-of-process peer scripts run
``python -m lab.machines.ctl`` (and ipmi_sim's chassis control) on every
call, and importing the core (aiohttp) first cost them ~0.25 s each, long
enough for an IPMI client to retransmit while ipmi_sim waited on the script.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.machines.core import MachineCore, Peer
    from lab.machines.lab import MachineLab
    from lab.machines.state import Action, Machine, MachineFaults, MachineSpec, Phase, Refused

_HOMES = {
    "MachineCore": "lab.machines.core",
    "Peer": "lab.machines.core",
    "MachineLab": "lab.machines.lab",
    "Action": "lab.machines.state",
    "Machine": "lab.machines.state",
    "MachineFaults": "lab.machines.state",
    "MachineSpec": "lab.machines.state",
    "Phase": "lab.machines.state",
    "Refused": "lab.machines.state",
}

__all__ = [
    "Action",
    "Machine",
    "MachineCore",
    "MachineFaults",
    "MachineLab",
    "MachineSpec",
    "Peer",
    "Phase",
    "Refused",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
