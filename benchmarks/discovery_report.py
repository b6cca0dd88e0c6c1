"""Print the discovery benchmark's figures and its targets (reported, never asserted)."""

from __future__ import annotations

from typing import Any

from discovery_plan import Plan

SPEEDUP_TARGET = 10.0
MEMORY_TARGET_MB = 300.0
WIDE_TARGET_S = 60.0


def _rate(result: dict[str, Any]) -> float:
    return result["endpoints"] / result["wall_s"] if result["wall_s"] else float("inf")


def _row(label: str, *cells: object) -> str:
    return f"  {label:<30}" + "".join(f"{c!s:>16}" for c in cells)


def _per_server(result: dict[str, Any]) -> str:
    return f"{result['requests'] / result['found']:.1f}" if result["found"] else "n/a"


def _lan_table(plan: Plan, scan: dict[str, Any], base: dict[str, Any]) -> list[str]:
    n = plan.bmcs
    lines = [
        f"LAN {plan.lan_cidr} ({plan.lan_size:,} addresses, port {plan.port}): "
        f"{n} lab iDRACs, {n} hung BMCs, {plan.closed_count} closed, "
        f"{plan.blackhole_cidr.num_addresses} black-holed",
        f"  scanner: flow defaults {plan.settings}; baseline: {plan.baseline_threads} threads, "
        f"one GET /redfish/v1 each, timeout {plan.settings['connect_timeout']} s",
        _row("", "scanner", "baseline"),
        _row("wall time (s)", f"{scan['wall_s']:.2f}", f"{base['wall_s']:.2f}"),
        _row("addresses/s", f"{_rate(scan):,.0f}", f"{_rate(base):,.0f}"),
        _row(
            "servers found (right tag)",
            f"{scan['found']} ({scan['found_right_tag']})",
            f"{base['found']} ({base['found_right_tag']})",
        ),
        _row("peak memory ru_maxrss (MB)", scan["maxrss_mb"], base["maxrss_mb"]),
        _row("peak RSS VmHWM (MB)", scan["hwm_mb"], base["hwm_mb"]),
        _row("HTTP requests (GETs tried)", scan["requests"], base["requests"]),
        _row("HTTP requests per server found", _per_server(scan), "-"),
        _row("servers with firmware read", scan["with_firmware"], "-"),
        f"  speed-up (baseline / scanner): {base['wall_s'] / scan['wall_s']:.1f}x",
        f"  scanner outcomes by address kind: {scan['outcomes']}",
    ]
    if scan["idrac_problems"]:
        lines.append(f"  iDRACs not found: {scan['idrac_problems']}")
    return lines


def _wide_lines(plan: Plan, wide: dict[str, Any]) -> list[str]:
    return [
        f"WIDE {plan.wide_cidr} ({wide['endpoints']:,} black-holed addresses)",
        _row("wall time (s)", f"{wide['wall_s']:.2f}"),
        _row("addresses/s", f"{_rate(wide):,.0f}"),
        _row("peak memory ru_maxrss (MB)", wide["maxrss_mb"]),
        _row("peak RSS VmHWM (MB)", wide["hwm_mb"]),
        _row("HTTP requests", wide["requests"]),
        f"  outcomes: {wide['outcomes']}",
    ]


def targets(plan: Plan, results: dict[str, dict[str, Any]]) -> list[tuple[bool, str]]:
    """Evaluate the issue's targets.

    Args:
        plan: The layout.
        results: RESULT JSON of each part by name.

    Returns:
        (passed, description) per target.
    """
    scan, base, wide = results["scan-lan"], results["baseline-lan"], results["scan-wide"]
    ratio = base["wall_s"] / scan["wall_s"] if scan["wall_s"] else float("inf")
    n = plan.bmcs
    return [
        (
            scan["found"] == n and scan["found_right_tag"] == n,
            f"all {n} iDRACs found with the right service tag "
            f"(found {scan['found']}, {scan['found_right_tag']} with the right tag)",
        ),
        (
            ratio >= SPEEDUP_TARGET,
            f">= {SPEEDUP_TARGET:.0f}x faster than the baseline ({ratio:.1f}x)",
        ),
        (
            scan["maxrss_mb"] < MEMORY_TARGET_MB,
            f"scanner peak memory < {MEMORY_TARGET_MB:.0f} MB ({scan['maxrss_mb']} MB)",
        ),
        (
            wide["wall_s"] < WIDE_TARGET_S,
            f"{plan.wide_cidr.num_addresses:,} black-holed addresses in < {WIDE_TARGET_S:.0f} s "
            f"({wide['wall_s']:.1f} s)",
        ),
    ]


def report(plan: Plan, results: dict[str, dict[str, Any]]) -> None:
    """Print the tables and PASS/FAIL per target.

    Args:
        plan: The layout.
        results: RESULT JSON of each part by name.
    """
    lines = ["", "rackflow discovery benchmark", ""]
    lines += _lan_table(plan, results["scan-lan"], results["baseline-lan"])
    lines += [""] + _wide_lines(plan, results["scan-wide"]) + ["", "targets:"]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {text}" for ok, text in targets(plan, results)]
    if plan.bmcs < 128:
        lines.append(
            "  (quick run: the targets are set for the full /22 + /16 run; with a 256-address"
            " baseline of ~16 s and a 2 s connect timeout, 10x is out of reach here)"
        )
    print("\n".join(lines), flush=True)
