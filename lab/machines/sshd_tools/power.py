"""The fake ``reboot`` and ``shutdown`` of a lab sshd host.

The host's PATH starts with a directory of small shell wrappers that run
``python -m lab.machines.sshd_tools.power <tool> <args...>``. The tool asks
the reboot lab's control API (like ``python -m lab.machines.ctl <url>
<machine> act reboot ssh``) to act on the machine, so an SSH reboot takes the
shared machine down and up again like any other reboot path.

Environment (set by the host's ``sshd_config`` ``SetEnv``)::

    RACKFLOW_LAB_CONTROL_URL   the control API
    RACKFLOW_LAB_MACHINE       the machine this host is
    RACKFLOW_LAB_SSH_FAULTS    JSON file of faults (read on every call)
    RACKFLOW_LAB_SSH_CALLS     JSON-lines file every call is appended to
    RACKFLOW_LAB_OS            ``linux`` (default) or ``windows``

Faults file: ``{"fail": {"reboot": "reboot: Permission denied"}, "hang": true}``:
``fail`` makes a tool print the message and exit 1 without acting; ``hang``
makes a tool that acted block until the host's shutdown kills the session, as
a real ``reboot`` does when systemd stops sshd before the command returns.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lab.machines import ctl

_HANG_S = 3600.0
_WINDOWS_UNKNOWN = (
    "'{tool}' is not recognized as an internal or external command,\n"
    "operable program or batch file."
)


def _linux_action(tool: str, args: list[str]) -> str | None:
    # The forms operators actually type: `reboot`, `reboot -f`,
    # `shutdown -r now|+0|0`, `shutdown -h|-P now`, `poweroff`.
    if tool == "reboot" and all(a in ("-f", "--force") for a in args):
        return "reboot"
    if tool == "poweroff" and not args:
        return "soft"
    if tool == "shutdown" and len(args) == 2 and args[1] in ("now", "+0", "0"):
        return {"-r": "reboot", "-h": "soft", "-P": "soft"}.get(args[0])
    return None


def _windows_action(tool: str, args: list[str]) -> str | None:
    # shutdown.exe takes /r or -r, case-insensitively; only an immediate one here.
    if tool != "shutdown":
        return None
    flags = [a.lower().replace("-", "/", 1) for a in args]
    if len(flags) == 3 and flags[1:] == ["/t", "0"]:
        return {"/r": "reboot", "/s": "soft"}.get(flags[0])
    return None


def _faults(path: str | None) -> dict[str, Any]:
    if not path or not Path(path).exists():
        return {}
    loaded: dict[str, Any] = json.loads(Path(path).read_text())
    return loaded


def _record(path: str | None, tool: str, args: list[str], status: int, error: str) -> None:
    if not path:
        return
    line = json.dumps(
        {"t": time.time(), "tool": tool, "args": args, "exit": status, "error": error}
    )
    with open(path, "a") as f:
        f.write(line + "\n")


def run(tool: str, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Carry out one call of a fake tool.

    Args:
        tool: ``reboot``, ``shutdown`` or ``poweroff``.
        args: Its arguments.
        env: The session environment (see the module docstring).

    Returns:
        (exit status, message for stderr).
    """
    windows = env.get("RACKFLOW_LAB_OS", "linux") == "windows"
    faults = _faults(env.get("RACKFLOW_LAB_SSH_FAULTS"))
    if windows and tool != "shutdown":
        return 1, _WINDOWS_UNKNOWN.format(tool=tool)
    message = faults.get("fail", {}).get(tool)
    if message:
        return 1, str(message)
    action = (_windows_action if windows else _linux_action)(tool, args)
    if action is None:
        return 1, f"{tool}: invalid arguments: {' '.join(args)}"
    try:
        ctl.act(env["RACKFLOW_LAB_CONTROL_URL"], env["RACKFLOW_LAB_MACHINE"], action, "ssh")
    except RuntimeError as exc:  # the machine refused (e.g. already shutting down)
        return 1, f"{tool}: {exc}"
    return 0, ""


def main(argv: list[str]) -> int:
    """Entry point: ``python -m lab.machines.sshd_tools.power <tool> [args...]``."""
    if not argv:
        print("usage: power <tool> [args...]", file=sys.stderr)
        return 2
    tool, args = argv[0], argv[1:]
    env = dict(os.environ)
    status, error = run(tool, args, env)
    _record(env.get("RACKFLOW_LAB_SSH_CALLS"), tool, args, status, error)
    if error:
        print(error, file=sys.stderr)
    if status == 0 and _faults(env.get("RACKFLOW_LAB_SSH_FAULTS")).get("hang"):
        sys.stdout.flush()
        time.sleep(_HANG_S)  # killed with the session when the machine goes down
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
