"""A lab PDU: a real net-snmp ``snmpd`` whose outlet table powers lab machines.

.. code-block:: python

    pdu = PduPeer(model="apc", outlets={1: "m1.lab.test"},
                  rocommunity="ro-secret", rwcommunity="rw-secret")
    with MachineLab(machines=..., state_dir=tmp, peers=[pdu]) as lab:
        host, port = pdu.endpoint          # udp 127.0.0.1:<free port>
        ...                                # SET outlet 1 = 3 (reboot) -> m1 cycles
        pdu.sets()                         # every SET the agent saw

One snmpd per PDU, started as LAB.md says (``-C`` ignores the system
config, ``-I -smux`` keeps it off 0.0.0.0:199, ``MIBS=`` silences MIB
noise). snmpd does the SNMP work (v2c communities with read-only vs
read-write access, an SNMPv3 USM user); the outlet table is served by
:mod:`lab.machines.pdu_agent` through ``pass_persist``, which acts on the
machines through the reboot lab's control API. Communities and keys go to
the config file (mode 0600), never to a command line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysnmp.hlapi.v3arch import asyncio as hlapi

from lab.fleet import check_loopback
from lab.machines.core import MachineCore
from lab.machines.pdu_agent import APC_TABLE, SENTRY3_TABLE

log = logging.getLogger(__name__)

__all__ = ["MODELS", "PduPeer", "SnmpUser", "outlet_index"]

MODELS = ("apc", "sentry3")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SENTRY3_OUTLET = re.compile(r"([A-Z])([A-Z])([0-9]+)")
_WORD = re.compile(r"[!-~]+")  # printable, no blanks: one config token
# net-snmp's protocol names -> pysnmp's (net-snmp's AES-192/256 are Blumenthal's).
_AUTH_IDS = {
    "MD5": hlapi.usmHMACMD5AuthProtocol,
    "SHA": hlapi.usmHMACSHAAuthProtocol,
    "SHA-224": hlapi.usmHMAC128SHA224AuthProtocol,
    "SHA-256": hlapi.usmHMAC192SHA256AuthProtocol,
    "SHA-384": hlapi.usmHMAC256SHA384AuthProtocol,
    "SHA-512": hlapi.usmHMAC384SHA512AuthProtocol,
}
_PRIV_IDS = {
    "DES": hlapi.usmDESPrivProtocol,
    "AES": hlapi.usmAesCfb128Protocol,
    "AES-192": hlapi.usmAesBlumenthalCfb192Protocol,
    "AES-256": hlapi.usmAesBlumenthalCfb256Protocol,
}
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class SnmpUser:
    """An SNMPv3 USM user of the lab PDU (read-write).

    Attributes:
        name: User name.
        auth_key: Authentication pass phrase (8+ characters).
        priv_key: Privacy pass phrase (8+ characters); None for authNoPriv.
        auth_protocol: One of MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512.
        priv_protocol: One of DES, AES, AES-192, AES-256 (net-snmp's names).
    """

    name: str
    auth_key: str = field(repr=False)
    priv_key: str | None = field(default=None, repr=False)
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"

    def config_lines(self) -> list[str]:
        """``createUser`` + ``rwuser`` lines for snmpd.conf.

        Raises:
            ValueError: A name, protocol or pass phrase snmpd would not accept.
        """
        if (
            not _WORD.fullmatch(self.name)
            or "#" in self.name
            or self.auth_protocol not in _AUTH_IDS
        ):
            raise ValueError(f"bad SNMPv3 user {self.name!r} / {self.auth_protocol!r}")
        words = [self.auth_protocol, _phrase(self.auth_key)]
        if self.priv_key is not None:
            if self.priv_protocol not in _PRIV_IDS:
                raise ValueError(f"bad SNMPv3 privacy protocol {self.priv_protocol!r}")
            words += [self.priv_protocol, _phrase(self.priv_key)]
        level = "priv" if self.priv_key is not None else "auth"
        return [f"createUser {self.name} {' '.join(words)}", f"rwuser {self.name} {level}"]


def _phrase(text: str) -> str:
    if len(text) < 8 or '"' in text or "\n" in text:
        raise ValueError("SNMPv3 pass phrases need 8+ characters, no quotes or newlines")
    return f'"{text}"'


def outlet_index(model: str, outlet: int | str) -> tuple[tuple[int, ...], str]:
    """The OID index and the label of an outlet of a PDU model.

    Args:
        model: ``apc`` (outlets 1, 2, ...) or ``sentry3`` (``AA1`` = tower A,
            infeed A, outlet 1).
        outlet: The outlet as written for that model.

    Returns:
        ``(index, label)``, e.g. ``((1, 1, 3), "AA3")``.

    Raises:
        ValueError: Not an outlet of that model.
    """
    if model == "apc":
        if not re.fullmatch(r"[0-9]+", str(outlet)) or int(outlet) < 1:
            raise ValueError(f"APC outlets are numbers from 1, got {outlet!r}")
        return (int(outlet),), str(int(outlet))
    if model == "sentry3":
        match = _SENTRY3_OUTLET.fullmatch(str(outlet))
        if match is None or int(match[3]) < 1:
            raise ValueError(f"Sentry3 outlets are written like AA1, got {outlet!r}")
        tower, infeed = (ord(letter) - ord("A") + 1 for letter in match.group(1, 2))
        return (tower, infeed, int(match[3])), str(outlet)
    raise ValueError(f"unknown PDU model {model!r} (one of {', '.join(MODELS)})")


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


class PduPeer:
    """A switched PDU of the reboot lab (a peer: ``await peer(core)`` starts it).

    Args:
        name: The PDU's name (its files go to ``<state_dir>/pdu-<name>``).
        model: ``apc`` or ``sentry3``.
        outlets: ``{outlet: machine name}`` (``None``: an outlet with nothing
            plugged in); APC outlets are numbers, Sentry3 ones like ``AA1``.
        rocommunity: v2c community with read-only access (None: none).
        rwcommunity: v2c community with read-write access (None: none).
        v3_user: An SNMPv3 user with read-write access.
        address: Loopback address snmpd binds.
        port: UDP port (0: a free one).
        ready_timeout_s: How long snmpd may take to answer.

    Raises:
        ValueError: Bad model, outlet, community or address.
    """

    def __init__(
        self,
        *,
        name: str = "pdu1",
        model: str = "apc",
        outlets: Mapping[int | str, str | None],
        rocommunity: str | None = "public",
        rwcommunity: str | None = "private",
        v3_user: SnmpUser | None = None,
        address: str = "127.0.0.1",
        port: int = 0,
        ready_timeout_s: float = 15.0,
    ) -> None:
        if not _WORD.fullmatch(name):
            raise ValueError(f"bad PDU name {name!r}")
        if model not in MODELS:
            raise ValueError(f"unknown PDU model {model!r} (one of {', '.join(MODELS)})")
        for community in (rocommunity, rwcommunity):
            if community is not None and (not _WORD.fullmatch(community) or "#" in community):
                raise ValueError("communities are one printable word without '#'")
        if rocommunity is None and rwcommunity is None and v3_user is None:
            raise ValueError("a PDU needs a community or an SNMPv3 user")
        self.name = name
        self.model = model
        self.outlets: dict[tuple[int, ...], tuple[str, str | None]] = {}
        for outlet, machine in outlets.items():
            index, label = outlet_index(model, outlet)
            self.outlets[index] = (label, machine)
        if not self.outlets:
            raise ValueError("a PDU needs at least one outlet")
        self.rocommunity = rocommunity
        self.rwcommunity = rwcommunity
        self.v3_user = v3_user
        self.address = check_loopback(address)
        self._port = port
        self.ready_timeout_s = ready_timeout_s
        self.dir = Path()
        self._proc: asyncio.subprocess.Process | None = None
        self._endpoint: tuple[str, int] | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        """``(address, port)`` snmpd answers on (UDP).

        Raises:
            RuntimeError: Not started.
        """
        if self._endpoint is None:
            raise RuntimeError(f"PDU {self.name} is not running")
        return self._endpoint

    @property
    def set_log(self) -> Path:
        """The JSON-lines file every SET the agent received is appended to."""
        return self.dir / "sets.jsonl"

    def sets(self) -> list[dict[str, Any]]:
        """Every SET so far: ``oid``, ``outlet``, ``machine``, ``value``, ``action``, ``result``."""
        if not self.set_log.exists():
            return []
        lines = self.set_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    async def __call__(self, core: MachineCore) -> Callable[[], Awaitable[None]]:
        """Start snmpd for this PDU; return its stop function.

        Raises:
            ValueError: An outlet names a machine the lab does not have.
            RuntimeError: snmpd exited or did not answer in time.
        """
        for _label, machine in self.outlets.values():
            if machine is not None and machine not in core.machines:
                raise ValueError(f"PDU {self.name}: no lab machine {machine!r}")
        self.dir = core.state_dir / f"pdu-{self.name}"
        if any(c.isspace() for c in str(self.dir)):  # pass_persist splits its line on blanks
            raise ValueError(f"state dir must not contain blanks: {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.set_log.write_text("")
        wrapper = self._write_agent(core.control_url)
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = self._port or _free_udp_port(self.address)
            try:
                await self._start(wrapper, port)
                break
            except _PortTaken:
                # Another process took the free port between probe and bind.
                if self._port or attempt == _START_ATTEMPTS:
                    raise RuntimeError(f"PDU {self.name}: udp port {port} taken") from None
        return self.stop

    def _write_agent(self, control_url: str) -> Path:
        config = {
            "model": self.model,
            "control_url": control_url,
            "set_log": str(self.set_log),
            "outlets": [
                {"label": label, "index": list(index), "machine": machine}
                for index, (label, machine) in self.outlets.items()
            ],
        }
        config_path = self.dir / "agent.json"
        config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        wrapper = self.dir / "pdu-agent.sh"
        # Whatever environment snmpd hands its pass_persist children, the
        # wrapper pins our interpreter and import path (no hard-coded checkout).
        wrapper.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={shlex.quote(str(_REPO_ROOT))} exec {shlex.quote(sys.executable)} "
            f"-u -m lab.machines.pdu_agent {shlex.quote(str(config_path))}\n",
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
        return wrapper

    def _write_config(self, wrapper: Path) -> Path:
        persist = self.dir / "persist"
        shutil.rmtree(persist, ignore_errors=True)  # a fresh engine and USM table per start
        persist.mkdir()
        lines = [
            f"[snmp] persistentDir {persist}",
            "dontLogTCPWrappersConnects yes",
            f"sysName {self.name}",
        ]
        if self.rocommunity is not None:
            lines.append(f"rocommunity {self.rocommunity} 127.0.0.0/8")
        if self.rwcommunity is not None:
            lines.append(f"rwcommunity {self.rwcommunity} 127.0.0.0/8")
        if self.v3_user is not None:
            lines += self.v3_user.config_lines()
        table = APC_TABLE if self.model == "apc" else SENTRY3_TABLE
        lines.append(f"pass_persist .{'.'.join(map(str, table))} {wrapper}")
        conf = self.dir / "snmpd.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    async def _start(self, wrapper: Path, port: int) -> None:
        snmpd = shutil.which("snmpd", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/snmpd"
        conf = self._write_config(wrapper)
        env = dict(os.environ, MIBS="", SNMP_PERSISTENT_DIR=str(self.dir / "persist"))
        log_path = self.dir / "snmpd.log"
        with log_path.open("wb") as out:  # per attempt: _wait_ready reads why it died
            self._proc = await asyncio.create_subprocess_exec(
                snmpd, "-f", "-Lo", "-C", "-I", "-smux", "-c", str(conf),
                "-p", str(self.dir / "snmpd.pid"), f"udp:{self.address}:{port}",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env,
            )  # fmt: skip
        try:
            await self._wait_ready(port, log_path)
        except BaseException:
            await self.stop()
            raise
        self._endpoint = (self.address, port)
        log.info("PDU %s (%s) serving on udp %s:%d", self.name, self.model, self.address, port)

    async def _wait_ready(self, port: int, log_path: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            assert self._proc is not None
            if self._proc.returncode is not None:
                tail = log_path.read_text(errors="replace")[-1500:]
                if "Error opening specified endpoint" in tail:
                    raise _PortTaken
                raise RuntimeError(f"snmpd for PDU {self.name} exited: {tail}")
            if await self._answers(port):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"snmpd for PDU {self.name} silent after {self.ready_timeout_s} s"
                )

    async def _answers(self, port: int) -> bool:
        # Read the first outlet's first column: proves snmpd, the credentials,
        # pass_persist, the agent and the control API all work (and starts the
        # agent, so the first real request does not pay its start-up).
        table = APC_TABLE if self.model == "apc" else SENTRY3_TABLE
        column = 1 if self.model == "apc" else 2
        oid = ".".join(map(str, (*table, column, *min(self.outlets))))
        engine = hlapi.SnmpEngine()
        try:
            target = await hlapi.UdpTransportTarget.create(
                (self.address, port), timeout=0.5, retries=0
            )
            error, status, _index, binds = await hlapi.get_cmd(
                engine,
                self._probe_auth(),
                target,
                hlapi.ContextData(),
                hlapi.ObjectType(hlapi.ObjectIdentity(oid)),
                lookupMib=False,
            )
        finally:
            engine.close_dispatcher()
        return error is None and not int(status) and bool(binds)

    def _probe_auth(self) -> Any:
        community = self.rocommunity or self.rwcommunity
        if community is not None:
            return hlapi.CommunityData(community, mpModel=1)  # noqa: S508 - what PDUs speak
        user = self.v3_user
        assert user is not None
        keys: dict[str, Any] = {"authProtocol": _AUTH_IDS[user.auth_protocol]}
        if user.priv_key is not None:
            keys["privProtocol"] = _PRIV_IDS[user.priv_protocol]
        return hlapi.UsmUserData(user.name, user.auth_key, user.priv_key, **keys)

    async def stop(self) -> None:
        """Stop snmpd (TERM, then KILL); its agent exits when its stdin closes."""
        proc, self._proc = self._proc, None
        self._endpoint = None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class _PortTaken(Exception):
    """snmpd could not bind its UDP port."""
