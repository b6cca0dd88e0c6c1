"""Print the rolling-update benchmark's figures and its targets (reported, never asserted)."""

from __future__ import annotations

from collections import Counter
from statistics import mean
from typing import Any

from rollout_plan import TARGET_RATIO, Plan, request_bound
from rollout_timings import AFTER_SLOT


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def request_stats(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], servers: list[str]
) -> dict[str, Any]:
    """Redfish requests each BMC received during the rollout (lab counters, after - before).

    Args:
        before: Lab request counts before the rollout.
        after: Lab request counts after it.
        servers: BMC keys (``addr:port``) of the fleet.

    Returns:
        Per-server totals (mean, min, max), logins, and the mean per endpoint.
    """
    totals: list[int] = []
    endpoints: Counter[str] = Counter()
    for key in servers:
        old = before.get(key, {})
        delta = {ep: n - old.get(ep, 0) for ep, n in after.get(key, {}).items()}
        delta = {ep: n for ep, n in delta.items() if n > 0}
        totals.append(sum(delta.values()))
        endpoints.update(delta)
    n = max(1, len(servers))
    logins = sum(c for ep, c in endpoints.items() if ep.startswith("POST") and "Sessions" in ep)
    return {
        "mean": sum(totals) / n,
        "min": min(totals, default=0),
        "max": max(totals, default=0),
        "logins": logins / n,
        "endpoints": [(ep, c / n) for ep, c in endpoints.most_common(12)],
    }


def _device_check(results: dict[str, Any]) -> tuple[int, int]:
    want = {key: s["target"] for key, s in results["servers"].items()}
    at_target = sum(
        1 for b in results["bmcs"] if want.get(f"{b['address']}:{b['port']}") == b["bios_version"]
    )
    return at_target, len(want)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _timing_lines(plan: Plan, roll: dict[str, Any]) -> list[str]:
    t = roll["timings"]
    per = t["per_server"]
    comp = roll["component_s"]
    lines = [
        "Where the time went (task runs read back from the Prefect server):",
        f"  flow run {_num(t['flow_run_s'])} s (server clock); first task {_num(t['lead_in_s'])} s "
        f"after the flow started; flow ended {_num(t['tail_s'])} s after the last task ended",
        f"  {t['task_runs']} task runs, {t['task_runs_per_server']} per server; the server had "
        "them all in a final state "
        + (
            f"{t['settle_s']} s after the flow returned (its lag)"
            if t["settle_s"] is not None
            else "not within 60 s (task runs left unfinished)"
        ),
    ]
    if per.get("servers"):
        lines.append(
            f"  per server: span first task start -> last task end mean {per['span_mean_s']} s "
            f"(max {per['span_max_s']}), of which in tasks {per['in_tasks_mean_s']} s, between "
            f"tasks {per['between_tasks_mean_s']} s; hardware {plan.hardware_s:.1f} s "
            f"(in the slot: {', '.join(sorted(AFTER_SLOT))} runs after it)"
        )
        slot = (t["flow_run_s"] or 0.0) * plan.max_parallel / plan.servers
        lines.append(
            f"  a parallel slot spent {slot:.2f} s per server on average (flow run x max_parallel"
            f" / servers): {slot - per['span_mean_s']:.2f} s of it outside the server's tasks "
            "(machine lease acquire/release, run tagging, waiting for the slot)"
        )
        if per.get("handoff_mean_s") is not None:
            lines.append(
                f"  slot hand-off (a server's last task end -> the next server's first task start):"
                f" mean {per['handoff_mean_s']} s, max {per['handoff_max_s']}"
            )
        top = list(per.get("gap_before", {}).items())[:6]
        if top:
            lines.append(
                "  idle before each task, per server: "
                + "; ".join(f"{name} {secs:.2f} s" for name, secs in top)
            )
    if t.get("unattributed_runs"):
        lines.append(f"  task runs not attributed to a server: {t['unattributed_runs']}")
    lines.append(
        f"  machine:<tag> tags left on the flow run: {t['machine_tags_on_flow_run']} of "
        f"{plan.servers}"
    )
    if comp:
        lines.append(
            f"  update_component (start job -> verified) mean {mean(comp):.2f} s, "
            f"min {min(comp):.1f}, max {max(comp):.1f}"
        )
    lines.append(f"  {'task':<28}{'runs':>6}{'mean s':>9}{'max s':>9}{'total s':>9}{'retries':>9}")
    for name, row in sorted(t["by_task"].items(), key=lambda kv: -kv[1]["total_s"]):
        lines.append(
            f"  {name:<28}{row['n']:>6}{row['mean_s'] or 0:>9.3f}{row['max_s'] or 0:>9.2f}"
            f"{row['total_s']:>9.1f}{row['extra_attempts']:>9}"
        )
    return lines


