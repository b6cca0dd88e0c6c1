"""Repository index files (``index.json``) and choosing a package from them.

Format: ``{"packages": [{"file", "component", "component_id", "version",
"models": [...], "name"}]}`` (or the bare list); ``file`` is relative to the
index. An entry without ``models`` fits every model.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from clients.errors import PreconditionError, ProtocolError
from clients.firmware.catalog import model_key, version_key
from clients.firmware.package import Package
from clients.redfish.models import ComponentKind

__all__ = ["choose_from_index", "json_document", "parse_index"]


def json_document(data: bytes, *, target: str) -> Any:
    """Decode a JSON document.

    Args:
        data: Body bytes.
        target: Where it came from.

    Returns:
        The decoded value.

    Raises:
        ProtocolError: Not JSON.
    """
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(target=target, detail=f"not JSON: {exc}") from exc


def parse_index(document: Any, *, where: str) -> list[Package]:
    """Read a decoded index.

    Args:
        document: The decoded JSON.
        where: Index URL, for error messages.

    Returns:
        One package per entry (``uri`` still relative to the index).

    Raises:
        ProtocolError: Not an index, or a malformed entry.
    """
    items = document.get("packages") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ProtocolError(target=where, detail='index must be a list or {"packages": [...]}')
    return [_index_package(i, item, where=where) for i, item in enumerate(items)]


def _index_package(position: int, item: Any, *, where: str) -> Package:
    """One index entry ``{file, component, component_id, version, models, name}``."""
    if not isinstance(item, dict):
        raise ProtocolError(target=where, detail=f"packages[{position}] is not an object")
    file, version = item.get("file"), item.get("version")
    if not isinstance(file, str) or not file or not isinstance(version, str) or not version:
        raise ProtocolError(target=where, detail=f"packages[{position}]: needs file and version")
    try:
        kind = ComponentKind(str(item.get("component", "")).strip().lower())
    except ValueError:
        name = item.get("component")
        raise ProtocolError(
            target=where, detail=f"packages[{position}]: unknown component {name!r}"
        ) from None
    models = item.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ProtocolError(target=where, detail=f"packages[{position}]: models must be strings")
    cid = item.get("component_id")
    return Package(
        uri=file,  # made absolute against the index URL by the caller
        file=posixpath.basename(file),
        component=kind,
        version=version,
        component_id=None if cid is None else str(cid),
        models=tuple(models),
        name=item.get("name") if isinstance(item.get("name"), str) else None,
    )


def _fits_model(package: Package, model: str) -> bool:
    return not package.models or any(model_key(m) == model_key(model) for m in package.models)


def choose_from_index(
    packages: list[Package],
    *,
    kind: ComponentKind,
    model: str | None,
    cid: str | None,
    where: str,
) -> Package:
    """Newest package of a kind (and component id) that fits the model.

    Args:
        packages: The index's packages.
        kind: Component kind.
        model: Server model; None skips the model check.
        cid: Installed component id; entries with another id do not count.
        where: Index URL, for error messages.

    Returns:
        The package.

    Raises:
        PreconditionError: None of that kind, or none for the model.
    """
    found = [p for p in packages if p.component == kind]
    if cid:
        found = [p for p in found if p.component_id in (None, cid)]
    if not found:
        raise PreconditionError(
            subject=f"{kind.value} firmware", reason=f"no {kind.value} package in {where}"
        )
    fitting = [p for p in found if model is None or _fits_model(p, model)]
    if not fitting:
        listed = sorted({m for p in found for m in p.models})
        raise PreconditionError(
            subject=f"{kind.value} firmware",
            reason=f"no {kind.value} package for model {model} in {where} "
            f"(packages exist for: {', '.join(listed)})",
        )
    return max(fitting, key=lambda p: version_key(p.version or ""))
