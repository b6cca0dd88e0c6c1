"""Benchmark the rolling firmware update of a lab fleet against a real Prefect server.

Run: ``.venv/bin/python benchmarks/rollout.py [--quick] [--profile]``.

The parent starts a throwaway PostgreSQL server (``--db sqlite``: Prefect's
SQLite file instead) and ``prefect server start`` on 127.0.0.1 on it (a
temporary PREFECT_HOME), the lab in a child process, fills the inventory with the real
discovery flow in another child, then runs the real ``rolling_firmware_update``
flow in a child of its own, so that process's peak memory is the flow's. It
prints wall time against the ideal (the emulated hardware time alone), Redfish
requests per server, memory and CPU, and where the time went. Only loopback
addresses are used. See benchmarks/README.md.

Exit status: 0 when the run completed (targets are reported, not asserted),
1 when the run itself broke.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parts_io import BenchError, part_result, wait_ready
from rollout_db import DATABASES, Database, database, tree_cpu_s
from rollout_parts import run_inside
from rollout_plan import Plan, make_plan
from rollout_report import report

from lab.postgres import PostgresError

SCRIPT = Path(__file__).resolve()
_SERVER_READY_TIMEOUT_S = 180.0
_LAB_READY_TIMEOUT_S = 180.0
_PART_TIMEOUT_S = 1800.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(state: Path, api_port: int) -> dict[str, str]:
    # Proxies from the environment must never see loopback traffic.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PREFECT_HOME": str(state / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{api_port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "RACKFLOW_HOME": str(state / "rackflow"),
            # The server logs each request it answers 503 (a retryable database error, e.g.
            # SQLite's "database is locked"): counted below.
            "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
        }
    )
    return env


def _get_json(url: str, timeout: float = 30.0) -> Any:
    if not url.startswith("http://127."):
        raise BenchError(f"refusing a non-loopback URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback http only
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def prefect_server(
    state: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[Any], float]]:
    """Run ``prefect server start`` on 127.0.0.1 until the block ends.

    Args:
        state: State directory (server log).
        env: Environment with PREFECT_HOME and PREFECT_API_URL.

    Yields:
        The server process and how long it took to become healthy.

    Raises:
        BenchError: It exited or did not become healthy in time.
    """
    port = env["PREFECT_API_URL"].rsplit(":", 1)[1].split("/")[0]
    prefect = Path(sys.executable).parent / "prefect"
    cmd = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", port]
    log = (state / "server.log").open("w")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while not _healthy(env["PREFECT_API_URL"]):
            if proc.poll() is not None or time.monotonic() - started > _SERVER_READY_TIMEOUT_S:
                tail = (state / "server.log").read_text(errors="replace")[-3000:]
                raise BenchError(f"the Prefect server did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield proc, time.monotonic() - started
    finally:
        _stop(proc)
        log.close()


def _healthy(api_url: str) -> bool:
    try:
        return bool(_get_json(api_url + "/health", timeout=2.0))
    except (OSError, ValueError):
        return False


@contextmanager
def lab_process(state: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Start the lab child, wait for READY, stop it (stdin EOF) on exit.

    Args:
        state: State directory.
        env: Child environment.

    Yields:
        The lab process, once it serves.

    Raises:
        BenchError: The lab exited or was not ready in time.
    """
    log = (state / "lab.log").open("w")
    cmd = [sys.executable, str(SCRIPT), "--inside", "lab", "--state", str(state)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True
    )
    try:
        wait_ready(proc, state / "lab.log", timeout_s=_LAB_READY_TIMEOUT_S)
        yield proc
    finally:
        if proc.stdin:
            proc.stdin.close()  # the lab stops at EOF
        _stop(proc)
        log.close()


def run_part(part: str, state: Path, env: dict[str, str], profile: bool) -> dict[str, Any]:
    """Run one child part and return its RESULT JSON.

    Args:
        part: ``discover`` or ``rollout``.
        state: State directory.
        env: Child environment.
        profile: Profile the rollout.

    Returns:
        The part's result.

    Raises:
        BenchError: The child failed or printed no result.
    """
    print(f"... running {part}", file=sys.stderr, flush=True)
    cmd = [sys.executable, str(SCRIPT), "--inside", part, "--state", str(state)]
    proc = subprocess.run(
        cmd + (["--profile"] if profile else []),
        capture_output=True, text=True, env=env, timeout=_PART_TIMEOUT_S, check=False,
    )  # fmt: skip
    (state / f"{part}.log").write_text(proc.stderr)
    if profile and part == "rollout":
        sys.stderr.write(_profile_lines(proc.stderr))
    return part_result(part, proc)


