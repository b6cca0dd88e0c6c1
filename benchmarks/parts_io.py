"""What every benchmark's parent and child processes share.

A measured part runs in a child process and prints one ``RESULT <json>`` line;
a long-running child (the lab) prints ``READY`` once it serves. Peak memory is
read inside the child so each part's figure is its own.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import time
from pathlib import Path
from typing import Any

RESULT_PREFIX = "RESULT "
READY_LINE = "READY"


class BenchError(Exception):
    """The run itself broke (not a missed target)."""


def maxrss_mb() -> float:
    """Peak RSS in MB. Linux reports KiB, and it survives execve: keep parents lean."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def hwm_mb() -> float | None:
    """VmHWM in MB: peak resident set of this process image only (reset at execve)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def emit(result: dict[str, Any]) -> None:
    """Print a child's result line for the parent."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only (it holds the lab's password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)


def wait_ready(proc: subprocess.Popen[str], log: Path, *, timeout_s: float) -> None:
    """Wait for a child's ``READY`` line.

    Raises:
        BenchError: The child exited or was not ready in time (with its log's tail).
    """
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == READY_LINE:
                return
            if not line:
                break
    tail = log.read_text(errors="replace")[-3000:]
    raise BenchError(f"the lab did not start (exit {proc.poll()}):\n{tail}")


def part_result(part: str, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last ``RESULT`` line of a finished child.

    Raises:
        BenchError: The child failed or printed no result.
    """
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"{part} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result
