"""The reboot lab: machines whose power state every reboot path shares (issue 4).

See :mod:`lab.machines.state` for the machine model, :mod:`lab.machines.core`
for the control API and peers, :class:`MachineLab` to start it from tests.
"""

from lab.machines.core import MachineCore, Peer
from lab.machines.lab import MachineLab
from lab.machines.state import Action, Machine, MachineFaults, MachineSpec, Phase, Refused

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
