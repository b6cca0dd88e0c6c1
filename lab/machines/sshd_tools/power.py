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
    RACKFLOW_LAB_SSH_STALLS    JSON-lines file of what stalled tools did
    RACKFLOW_LAB_OS            ``linux`` (default) or ``windows``

Faults file: ``{"fail": {"reboot": "reboot: Permission denied"}, "hang": true,
"silent": false, "stall": ["reboot"]}``:

* ``fail`` makes a tool (or one exact command line, ``"shutdown -r now"``)
  print the message and exit 1 without acting;
* ``hang`` makes a tool that acted block until the host's shutdown kills the
  session, as a real ``reboot`` does when systemd stops sshd before the
  command returns;
* ``silent`` (with ``hang``) also freezes the host's sshd (SIGSTOP: listener
  and this connection), so the client's connection goes silent instead of
  closing, as when a reboot takes the network down before sshd;
* ``stall`` makes a tool block forever without acting, like a ``reboot``
  stuck on an unresponsive init. It is recorded as a call with exit ``null``
  when it starts, notes ``hung up`` in the stalls file once sshd closes its
  output (the client closed the channel or the connection), and hangs on
  until the machine goes down.
"""

from __future__ import annotations

import json
import os
import select
import signal
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


def _record(path: str | None, tool: str, args: list[str], status: int | None, error: str) -> None:
    if not path:
        return
    entry = {"t": time.time(), "tool": tool, "args": args, "exit": status, "error": error}
    _append(path, entry)


def _append(path: str, entry: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def _stall(path: str | None, tool: str) -> None:
    """Never return and do nothing, noting when sshd stops reading our output."""
    note = {"tool": tool, "pid": os.getpid()}
    if path:
        _append(path, {"t": time.time(), "event": "stalled", **note})
    sys.stdout.flush()
    poller = select.poll()
    # No events asked: poll reports only POLLERR / POLLHUP, i.e. the pipe's reader
    # (sshd) closed it because the channel or the connection was closed.
    poller.register(sys.stdout.fileno(), 0)
    poller.poll()
    if path:
        _append(path, {"t": time.time(), "event": "hung up", **note})
    time.sleep(_HANG_S)  # a stuck process does not care: it dies with the machine


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
    fails = faults.get("fail", {})
    # A whole command line ("shutdown -r now") is more specific than its tool.
    message = fails.get(" ".join([tool, *args])) or fails.get(tool)
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


def _parent(pid: int) -> int:
    # The command name may contain spaces and parentheses: ppid follows the last ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _go_silent(env: dict[str, str]) -> None:
    """Freeze the host's sshd processes above us (connection and listener): no network.

    Only up to the host's own listener (its pid file), never beyond it: the
    processes above the lab are not the lab's to stop.
    """
    listener = int((Path(env["RACKFLOW_LAB_SSH_HOST"]) / "sshd.pid").read_text())
    chain, pid = [], os.getppid()
    while pid > 1 and pid != listener:
        chain.append(pid)
        pid = _parent(pid)
    if pid != listener:
        return  # not run by this host's sshd: nothing to freeze
    for frozen in [*chain, listener]:
        if Path(f"/proc/{frozen}/comm").read_text().strip() == "sshd":
            os.kill(frozen, signal.SIGSTOP)  # the lab SIGKILLs them when the machine goes down


def main(argv: list[str]) -> int:
    """Entry point: ``python -m lab.machines.sshd_tools.power <tool> [args...]``."""
    if not argv:
        print("usage: power <tool> [args...]", file=sys.stderr)
        return 2
    tool, args = argv[0], argv[1:]
    env = dict(os.environ)
    faults = _faults(env.get("RACKFLOW_LAB_SSH_FAULTS"))
    if tool in faults.get("stall", ()):
        _record(env.get("RACKFLOW_LAB_SSH_CALLS"), tool, args, None, "stalled")
        _stall(env.get("RACKFLOW_LAB_SSH_STALLS"), tool)
        return 1
    status, error = run(tool, args, env)
    _record(env.get("RACKFLOW_LAB_SSH_CALLS"), tool, args, status, error)
    if error:
        print(error, file=sys.stderr)
    if status == 0 and faults.get("hang"):
        sys.stdout.flush()
        if faults.get("silent"):
            _go_silent(env)
        time.sleep(_HANG_S)  # killed with the session when the machine goes down
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
