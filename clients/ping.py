"""Is a machine up? ICMP echo or a TCP connect, and waiting for either answer.

After a reboot command, the only proof that a machine really went down and
came back is watching it stop answering and answer again.
:func:`ping` asks once; :func:`wait_for_reachability` asks until the answer
is the wanted one or a deadline passes.

ICMP needs either an unprivileged ICMP datagram socket (the process's group
inside ``net.ipv4.ping_group_range``) or a raw socket (root / CAP_NET_RAW).
``method="auto"`` uses ICMP only when no port is given and ICMP is
permitted; with a port it connects over TCP (a refused or unanswered connect
means "not reachable"). On loopback every address answers ICMP, so the lab
checks its machines over TCP on their ping ports.

:func:`plan_check` decides how a machine will be watched before anything is
done to it: ICMP where this process may send it, else a TCP connect to a
fallback port (e.g. the machine's SSH port), else a clear refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from clients.errors import PreconditionError
from clients.polling import poll

__all__ = [
    "CheckPlan",
    "IcmpMode",
    "Method",
    "Reachability",
    "icmp_mode",
    "icmp_usable",
    "ping",
    "plan_check",
    "wait_for_reachability",
]

Method = Literal["auto", "icmp", "tcp"]
IcmpMode = Literal["dgram", "raw"]

_ECHO_REQUEST, _ECHO_REPLY = 8, 0
_UNREACHABLE, _TIME_EXCEEDED = 3, 11
_PAYLOAD = b"rackflow-ping"


@dataclass(frozen=True)
class Reachability:
    """One reachability check's answer.

    Attributes:
        address: What was checked.
        port: The TCP port, for TCP checks.
        method: How it was checked (``icmp`` or ``tcp``).
        reachable: Whether it answered.
        rtt_ms: Round-trip time in milliseconds, when it answered.
        error: Why it did not answer (refused, timeout, unreachable), otherwise None.
    """

    address: str
    port: int | None
    method: Literal["icmp", "tcp"]
    reachable: bool
    rtt_ms: float | None = None
    error: str | None = None


def icmp_mode() -> IcmpMode | None:
    """Tell which kind of ICMP socket this process may open (no packet is sent).

    Returns:
        ``"dgram"`` (unprivileged ping socket allowed by ``net.ipv4.ping_group_range``),
        ``"raw"`` (root or CAP_NET_RAW), or None when neither is permitted.
    """
    modes: tuple[tuple[socket.SocketKind, IcmpMode], ...] = (
        (socket.SOCK_DGRAM, "dgram"),
        (socket.SOCK_RAW, "raw"),
    )
    for kind, mode in modes:
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
        except OSError:
            continue
        return mode
    return None


def icmp_usable(address: str, *, probe: Callable[[], IcmpMode | None] = icmp_mode) -> bool:
    """Tell whether ``address`` can be checked over ICMP from this process (no packet sent).

    Args:
        address: What to check; ICMP checks need an IPv4 address (not a name).
        probe: The capability check (:func:`icmp_mode`; injectable for tests).

    Returns:
        True when the address is IPv4 and ICMP sockets are permitted.
    """
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return probe() is not None


@dataclass(frozen=True)
class CheckPlan:
    """How a machine will be checked, decided before acting on it.

    Attributes:
        method: ``icmp`` or ``tcp``.
        port: The TCP port (None for ICMP).
        note: Why this way when it is a fallback (for the log), else "".
    """

    method: Literal["icmp", "tcp"]
    port: int | None
    note: str = ""


def plan_check(
    address: str,
    *,
    method: Method = "auto",
    port: int | None = None,
    fallback_port: int | None = None,
    probe: Callable[[], IcmpMode | None] = icmp_mode,
) -> CheckPlan:
    """Decide how ``address`` will be checked: ICMP, TCP to ``port``, or TCP to ``fallback_port``.

    ``auto`` without a port uses ICMP when :func:`icmp_usable`, else a TCP
    connect to ``fallback_port`` (a port the machine is known to listen on).

    Args:
        address: What will be checked.
        method: ``auto``, ``icmp`` or ``tcp`` (as configured).
        port: Configured TCP port.
        fallback_port: Port to connect to when ``auto`` cannot use ICMP.
        probe: The ICMP capability check (injectable for tests).

    Returns:
        The plan.

    Raises:
        PreconditionError: No way to check it (ICMP asked for or needed but not
            possible here, and no port to connect to).
    """
    if method == "tcp" or (method == "auto" and port is not None):
        if port is None:
            raise PreconditionError(subject="port", reason="a TCP reachability check needs a port")
        return CheckPlan("tcp", port)
    if icmp_usable(address, probe=probe):
        return CheckPlan("icmp", None)
    why = (
        f"ICMP needs an IPv4 address, not {address!r}"
        if not icmp_usable(address, probe=lambda: "raw")
        else "ICMP sockets are not permitted here (not root, and the group is outside "
        "net.ipv4.ping_group_range)"
    )
    if method == "icmp":
        raise PreconditionError(subject=address, reason=f"cannot ping over ICMP: {why}")
    if fallback_port is None:
        raise PreconditionError(
            subject=address,
            reason=f"no way to tell whether it answers: {why}, and no TCP port is known "
            "(set ping: {method: tcp, port: N}, or give the machine an ssh path)",
        )
    return CheckPlan("tcp", fallback_port, f"{why}: TCP to port {fallback_port} instead")


async def ping(
    address: str,
    *,
    port: int | None = None,
    method: Method = "auto",
    timeout_s: float = 2.0,
) -> Reachability:
    """Check once whether an address answers.

    Args:
        address: IPv4 address (ICMP) or any address or host name (TCP).
        port: TCP port to connect to; required for ``method="tcp"``.
        method: ``icmp``, ``tcp``, or ``auto`` (ICMP when no port is given and
            ICMP is permitted, otherwise TCP).
        timeout_s: How long to wait for the answer.

    Returns:
        The answer; not answering is a normal result (``reachable=False``), not an error.

    Raises:
        PreconditionError: Bad input, TCP without a port, or ICMP asked for but not
            permitted in this process.
    """
    if not timeout_s > 0:
        raise PreconditionError(subject="timeout_s", reason=f"must be > 0, got {timeout_s}")
    if port is not None and not 0 < port < 65536:
        raise PreconditionError(subject="port", reason=f"must be 1-65535, got {port}")
    if method not in ("auto", "icmp", "tcp"):
        raise PreconditionError(subject="method", reason=f"must be auto, icmp or tcp: {method!r}")
    mode = icmp_mode() if port is None or method == "icmp" else None
    if method == "tcp" or (method == "auto" and port is not None):
        if port is None:
            raise PreconditionError(subject="port", reason="a TCP reachability check needs a port")
        return await _tcp(address, port, timeout_s)
    if mode is None:
        raise PreconditionError(
            subject="method",
            reason="ICMP sockets are not permitted here (not root, and the group is outside "
            "net.ipv4.ping_group_range): give a port to check over TCP",
        )
    return await _icmp(address, mode, timeout_s)


async def wait_for_reachability(
    address: str,
    *,
    port: int | None = None,
    method: Method = "auto",
    reachable: bool,
    deadline_s: float,
    interval_s: float = 1.0,
    probe_timeout_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> float:
    """Ping until the address answers (or stops answering).

    Args:
        address: What to check (see :func:`ping`).
        port: TCP port (see :func:`ping`).
        method: ``auto``, ``icmp`` or ``tcp``.
        reachable: The answer waited for: True waits for "up", False for "down".
        deadline_s: Give up after this many seconds.
        interval_s: Pause between checks.
        probe_timeout_s: Timeout of each check (capped at ``deadline_s`` when smaller).
        clock: Monotonic clock, injectable for tests.
        sleep: Async sleep, injectable for tests.

    Returns:
        Seconds waited until the wanted answer (0 when it was already so).

    Raises:
        DeadlineExceeded: The wanted answer did not come before the deadline.
        PreconditionError: Bad input (see :func:`ping` and :func:`clients.polling.poll`).
    """
    timeout = min(probe_timeout_s, deadline_s) if deadline_s > 0 else probe_timeout_s
    state = "reachable" if reachable else "unreachable"
    start = clock()
    await poll(
        lambda: ping(address, port=port, method=method, timeout_s=timeout),
        until=lambda answer: answer.reachable is reachable,
        operation=f"{_where(address, port)} {state}",
        timeout_s=deadline_s,
        interval_s=interval_s,
        clock=clock,
        sleep=sleep,
    )
    return clock() - start


def _where(address: str, port: int | None) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def _tcp(address: str, port: int, timeout_s: float) -> Reachability:
    def answer(ok: bool, *, rtt_ms: float | None = None, error: str | None = None) -> Reachability:
        return Reachability(address, port, "tcp", ok, rtt_ms=rtt_ms, error=error)

    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout_s)
    except TimeoutError:
        return answer(False, error=f"no answer after {timeout_s:g} s")
    except ConnectionRefusedError:
        return answer(False, error="connection refused")
    except OSError as exc:  # no route, host unreachable, name not resolved
        return answer(False, error=exc.strerror or str(exc))
    rtt_ms = (time.perf_counter() - start) * 1000
    writer.close()
    with contextlib.suppress(OSError):  # the peer may reset at once: it answered anyway
        await writer.wait_closed()
    return answer(True, rtt_ms=rtt_ms)


async def _icmp(address: str, mode: IcmpMode, timeout_s: float) -> Reachability:
    try:
        target = str(ipaddress.IPv4Address(address))
    except ValueError:
        raise PreconditionError(
            subject="address", reason=f"ICMP checks need an IPv4 address, got {address!r}"
        ) from None
    kind = socket.SOCK_DGRAM if mode == "dgram" else socket.SOCK_RAW
    ident = os.getpid() & 0xFFFF
    seq = int.from_bytes(os.urandom(2), "big")
    with socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP) as sock:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            await loop.sock_sendto(sock, _echo_request(ident, seq), (target, 0))
            error = await asyncio.wait_for(_await_reply(sock, target, mode, ident, seq), timeout_s)
        except TimeoutError:
            error = f"no answer after {timeout_s:g} s"
        except OSError as exc:  # network unreachable, no route
            error = exc.strerror or str(exc)
        rtt_ms = (time.perf_counter() - start) * 1000
    if error:
        return Reachability(address, None, "icmp", False, error=error)
    return Reachability(address, None, "icmp", True, rtt_ms=rtt_ms)


async def _await_reply(
    sock: socket.socket, target: str, mode: IcmpMode, ident: int, seq: int
) -> str:
    """Read until our echo reply ("" returned) or an error about our request (its text)."""
    loop = asyncio.get_running_loop()
    while True:
        data, (source, _) = await loop.sock_recvfrom(sock, 4096)
        # Raw sockets see whole IP packets (and every ICMP message of the host,
        # including our own request on loopback); ping sockets see ICMP only.
        icmp = data[(data[0] & 0x0F) * 4 :] if mode == "raw" else data
        if len(icmp) < 8:
            continue
        kind, code, _, r_ident, r_seq = struct.unpack("!BBHHH", icmp[:8])
        # The kernel rewrites a ping socket's identifier: match it on raw sockets only.
        ours = r_seq == seq and (mode == "dgram" or r_ident == ident)
        if kind == _ECHO_REPLY and ours and source == target and icmp[8:] == _PAYLOAD:
            return ""
        if kind in (_UNREACHABLE, _TIME_EXCEEDED) and _quotes_ours(icmp, mode, ident, seq):
            what = "destination unreachable" if kind == _UNREACHABLE else "time exceeded"
            return f"{what} (code {code}) from {source}"


def _quotes_ours(icmp: bytes, mode: IcmpMode, ident: int, seq: int) -> bool:
    # An ICMP error quotes the offending IP header and the first 8 bytes of our echo request.
    inner = icmp[8:]
    if not inner:
        return False
    quoted = inner[(inner[0] & 0x0F) * 4 :]
    if len(quoted) < 8:
        return False
    kind, _, _, q_ident, q_seq = struct.unpack("!BBHHH", quoted[:8])
    return kind == _ECHO_REQUEST and q_seq == seq and (mode == "dgram" or q_ident == ident)


def _echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, seq)
    checksum = _checksum(header + _PAYLOAD)
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, checksum, ident, seq) + _PAYLOAD


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
