"""Fake tools on a lab sshd host's PATH (see :mod:`lab.machines.sshd`)."""