def _profile_lines(stderr: str) -> str:
    start = stderr.find("function calls")
    return stderr[max(0, start - 20) :] if start >= 0 else ""


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds and peak resident memory of a live process, from /proc.

    Args:
        pid: Process id.

    Returns:
        ``cpu_s`` (user + system) and ``hwm_mb`` (VmHWM).
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return {"cpu_s": round(cpu, 2), "hwm_mb": round(hwm, 1)}


def retryable_errors(log: Path, offset: int) -> dict[str, int]:
    """Requests the Prefect server answered 503 (a retryable database error), by API module.

    Args:
        log: The server's log (started with PREFECT_SERVER_LOG_RETRYABLE_ERRORS).
        offset: Where the measured part of the log starts.

    Returns:
        Count per API module (``concurrency_limits_v2``, ``artifacts``...).
    """
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    counts: dict[str, int] = {}
    for block in text.split("Encountered retryable exception")[1:]:
        found = re.search(r"prefect/server/api/(?!server\.py)(\w+)\.py", block)
        module = found.group(1) if found else "other"
        counts[module] = counts.get(module, 0) + 1
    return counts


def measure(
    plan: Plan, state: Path, env: dict[str, str], profile: bool, db: Database
) -> dict[str, Any]:
    """Server, lab, discovery, then the measured rollout with before/after counters.

    Args:
        plan: What to build.
        state: State directory.
        env: Child environment.
        profile: Profile the rollout.
        db: The Prefect server's database (its variables go to the server only).

    Returns:
        Everything the report prints.
    """
    out: dict[str, Any] = {"database": db.label}
    with prefect_server(state, env | db.env) as (server, out["server_start_s"]):
        with lab_process(state, env) as lab:
            out["discover"] = run_part("discover", state, env, False)
            info = json.loads((state / "lab.json").read_text(encoding="utf-8"))
            admin = info["admin_url"]
            before = _get_json(admin + "/lab/requests")
            server0, lab0 = proc_stats(server.pid), proc_stats(lab.pid)
            db0 = tree_cpu_s(db.pid)
            log_offset = (state / "server.log").stat().st_size
            out["rollout"] = run_part("rollout", state, env, profile)
            server1, lab1 = proc_stats(server.pid), proc_stats(lab.pid)
            out["db_cpu_s"] = round(tree_cpu_s(db.pid) - db0, 2) if db.pid else None
            out["requests_before"], out["requests_after"] = (
                before,
                _get_json(admin + "/lab/requests"),
            )
            out["bmcs"] = _get_json(admin + "/lab/bmcs")["bmcs"]
        out["server_503"] = retryable_errors(state / "server.log", log_offset)
    out["servers"] = info["servers"]
    out["server"] = {
        "cpu_s": round(server1["cpu_s"] - server0["cpu_s"], 2),
        "hwm_mb": server1["hwm_mb"],
    }
    out["lab"] = {"cpu_s": round(lab1["cpu_s"] - lab0["cpu_s"], 2), "hwm_mb": lab1["hwm_mb"]}
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (parent) or one part (child, ``--inside``).

    Args:
        argv: Command-line arguments.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 servers, max_parallel 10")
    parser.add_argument("--profile", action="store_true", help="cProfile the flow process")
    parser.add_argument("--keep", action="store_true", help="keep the state directory (logs)")
    parser.add_argument(
        "--db",
        choices=DATABASES,
        default="postgres",
        help="the Prefect server's database (default: a throwaway PostgreSQL)",
    )
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        run_inside(args.inside, args.state, profile=args.profile)
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    state = Path(tempfile.mkdtemp(prefix="rackflow-bench-rollout-"))
    try:
        plan = make_plan(quick=args.quick)
        plan.save(state / "plan.json")
        with database(args.db, state) as db:
            print(f"... Prefect server database: {db.label}", file=sys.stderr, flush=True)
            results = measure(plan, state, _env(state, _free_port()), args.profile, db)
        if not report(plan, results):
            print("benchmark broke: the rollout did not update every server", file=sys.stderr)
            return 1
        return 0
    except (BenchError, PostgresError, subprocess.TimeoutExpired) as exc:
        print(f"benchmark broke: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; server and lab stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"state and logs kept in {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
