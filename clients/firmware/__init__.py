"""Firmware sources, Dell catalogs and package resolution (no Prefect, no Redfish calls).

:mod:`~clients.firmware.sources` says where firmware comes from,
:mod:`~clients.firmware.catalog` reads Dell catalogs, and
:mod:`~clients.firmware.repository` picks the package for one component of
one server model.
"""

from clients.firmware.catalog import (
    Catalog,
    CatalogEntry,
    CatalogModel,
    parse_catalog,
    rewrite_base_location,
    version_key,
)
from clients.firmware.package import Package, dup_version
from clients.firmware.repository import PackageResolver, package_base, resolve_package
from clients.firmware.sources import (
    DELL_ONLINE_CATALOG,
    UPDATE_ORDER,
    ApplyTime,
    DellCatalog,
    DirectUrl,
    FirmwareSource,
    HttpRepository,
    NamedPackage,
    RepositoryShare,
    parse_component,
    parse_components,
    parse_source,
)

__all__ = [
    "DELL_ONLINE_CATALOG",
    "UPDATE_ORDER",
    "ApplyTime",
    "Catalog",
    "CatalogEntry",
    "CatalogModel",
    "DellCatalog",
    "DirectUrl",
    "FirmwareSource",
    "HttpRepository",
    "NamedPackage",
    "Package",
    "PackageResolver",
    "RepositoryShare",
    "dup_version",
    "package_base",
    "parse_catalog",
    "parse_component",
    "parse_components",
    "parse_source",
    "resolve_package",
    "rewrite_base_location",
    "version_key",
]
