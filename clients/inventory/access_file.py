"""Read and write the machine-access YAML file (``rackflow inventory import/export``).

The file is a mapping with one key, ``machines``, holding a list of entries
(:class:`clients.inventory.access.MachineEntry`). Every entry is validated
before anything is written; errors name the line and the machine::

    machines.yaml line 14 (web02.example.com): pdu.outlet: Sentry3 outlet must look like AA1 ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import ValidationError

from clients.errors import PreconditionError
from clients.inventory.access import MachineEntry

__all__ = ["dump", "load"]


def _entry_nodes(root: yaml.Node | None, source: str) -> list[yaml.Node]:
    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        keys = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
        unknown = sorted(set(keys) - {"machines"})
        if unknown:
            raise PreconditionError(
                subject=source, reason=f"unknown top-level keys {unknown} (expected: machines)"
            )
        node = keys.get("machines")
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise PreconditionError(
                subject=source,
                reason=f"line {node.start_mark.line + 1}: machines must be a list",
            )
        return list(node.value)
    raise PreconditionError(subject=source, reason="expected a mapping with a 'machines' list")


def _label(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        for key in ("name", "service_tag"):
            if raw.get(key):
                return str(raw[key])
    return f"machines[{index}]"


def load(text: str, *, source: str = "<file>") -> list[MachineEntry]:
    """Parse and validate a machine-access file.

    Args:
        text: The YAML text.
        source: File name for error messages.

    Returns:
        The entries, in file order.

    Raises:
        PreconditionError: YAML syntax errors, invalid entries (all of them
            listed, each with its line and machine), or one machine twice.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PreconditionError(subject=source, reason=f"not valid YAML: {exc}") from None
    nodes = _entry_nodes(root, source)
    raw_entries = (yaml.safe_load(text) or {}).get("machines") or []
    problems: list[str] = []
    entries: list[MachineEntry] = []
    seen: dict[str, int] = {}
    for index, (node, raw) in enumerate(zip(nodes, raw_entries, strict=True)):
        line = node.start_mark.line + 1
        label = _label(raw, index)
        try:
            entry = MachineEntry.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"]) or "entry"
                problems.append(f"line {line} ({label}): {where}: {error['msg']}")
            continue
        for key in filter(None, (entry.name, entry.service_tag)):
            if key in seen:
                problems.append(f"line {line} ({label}): {key} already given on line {seen[key]}")
            seen[key] = line
        entries.append(entry)
    if problems:
        raise PreconditionError(
            subject=source,
            reason=f"{len(problems)} problem(s), nothing imported:\n  " + "\n  ".join(problems),
        )
    return entries


def dump(entries: Iterable[MachineEntry]) -> str:
    """Write entries in the format :func:`load` reads (secrets are never in it: blocks hold them).

    Args:
        entries: The machines.

    Returns:
        YAML text.
    """
    machines = [entry.model_dump(mode="json", exclude_none=True) for entry in entries]
    # Identity first, for people reading the file.
    ordered = [
        {
            **{k: m[k] for k in ("name", "service_tag") if k in m},
            **{k: v for k, v in m.items() if k not in ("name", "service_tag")},
        }
        for m in machines
    ]
    return yaml.safe_dump({"machines": ordered}, sort_keys=False, allow_unicode=True)
