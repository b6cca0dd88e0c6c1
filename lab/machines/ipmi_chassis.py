"""ipmi_sim's ``chassis_control`` program: BMC power requests -> the lab machine.

:class:`lab.machines.ipmi.IpmiSimPeer` configures each ipmi_sim with::

    chassis_control "<python> -m lab.machines.ipmi_chassis <control_url> <machine> <log> 0x20"

and ipmi_sim appends the request, so this runs as
``... 0x20 get power`` or ``... 0x20 set <name> <value>``.

What ipmi_sim (OpenIPMI 2.0.33) asks for each ``ipmitool chassis power``
verb, found by logging every call:

==========  ======================================================
``status``  ``get power``  (print ``power:1`` or ``power:0``)
``off``     ``set power 0``                   -> act ``off``
``on``      ``set power 1``                   -> act ``on``
``cycle``   ``set power 0``, ~1 s, ``get power``, ``set power 1``
            (ipmi_sim runs the cycle itself)  -> ``off`` then ``on``
``reset``   ``set reset 1``                   -> act ``reset``
``soft``    ``set shutdown 1``                -> act ``soft``
``bootdev`` ``set boot <dev>``                -> logged only
==========  ======================================================

A ``set cycle 1`` never comes from this ipmi_sim; it is mapped to ``cycle``
anyway. Every call is appended to ``<log>`` as one JSON line (what was
asked, which action, the answer or the refusal) for tests to read.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from lab.machines.ctl import act, get

__all__ = ["main", "translate"]

SOURCE = "ipmi"
# (name, value) ipmi_sim sets -> machine action
_SETS = {
    ("power", "0"): "off",
    ("power", "1"): "on",
    ("reset", "1"): "reset",
    ("cycle", "1"): "cycle",
    ("shutdown", "1"): "soft",
}


def translate(name: str, value: str) -> str | None:
    """Map one ``set <name> <value>`` of ipmi_sim to a machine action.

    Args:
        name: What ipmi_sim sets (``power``, ``reset``, ``shutdown``, ``boot``...).
        value: The value it sets.

    Returns:
        The machine action, or None for requests without a power effect (boot device).
    """
    return _SETS.get((name, value.strip()))


def _log(path: str, entry: dict[str, Any]) -> None:
    # One small O_APPEND write per call: lines from several ipmi_sims do not interleave.
    line = json.dumps({"t": time.time(), **entry}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _get(url: str, machine: str, names: list[str]) -> list[str]:
    snapshot = get(url, machine)
    # Names we do not model (boot flags) get no line: ipmi_sim keeps its own.
    return [f"power:{1 if snapshot['powered'] else 0}" for n in names if n == "power"]


def main(argv: list[str]) -> int:
    """Serve one ipmi_sim request (see the module docstring).

    Args:
        argv: ``<control_url> <machine> <log> <mc> get <name>...`` or
            ``<control_url> <machine> <log> <mc> set <name> <value>``.

    Returns:
        0 when done, 1 when the machine refused or the lab is unreachable, 2 on bad usage.
    """
    if len(argv) < 6:
        print(__doc__, file=sys.stderr)
        return 2
    url, machine, log_path, mc, verb, *args = argv
    entry: dict[str, Any] = {"machine": machine, "mc": mc, "request": [verb, *args]}
    try:
        if verb == "get":
            lines = _get(url, machine, args)
            entry["answer"] = lines
            print("\n".join(lines))
        elif verb == "set" and len(args) == 2:
            action = translate(args[0], args[1])
            entry["action"] = action
            if action is not None:
                snapshot = act(url, machine, action, SOURCE)
                entry["answer"] = {k: snapshot[k] for k in ("powered", "phase", "answering")}
        else:
            entry["error"] = "bad usage"
            return 2
    except (RuntimeError, OSError) as exc:  # refused by the machine, or lab unreachable
        entry["error"] = str(exc)
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        _log(log_path, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
