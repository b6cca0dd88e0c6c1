"""Reusable PDU pieces for tests: a reboot lab with a real snmpd PDU, blocks for it.

In another test module::

    pytest_plugins = ["tests.pdu_lab"]  # the pdu_lab_factory fixture

    async def test_x(prefect_harness, pdu_lab_factory):
        env = pdu_lab_factory(model="sentry3", machines=2)      # outlets AA1, AA2
        block = await env.save_block("rw")                      # SnmpCredentials name
        ...  # snmp_reboot(env.host, port=env.port, credentials=block,
             #             model=env.model, outlet=env.outlet_of("m1.lab.test"))
        env.pdu.sets()                                          # SETs the PDU saw
        env.lab.snapshot("m1.lab.test")["cycles"]

A module that also imports names from here gets pytest's "already imported"
warning with ``pytest_plugins``; it can wrap :func:`pdu_labs` in a fixture of
its own instead (see tests/test_snmp_reboot.py). Without pytest:
``with start_pdu_lab(tmp_dir) as env: ...``. Every lab
gets fresh random communities and v3 keys, so tests can assert they never
show up in logs or errors. ``PingWatch(*env.ping_address(name))``
(tests/helpers.py) proves a machine went down and came back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from blocks.snmp import SnmpCredentials
from clients.snmp import SnmpAuth, V2cAuth, V3Auth
from lab.machines import MachineLab
from lab.machines.pdu import PduPeer, SnmpUser

__all__ = [
    "PduLab",
    "default_outlets",
    "pdu_lab_factory",
    "pdu_labs",
    "start_pdu_lab",
]

Access = Literal["ro", "rw", "v3"]


def default_outlets(model: str, machines: list[str]) -> dict[int | str, str | None]:
    """Outlet ``i`` (APC) or ``AAi`` (Sentry3) powers the i-th machine."""
    if model == "apc":
        return {i: name for i, name in enumerate(machines, start=1)}
    return {f"AA{i}": name for i, name in enumerate(machines, start=1)}


@dataclass
class PduLab:
    """A running reboot lab with one PDU, and the secrets to talk to it."""

    lab: MachineLab
    pdu: PduPeer
    machines: list[str]
    outlets: dict[int | str, str | None]
    rocommunity: str = field(repr=False)
    rwcommunity: str = field(repr=False)
    v3_user: SnmpUser = field(repr=False)

    @property
    def model(self) -> str:
        """``apc`` or ``sentry3``."""
        return self.pdu.model

    @property
    def host(self) -> str:
        """The PDU's address."""
        return self.pdu.endpoint[0]

    @property
    def port(self) -> int:
        """The PDU's UDP port."""
        return self.pdu.endpoint[1]

    def outlet_of(self, machine: str) -> str:
        """The outlet (as text) that powers ``machine``."""
        return next(str(o) for o, m in self.outlets.items() if m == machine)

    def ping_address(self, machine: str) -> tuple[str, int]:
        """Where ``machine`` answers TCP "ping" while up."""
        return self.lab.machine(machine).spec.address, self.lab.ping_port(machine)

    def auth(self, access: Access = "rw") -> SnmpAuth:
        """Client credentials: read-only / read-write community, or the v3 user."""
        if access == "v3":
            u = self.v3_user
            return V3Auth(user=u.name, auth_key=u.auth_key, priv_key=u.priv_key)
        return V2cAuth(community=self.rocommunity if access == "ro" else self.rwcommunity)

    async def save_block(
        self,
        access: Access = "rw",
        *,
        name: str | None = None,
        timeout: float = 1.0,
        retries: int = 0,
    ) -> str:
        """Save an ``SnmpCredentials`` block for this PDU (needs ``prefect_harness``).

        Returns:
            The block's name.
        """
        name = name or f"pdu-{access}-{secrets.token_hex(4)}"
        if access == "v3":
            u = self.v3_user
            block = SnmpCredentials(
                version="3", user=u.name, auth_key=SecretStr(u.auth_key),
                priv_key=SecretStr(u.priv_key or ""), timeout=timeout, retries=retries,
            )  # fmt: skip
        else:
            community = self.rocommunity if access == "ro" else self.rwcommunity
            block = SnmpCredentials(
                version="2c", community=SecretStr(community), timeout=timeout, retries=retries
            )
        await block.asave(name, overwrite=True)
        return name


@contextmanager
def start_pdu_lab(
    state_dir: Path,
    *,
    model: str = "apc",
    machines: int = 2,
    outlets: dict[int | str, str | None] | None = None,
    speed: float = 10.0,
    shutdown_s: float = 1.0,
    boot_s: float = 2.0,
    subnet: str = "127.78.40.0/24",
) -> Iterator[PduLab]:
    """Start machines ``m1.lab.test``... and one PDU powering them.

    Args:
        state_dir: Lab files (snmpd config and log, the agent's SET log).
        model: ``apc`` or ``sentry3``.
        machines: How many machines.
        outlets: ``{outlet: machine}``; default :func:`default_outlets`.
        speed: Lab seconds per real second (10: a PDU cycle is down ~0.3 s).
        shutdown_s: Lab seconds an OS shutdown takes.
        boot_s: Lab seconds from power on to answering.
        subnet: Where the machines live (loopback).

    Yields:
        The running lab.
    """
    specs = MachineLab.generate(machines, subnet=subnet, shutdown_s=shutdown_s, boot_s=boot_s)
    names = [s.name for s in specs]
    outlets = outlets if outlets is not None else default_outlets(model, names)
    user = SnmpUser(
        name=f"ops{secrets.token_hex(2)}",
        auth_key="auth-" + secrets.token_hex(8),
        priv_key="priv-" + secrets.token_hex(8),
    )
    ro, rw = "ro-" + secrets.token_hex(8), "rw-" + secrets.token_hex(8)
    pdu = PduPeer(model=model, outlets=outlets, rocommunity=ro, rwcommunity=rw, v3_user=user)
    with MachineLab(machines=specs, state_dir=state_dir, speed=speed, peers=[pdu]) as lab:
        yield PduLab(lab, pdu, names, dict(outlets), ro, rw, user)


@contextmanager
def pdu_labs(state_dir: Path) -> Iterator[Callable[..., PduLab]]:
    """A factory of PDU labs (``start_pdu_lab`` arguments), all stopped on exit."""
    with ExitStack() as stack:
        counter = iter(range(1000))

        def make(**kwargs: Any) -> PduLab:
            return stack.enter_context(
                start_pdu_lab(state_dir / f"pdu-lab{next(counter)}", **kwargs)
            )

        yield make


@pytest.fixture()
def pdu_lab_factory(tmp_path: Path) -> Iterator[Callable[..., PduLab]]:
    """Start PDU labs (``start_pdu_lab`` arguments); all stopped after the test."""
    with pdu_labs(tmp_path) as make:
        yield make