def report(plan: Plan, results: dict[str, Any]) -> bool:
    """Print the figures and PASS/FAIL per target.

    Args:
        plan: What was run.
        results: What the parent measured (see ``rollout.measure``).

    Returns:
        Whether the rollout itself completed (every server updated, verified on the device).
    """
    roll, disc = results["rollout"], results["discover"]
    keys = list(results["servers"])
    req = request_stats(results["requests_before"], results["requests_after"], keys)
    ratio = roll["wall_s"] / plan.ideal_s
    at_target, total = _device_check(results)
    bound = request_bound(plan)
    d = plan.durations
    models = sorted({s["model"] for s in results["servers"].values()})
    lines = [
        f"Rolling firmware update: {plan.servers} lab iDRACs ({', '.join(models)}), "
        f"max_parallel {plan.max_parallel}, BIOS, apply time OnReset, no vCenter",
        f"  lab: speed {plan.speed}; per server download {d['download_s']:g} + apply "
        f"{d['apply_s']:g} + reboot {d['reboot_s']:g} = {plan.hardware_s:g} s "
        f"(step_s {d['step_s']:g}); StepDeadlines.poll_interval_s {plan.poll_interval_s}",
        f"  Prefect: `prefect server start` on 127.0.0.1, database {results['database']}",
        f"    healthy after "
        f"{results['server_start_s']:.1f} s; inventory filled by the discovery flow: "
        f"{disc['found']} found in {disc['wall_s']:.1f} s (not measured)",
        f"  flow state {roll['state']}: {roll['message']}",
        f"  outcomes {roll['outcomes']}; BIOS at the target version on the device: "
        f"{at_target}/{total}",
    ]
    lines += [f"  not updated: {f}" for f in roll["failures"]]
    done = roll["state"] == "COMPLETED" and at_target == total
    void = "" if done else "  (void: the rollout did not complete)"
    lines += [
        "",
        f"  every server updated and verified  {at_target:5d}/{total}  {_verdict(done)}",
        f"  wall time of the flow call        {roll['wall_s']:8.2f} s  "
        f"(flow's own summary: {roll['flow_duration_s']} s)",
        f"  ideal (hardware time alone)       {plan.ideal_s:8.2f} s  "
        f"(ceil({plan.servers}/{plan.max_parallel}) = {plan.waves} waves x {plan.hardware_s:g} s)",
        f"  ratio wall / ideal                {ratio:8.3f}    target <= {TARGET_RATIO}  "
        f"{_verdict(done and ratio <= TARGET_RATIO)}{void}",
        f"  Redfish requests per server       {req['mean']:8.1f}    min {req['min']}, max "
        f"{req['max']}; bound {bound}  {_verdict(req['max'] <= bound)}",
        f"    logins (POST Sessions) per server {req['logins']:.1f}",
        "    per endpoint, per server: " + "; ".join(f"{ep} {n:.1f}" for ep, n in req["endpoints"]),
        f"  peak memory of the flow process   {roll['hwm_mb']:8.1f} MB VmHWM "
        f"(ru_maxrss {roll['maxrss_mb']} MB)",
        f"  CPU during the rollout: flow {roll['cpu_s']:.1f} s, Prefect server "
        f"{results['server']['cpu_s']:.1f} s"
        + (f", PostgreSQL {results['db_cpu_s']:.1f} s" if results.get("db_cpu_s") else "")
        + f", lab {results['lab']['cpu_s']:.1f} s (wall {roll['wall_s']:.1f} s)",
        f"  Prefect server peak memory {results['server']['hwm_mb']:.0f} MB; "
        f"lab {results['lab']['hwm_mb']:.0f} MB",
        f"  Prefect server answered {sum(results['server_503'].values())} requests 503 "
        f"(retryable database errors) during the rollout, by API: {results['server_503'] or '-'}",
        "",
    ]
    lines += _timing_lines(plan, roll)
    print("\n".join(lines), flush=True)
    return done
