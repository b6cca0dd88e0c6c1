"""Standard-library client of the reboot lab's control API, for out-of-process peers.

Scripts that ipmi_sim, snmpd or an sshd host run (they cannot import the
lab's loop) call this module::

    python -m lab.machines.ctl <control_url> <machine> get
    python -m lab.machines.ctl <control_url> <machine> act <action> <source>

``get`` prints the snapshot as JSON; ``act`` prints it after the action
(exit 1 with the error on stderr when the machine refused).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["act", "get"]
_TIMEOUT_S = 10.0


def get(control_url: str, machine: str) -> dict[str, Any]:
    """Read one machine's snapshot.

    Raises:
        urllib.error.URLError: The control API is unreachable.
    """
    with urllib.request.urlopen(f"{control_url}/machines/{machine}", timeout=_TIMEOUT_S) as r:  # noqa: S310 - loopback lab URL
        result: dict[str, Any] = json.load(r)
        return result


def act(control_url: str, machine: str, action: str, source: str) -> dict[str, Any]:
    """Ask a machine to carry out a power action.

    Raises:
        RuntimeError: The machine refused (its message).
        urllib.error.URLError: The control API is unreachable.
    """
    body = json.dumps({"action": action, "source": source}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback lab URL
        f"{control_url}/machines/{machine}/action",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as r:  # noqa: S310
            result: dict[str, Any] = json.load(r)
            return result
    except urllib.error.HTTPError as exc:
        raise RuntimeError(json.load(exc).get("error", str(exc))) from exc


def main(argv: list[str]) -> int:
    """CLI entry (see the module docstring)."""
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, machine, command, *rest = argv
    try:
        if command == "get":
            print(json.dumps(get(url, machine)))
        elif command == "act" and len(rest) == 2:
            print(json.dumps(act(url, machine, rest[0], rest[1])))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
