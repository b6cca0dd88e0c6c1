"""The measured parts of the discovery benchmark; each runs in its own process in the netns.

- ``lab``: the simulated iDRACs (``lab.server.Lab``) plus the hung BMCs; writes
  ``lab.json`` (credentials, CA, expected service tags), prints ``READY`` and
  serves until its stdin closes.
- ``scan-lan`` / ``scan-wide``: the discovery flow's scanner, scheduled like the
  flow schedules it (chunks of ``chunk_size``, ``concurrency // chunk_size``
  chunks at once, one retry pass for retryable results), without Prefect and
  without the inventory writes.
- ``baseline-lan``: what operators do today: a pool of 20 threads, one blocking
  ``GET https://addr/redfish/v1`` per address.

Each part prints one line ``RESULT <json>`` with its wall time and peak memory.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import resource
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from discovery_plan import Plan
from parts_io import READY_LINE, emit, hwm_mb, maxrss_mb, write_private


def _emit(result: dict[str, Any]) -> None:
    emit({**result, "maxrss_mb": maxrss_mb(), "hwm_mb": hwm_mb()})


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- lab ------------------------------------------------------------------------------


class _Hang(asyncio.Protocol):
    """A BMC that accepts TCP and never sends a byte (not even a TLS handshake)."""

    def __init__(self, held: set[asyncio.BaseTransport]) -> None:
        self._held = held
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._held.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._held.discard(self._transport)  # type: ignore[arg-type]


async def _hold_hung(plan: Plan, on_ready: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    held: set[asyncio.BaseTransport] = set()
    servers = [
        await loop.create_server(lambda: _Hang(held), host=addr, port=plan.port, backlog=512)
        for addr in plan.hung_addresses
    ]
    stdin_closed = asyncio.Event()

    def wait_stdin() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent is done with us
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=wait_stdin, name="stdin-eof", daemon=True).start()
    on_ready()
    try:
        await stdin_closed.wait()
    finally:
        for server in servers:
            server.close()
        for transport in list(held):
            transport.close()


def serve_lab(plan: Plan, state: Path) -> None:
    """Run the lab iDRACs and the hung BMCs until stdin closes.

    Args:
        plan: The layout.
        state: The run's private state directory.

    Raises:
        RuntimeError: The generated fleet is not where the plan expects it.
    """
    from lab.fleet import FleetSpec
    from lab.server import Lab

    _raise_nofile(16_384)
    fleet = FleetSpec.generate(count=plan.bmcs, subnet=plan.fleet_subnet, port=plan.port, seed=2026)
    tags = {b.address: b.service_tag for b in fleet.bmcs}
    wrong = [a for a in tags if plan.category(a) != "idrac"]
    if wrong:
        raise RuntimeError(f"lab BMCs outside the iDRAC block of the plan: {wrong[:3]}")
    with Lab(fleet=fleet, state_dir=state / "lab") as lab:
        info = {
            "username": fleet.username,
            "password": fleet.password,
            "ca_path": str(lab.ca_path),
            "tags": tags,
        }
        write_private(state / "lab.json", info)
        asyncio.run(_hold_hung(plan, lambda: print(READY_LINE, flush=True)))


# --- scanner --------------------------------------------------------------------------


def _load_lab(state: Path) -> tuple[dict[str, Any], ssl.SSLContext]:
    info = json.loads((state / "lab.json").read_text(encoding="utf-8"))
    return info, ssl.create_default_context(cafile=info["ca_path"])


async def _flow_scan(
    plan: Plan, endpoints: list[tuple[str, int]], info: dict[str, Any], ctx: ssl.SSLContext
) -> tuple[list[Any], int]:
    """Scan like flows/discovery.py schedules ``scan_addresses`` (Prefect left out)."""
    from clients.discovery import Scanner

    s = plan.settings
    per_chunk = min(s["chunk_size"], s["concurrency"])
    gate = asyncio.Semaphore(max(1, s["concurrency"] // per_chunk))
    scanners: list[Scanner] = []

    def new_scanner() -> Scanner:
        scanner = Scanner(
            username=info["username"],
            password=info["password"],
            verify=ctx,
            connect_timeout=s["connect_timeout"],
            read_timeout=s["read_timeout"],
            concurrency=per_chunk,
            known={},
            read_firmware=s["read_firmware"],
        )
        scanners.append(scanner)
        return scanner

    async def run_chunk(chunk: list[tuple[str, int]]) -> list[Any]:
        async with gate:
            results = await new_scanner().scan(chunk)
        retry = [(r.address, r.port) for r in results if r.retryable]
        if retry:  # the flow's one extra pass for busy / transiently failing BMCs
            redo = {(r.address, r.port): r for r in await new_scanner().scan(retry)}
            results = [redo.get((r.address, r.port), r) for r in results]
        return results

    size = s["chunk_size"]
    chunks = [endpoints[i : i + size] for i in range(0, len(endpoints), size)]
    done = await asyncio.gather(*(run_chunk(c) for c in chunks))
    return [r for chunk in done for r in chunk], sum(sc.requests_made for sc in scanners)


def _profiled(part: str, profile: bool, run: Callable[[], Any]) -> Any:
    if not profile:
        return run()
    prof = cProfile.Profile()
    try:
        return prof.runcall(run)
    finally:
        out = Path(f"/tmp/rackflow-bench-{part}.pstats")
        prof.dump_stats(out)
        stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime")
        stats.print_stats(25)
        print(f"profile written to {out}", file=sys.stderr)


def _by_category(plan: Plan, results: list[Any]) -> dict[str, dict[str, Any]]:
    table: dict[str, Counter[str]] = {}
    slowest: dict[str, float] = {}
    for r in results:
        cat = plan.category(r.address)
        table.setdefault(cat, Counter())[str(r.outcome)] += 1
        slowest[cat] = max(slowest.get(cat, 0.0), r.elapsed_s)
    return {cat: {**counts, "slowest_s": slowest[cat]} for cat, counts in sorted(table.items())}


def scan(plan: Plan, state: Path, *, wide: bool, profile: bool) -> dict[str, Any]:
    """Run the scanner over the LAN or the wide range.

    Args:
        plan: The layout and the flow's settings.
        state: The run's private state directory.
        wide: Scan the wide black-holed range instead of the LAN.
        profile: Run under cProfile (slower; stats to stderr and /tmp).

    Returns:
        Wall time, counts and request totals.
    """
    from clients.discovery import ProbeOutcome, raise_fd_limit
    from clients.targets import parse_targets

    info, ctx = _load_lab(state)
    # The flow's process runs ``concurrency`` sockets at once across its chunks;
    # each chunk's Scanner only raises the limit for its own share.
    raise_fd_limit(plan.settings["concurrency"] * 2 + 256)
    ranges = plan.wide_range() if wide else plan.lan_range()
    endpoints = parse_targets(ranges, plan.port).endpoints()
    part = "scan-wide" if wide else "scan-lan"
    started = time.monotonic()
    results, requests = _profiled(
        part, profile, lambda: asyncio.run(_flow_scan(plan, endpoints, info, ctx))
    )
    wall = time.monotonic() - started
    found = [r for r in results if r.outcome is ProbeOutcome.FOUND and r.observation]
    tags = info["tags"]
    right = [r for r in found if tags.get(r.address) == r.observation.service_tag]
    problems = Counter(
        f"{plan.category(r.address)}: {r.outcome}: {(r.detail or '')[:60]}"
        for r in results
        if r.outcome is not ProbeOutcome.FOUND and plan.category(r.address) == "idrac"
    )
    return {
        "part": part,
        "endpoints": len(endpoints),
        "wall_s": round(wall, 2),
        "found": len(found),
        "found_right_tag": len(right),
        "with_firmware": sum(1 for r in found if r.observation.firmware),
        "expected": 0 if wide else len(tags),
        "requests": requests,
        "outcomes": _by_category(plan, results),
        "idrac_problems": dict(problems.most_common(5)),
    }


# --- baseline -------------------------------------------------------------------------


def baseline(plan: Plan, state: Path) -> dict[str, Any]:
    """One blocking GET of the service root per address from a pool of threads.

    Args:
        plan: The layout and the per-address timeout (the flow's connect timeout).
        state: The run's private state directory.

    Returns:
        Wall time and what was found.
    """
    import httpx

    from clients.targets import parse_targets

    info, ctx = _load_lab(state)
    timeout = plan.settings["connect_timeout"]
    endpoints = parse_targets(plan.lan_range(), plan.port).endpoints()

    def get(endpoint: tuple[str, int]) -> str | None:
        addr, port = endpoint
        url = f"https://{addr}/redfish/v1" if port == 443 else f"https://{addr}:{port}/redfish/v1"
        try:
            resp = httpx.get(url, verify=ctx, timeout=timeout)
            data = resp.json()
        except (httpx.HTTPError, ValueError):
            return None
        if resp.status_code != 200 or not data.get("RedfishVersion"):
            return None
        return str(((data.get("Oem") or {}).get("Dell") or {}).get("ServiceTag") or "")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=plan.baseline_threads) as pool:
        tags = list(pool.map(get, endpoints))
    wall = time.monotonic() - started
    expected = info["tags"]
    found = [(ep, t) for ep, t in zip(endpoints, tags, strict=True) if t is not None]
    return {
        "part": "baseline-lan",
        "endpoints": len(endpoints),
        "wall_s": round(wall, 2),
        "found": len(found),
        "found_right_tag": sum(1 for (a, _), t in found if expected.get(a) == t),
        "expected": len(expected),
        "requests": len(endpoints),
    }


def run_inside(part: str, state: Path, *, profile: bool) -> None:
    """Entry point of a child process (already inside the netns).

    Args:
        part: ``lab``, ``scan-lan``, ``scan-wide`` or ``baseline-lan``.
        state: The run's private state directory (holds ``plan.json``).
        profile: Profile the scan parts.

    Raises:
        ValueError: Unknown part.
    """
    plan = Plan.load(state / "plan.json")
    if part == "lab":
        serve_lab(plan, state)
    elif part in ("scan-lan", "scan-wide"):
        _emit(scan(plan, state, wide=part == "scan-wide", profile=profile))
    elif part == "baseline-lan":
        _emit(baseline(plan, state))
    else:
        raise ValueError(f"unknown part {part!r}")
