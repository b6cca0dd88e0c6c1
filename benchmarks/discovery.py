"""Benchmark discovery on a realistic datacenter subnet inside a private network namespace.

Run as root: ``.venv/bin/python benchmarks/discovery.py [--quick] [--profile]``.

The parent creates the namespace ``rackflow-bench-<pid>`` (only ``lo``, so no
packet can leave it), black-holes ranges with iptables inside it, starts the
lab there, runs each measured part in its own child process (so peak memory is
per part) and deletes the namespace in any case. Only loopback addresses are
used, inside the namespace. See benchmarks/README.md for the layout and targets.

Exit status: 0 when the run completed (targets are reported, not asserted),
1 when the run itself broke, 2 when it cannot run here (not root, no ``ip``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from discovery_parts import run_inside
from discovery_plan import Plan, make_plan
from discovery_report import report
from parts_io import BenchError, part_result, wait_ready

SCRIPT = Path(__file__).resolve()
_LAB_READY_TIMEOUT_S = 180.0
_PART_TIMEOUT_S = 1800.0


_SETTINGS_CODE = """
import inspect, json
from flows.discovery import discovery
params = inspect.signature(discovery.fn).parameters
names = ("concurrency", "chunk_size", "connect_timeout", "read_timeout", "read_firmware")
print(json.dumps({name: params[name].default for name in names}))
"""


def _flow_settings() -> dict[str, Any]:
    """The discovery flow's own defaults, read from its signature (never copied).

    Read in a throw-away process: importing Prefect here would make this process
    big, and a child's ru_maxrss starts at its parent's size (vfork + execve).
    """
    proc = subprocess.run(
        [sys.executable, "-c", _SETTINGS_CODE], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"cannot read the discovery flow's defaults:\n{proc.stderr[-2000:]}")
    settings: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return settings


def _child_env() -> dict[str, str]:
    # A proxy from the environment would never be reachable inside the netns.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tools() -> tuple[str, str]:
    ip, iptables = shutil.which("ip"), shutil.which("iptables")
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (it creates a network namespace)")
    if not ip:
        problems.append("`ip` (iproute2) not found")
    if not iptables:
        problems.append("`iptables` not found")
    if problems or not ip or not iptables:
        raise SystemExit(
            "benchmarks/discovery.py cannot run: "
            + "; ".join(problems)
            + ". Install with `make system-deps` and run as root."
        )
    return ip, iptables


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


@contextmanager
def netns(plan: Plan, ip: str, iptables: str) -> Iterator[str]:
    """Create the namespace with ``lo`` up and the black holes; always delete it.

    Args:
        plan: Which ranges to black-hole.
        ip: Path of ``ip``.
        iptables: Path of ``iptables``.

    Yields:
        The namespace name.
    """
    name = f"rackflow-bench-{os.getpid()}"
    _run([ip, "netns", "add", name])
    try:
        _run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"])
        for cidr in (plan.blackhole_cidr, plan.wide_cidr):
            _run(
                [ip, "netns", "exec", name, iptables, "-A", "INPUT", "-p", "tcp", "--syn",
                 "-d", str(cidr), "-j", "DROP"]
            )  # fmt: skip
        yield name
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        subprocess.run([ip, "netns", "del", name], check=False)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _child_cmd(ip: str, ns: str, part: str, state: Path, profile: bool) -> list[str]:
    cmd = [ip, "netns", "exec", ns, sys.executable, str(SCRIPT), "--inside", part]
    return cmd + ["--state", str(state)] + (["--profile"] if profile else [])


@contextmanager
def lab_process(ip: str, ns: str, state: Path) -> Iterator[None]:
    """Start the lab child in the namespace, wait for READY, stop it on exit.

    Args:
        ip: Path of ``ip``.
        ns: Namespace name.
        state: State directory.

    Yields:
        Once the lab serves.

    Raises:
        BenchError: The lab exited or was not ready in time.
    """
    log = (state / "lab.log").open("w")
    proc = subprocess.Popen(
        _child_cmd(ip, ns, "lab", state, False),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=_child_env(), text=True,
    )  # fmt: skip
    try:
        wait_ready(proc, state / "lab.log", timeout_s=_LAB_READY_TIMEOUT_S)
        yield
    finally:
        if proc.stdin:
            proc.stdin.close()  # the lab stops at EOF
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_part(ip: str, ns: str, part: str, state: Path, profile: bool) -> dict[str, Any]:
    """Run one measured part in a child process inside the namespace.

    Args:
        ip: Path of ``ip``.
        ns: Namespace name.
        part: Part name (see discovery_parts).
        state: State directory.
        profile: Profile the scan parts.

    Returns:
        The part's RESULT JSON.

    Raises:
        BenchError: The child failed or printed no result.
    """
    print(f"... running {part}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        _child_cmd(ip, ns, part, state, profile),
        capture_output=True, text=True, env=_child_env(), timeout=_PART_TIMEOUT_S, check=False,
    )  # fmt: skip
    if profile and proc.stderr:
        sys.stderr.write(proc.stderr)
    return part_result(part, proc)


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
    parser.add_argument("--quick", action="store_true", help="a /24 with 32 BMCs and a /20")
    parser.add_argument("--profile", action="store_true", help="cProfile the scanner parts")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        run_inside(args.inside, args.state, profile=args.profile)
        return 0
    try:
        ip, iptables = _tools()
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    state = Path(tempfile.mkdtemp(prefix="rackflow-bench-"))
    try:
        plan = make_plan(quick=args.quick, settings=_flow_settings())
        plan.save(state / "plan.json")
        results: dict[str, dict[str, Any]] = {}
        with netns(plan, ip, iptables) as ns:
            with lab_process(ip, ns, state):
                for part in ("scan-lan", "baseline-lan", "scan-wide"):
                    results[part] = run_part(ip, ns, part, state, args.profile)
        report(plan, results)
        return 0
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"benchmark broke: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; network namespace removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
