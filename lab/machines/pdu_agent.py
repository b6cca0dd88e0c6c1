"""The ``pass_persist`` agent behind a lab PDU's snmpd (run by snmpd, one per PDU).

snmpd starts it as ``python -m lab.machines.pdu_agent <config.json>`` (through
the wrapper script :class:`lab.machines.pdu.PduPeer` writes) and talks to it
over stdin/stdout with net-snmp's pass_persist protocol::

    PING                 -> PONG
    get / <oid>          -> <oid> / <type> / <value>   or NONE
    getnext / <oid>      -> the next served object     or NONE
    set / <oid> / <type value> / (blank)  -> DONE      or an SNMP error name

snmpd itself checks communities and v3 users (a read-only community never
reaches a ``set`` here). The outlet table follows the vendor MIBs:

* APC PowerNet sPDUOutletControlTable ``1.3.6.1.4.1.318.1.1.4.4.2.1``:
  ``.1`` index, ``.3`` sPDUOutletCtl (read 1 on / 2 off; write 1 on,
  2 off, 3 reboot), ``.4`` name. Indexed by the outlet number.
* ServerTech Sentry3 outletTable ``1.3.6.1.4.1.1718.3.2.3.1``: ``.2``
  outletID (``AA1``), ``.3`` outletName, ``.5`` outletStatus (1 on, 0 off),
  ``.10`` outletControlState (1 idleOn, 0 idleOff), ``.11``
  outletControlAction (reads 0 none; write 1 on, 2 off, 3 reboot). Indexed
  by tower.infeed.outlet.

Outlets wired to a lab machine act on it through :mod:`lab.machines.ctl`
(source ``pdu``: off -> off, on -> on, reboot -> cycle); unwired outlets keep
their state here. Every SET is appended as a JSON line to the config's
``set_log``.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lab.machines import ctl

__all__ = ["APC_TABLE", "SENTRY3_TABLE", "Agent", "main"]

Oid = tuple[int, ...]
APC_TABLE: Oid = (1, 3, 6, 1, 4, 1, 318, 1, 1, 4, 4, 2, 1)
SENTRY3_TABLE: Oid = (1, 3, 6, 1, 4, 1, 1718, 3, 2, 3, 1)
_SOURCE = "pdu"
# Both MIBs use the same write values for the control column.
_ACTIONS = {1: "on", 2: "off", 3: "cycle"}


@dataclass
class Outlet:
    """One outlet of the PDU (``powered`` is used for unwired outlets only)."""

    label: str
    index: Oid
    machine: str | None
    powered: bool = True


def _parse_oid(text: str) -> Oid:
    text = text.strip().lstrip(".")
    return tuple(int(part) for part in text.split(".")) if text else ()


def _dotted(oid: Oid) -> str:
    return "." + ".".join(str(part) for part in oid)


class Agent:
    """Answers pass_persist requests for one PDU.

    Args:
        config: ``model`` (``apc``/``sentry3``), ``control_url``, ``set_log``
            and ``outlets`` (``[{"label", "index", "machine"}, ...]``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.model = str(config["model"])
        self.table = APC_TABLE if self.model == "apc" else SENTRY3_TABLE
        self.control_column = 3 if self.model == "apc" else 11
        self.columns = (1, 3, 4) if self.model == "apc" else (2, 3, 5, 10, 11)
        self.control_url = str(config["control_url"])
        self.set_log = Path(config["set_log"])
        self.outlets = {
            tuple(o["index"]): Outlet(o["label"], tuple(o["index"]), o.get("machine"))
            for o in config["outlets"]
        }
        # Column-major order is the MIB's lexicographic order (walks rely on it).
        self.objects: list[tuple[Oid, int, Outlet]] = sorted(
            (
                (self.table + (column,) + index, column, outlet)
                for column in self.columns
                for index, outlet in self.outlets.items()
            ),
            key=lambda item: item[0],
        )

    # -- reads ----------------------------------------------------------------
    def powered(self, outlet: Outlet) -> bool:
        """The outlet's power (the wired machine's, read from the control API)."""
        if outlet.machine is None:
            return outlet.powered
        return bool(ctl.get(self.control_url, outlet.machine)["powered"])

    def value(self, column: int, outlet: Outlet) -> tuple[str, str]:
        """The (pass_persist type, value) of one object."""
        if self.model == "apc":
            if column == 1:
                return "integer", str(outlet.index[0])
            if column == 3:
                return "integer", "1" if self.powered(outlet) else "2"
            return "string", outlet.machine or ""
        if column == 2:
            return "string", outlet.label
        if column == 3:
            return "string", outlet.machine or ""
        if column in (5, 10):  # outletStatus on(1)/off(0); controlState idleOn(1)/idleOff(0)
            return "integer", "1" if self.powered(outlet) else "0"
        return "integer", "0"  # outletControlAction reads none(0)

    def _find(self, oid: Oid) -> tuple[int, Outlet] | None:
        prefix = len(self.table)
        if oid[:prefix] != self.table or len(oid) <= prefix:
            return None
        column, index = oid[prefix], oid[prefix + 1 :]
        outlet = self.outlets.get(index)
        if outlet is None or column not in self.columns:
            return None
        return column, outlet

    def get(self, oid: Oid) -> list[str]:
        """Answer lines of a ``get``."""
        found = self._find(oid)
        if found is None:
            return ["NONE"]
        return [_dotted(oid), *self.value(*found)]

    def getnext(self, oid: Oid) -> list[str]:
        """Answer lines of a ``getnext`` (the first served object after ``oid``)."""
        for name, column, outlet in self.objects:
            if name > oid:
                return [_dotted(name), *self.value(column, outlet)]
        return ["NONE"]

    # -- writes ---------------------------------------------------------------
    def set(self, oid: Oid, typed_value: str) -> str:
        """Carry out a ``set``; the answer is ``DONE`` or an SNMP error name."""
        found = self._find(oid)
        kind, _, raw = typed_value.strip().partition(" ")
        entry: dict[str, Any] = {"t": time.time(), "oid": _dotted(oid), "value": raw.strip()}
        if found is None or found[0] != self.control_column:
            return self._logged(entry, "not-writable")
        outlet = found[1]
        entry.update(outlet=outlet.label, machine=outlet.machine)
        if kind != "integer":
            return self._logged(entry, "wrong-type")
        try:
            action = _ACTIONS[int(raw)]
        except (KeyError, ValueError):
            return self._logged(entry, "wrong-value")
        entry["action"] = action
        if outlet.machine is None:
            # An unwired outlet: "cycle" ends powered, like the wired ones.
            outlet.powered = action != "off"
            return self._logged(entry, "DONE")
        try:
            ctl.act(self.control_url, outlet.machine, action, _SOURCE)
        except (RuntimeError, urllib.error.URLError, OSError) as exc:
            entry["error"] = str(exc)
            return self._logged(entry, "commit-failed")
        return self._logged(entry, "DONE")

    def _logged(self, entry: dict[str, Any], result: str) -> str:
        entry["result"] = result
        with self.set_log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        return result

    # -- protocol -------------------------------------------------------------
    def handle(self, command: str, stdin: TextIO) -> list[str]:
        """Answer one command (reading its argument lines from ``stdin``)."""
        if command == "PING":
            return ["PONG"]
        if command in ("get", "getnext"):
            oid = _parse_oid(stdin.readline())
            return self.get(oid) if command == "get" else self.getnext(oid)
        if command == "set":
            oid = _parse_oid(stdin.readline())
            # snmpd follows the value with a blank line; the main loop skips it.
            return [self.set(oid, stdin.readline())]
        return ["NONE"]

    def serve(self, stdin: TextIO, stdout: TextIO) -> None:
        """Serve until snmpd closes our stdin."""
        while True:
            line = stdin.readline()
            if not line:
                return
            command = line.strip()
            if not command:  # the blank line after a SET value
                continue
            try:
                answer = self.handle(command, stdin)
            except Exception:  # keep the pipe in step with snmpd whatever happened
                traceback.print_exc(file=sys.stderr)
                answer = ["gen-error"] if command == "set" else ["NONE"]
            stdout.write("\n".join(answer) + "\n")
            stdout.flush()


def main(argv: list[str]) -> int:
    """Entry point: ``python -m lab.machines.pdu_agent <config.json>``."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    Agent(config).serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
