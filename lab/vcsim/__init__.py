"""The lab vCenter: govmomi's vcsim, built from Debian's sources, with Dell ESXi hosts.

``main.go``, ``host.go``, ``task.go`` and ``admin.go`` are rackflow's own Go
program around govmomi's ``simulator`` package (shipped as package data and
built on first use, see :mod:`lab.vcsim.build`). Maintenance mode takes time
and can fail here (per-host delays and faults), unlike plain vcsim.
"""

from lab.vcsim.build import APT_PACKAGES, VcsimBuildError, build_vcsim, cache_dir
from lab.vcsim.launcher import Vcsim, VcsimError
from lab.vcsim.spec import FAULTS, VcsimCluster, VcsimHost, VcsimSpec

__all__ = [
    "APT_PACKAGES",
    "FAULTS",
    "Vcsim",
    "VcsimBuildError",
    "VcsimCluster",
    "VcsimError",
    "VcsimHost",
    "VcsimSpec",
    "build_vcsim",
    "cache_dir",
]
