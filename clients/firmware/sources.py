"""Where firmware comes from: the sources an update can be driven from.

A pydantic tagged union on ``kind`` so a flow parameter, a YAML file or a
block field can hold any of them:

- :class:`HttpRepository` (``"repository"``): an HTTP(S) directory of Dell
  Update Packages, either named per component or listed in an index file.
- :class:`DellCatalog` (``"catalog"``): a Dell ``Catalog.xml(.gz)``, Dell's
  online one by default or a mirror; applied with InstallFromRepository.
- :class:`DirectUrl` (``"url"``): one package at one URL.

A package the operator names (a direct URL, or a file named per component in
a repository) must say which version it installs and which server models it
is for: from the fields, the Dell file name (version) or, for a repository,
its index. Without them rackflow could neither skip a server that is already
current nor refuse one the package is not for, so validation refuses what it
can already tell is missing.

Validation does no network I/O; fetching and choosing a package is
:mod:`clients.firmware.repository`'s job.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from clients.errors import PreconditionError
from clients.firmware.components import (
    UPDATE_ORDER,
    ApplyTime,
    parse_component,
    parse_components,
)
from clients.firmware.package import dup_version
from clients.redfish.models import ComponentKind

__all__ = [
    "DELL_ONLINE_CATALOG",
    "UPDATE_ORDER",
    "ApplyTime",
    "DellCatalog",
    "DirectUrl",
    "FirmwareSource",
    "HttpRepository",
    "NamedPackage",
    "RepositoryShare",
    "parse_component",
    "parse_components",
    "parse_source",
]

# Dell's current online catalog (the old downloads.dell.com/Catalog.xml is gone).
DELL_ONLINE_CATALOG = "https://dl.dell.com/catalog/catalog.xml.gz"


def _component(value: Any) -> ComponentKind:
    # pydantic reports ValueError as a validation error with this message.
    try:
        return parse_component(value)
    except PreconditionError as exc:
        raise ValueError(exc.reason) from exc


def _http_url(value: str, *, field: str, needs_file: bool = False) -> str:
    text = value.strip()
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{field}: not a URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise ValueError(f"{field}: scheme must be http or https, got {url.scheme or 'none'!r}")
    if not url.host:
        raise ValueError(f"{field}: no host in {text!r}")
    if url.userinfo:
        # The iDRAC logs the URLs it fetches; credentials do not belong in them.
        raise ValueError(f"{field}: must not carry credentials")
    if url.fragment:
        raise ValueError(f"{field}: must not have a #fragment")
    if needs_file and (not url.path or url.path.endswith("/")):
        raise ValueError(f"{field}: must name a file, got {text!r}")
    return text


def _relative_file(value: str, *, field: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError(f"{field}: empty file name")
    if "://" in text or text.startswith("/") or "\\" in text:
        raise ValueError(f"{field}: {text!r} must be a path relative to the repository")
    if ".." in text.split("/") or text.endswith("/"):
        raise ValueError(f"{field}: {text!r} must name a file inside the repository")
    return text


def _models(value: Any, *, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f'{field}: a list of model names, e.g. ["PowerEdge R640"]')
    names = tuple(str(m).strip() for m in value)
    if not all(names):
        raise ValueError(f"{field}: empty model name")
    return names


class _Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NamedPackage(_Source):
    """One package named by the operator in a repository, and what it is for.

    ``version`` and ``models`` left out are read from the Dell file name
    (version) or the repository's index entry for the same file; a package
    with neither is refused before any server is touched.
    """

    file: str = Field(description="Package file, relative to the repository's base_url")
    version: str | None = Field(
        default=None,
        description="Version it installs; None: from the Dell file name, else the index",
    )
    models: tuple[str, ...] = Field(
        default=(),
        description='Server models it is for (["PowerEdge R640"] or ["R640"]); '
        "empty: from the repository index",
    )

    @field_validator("file")
    @classmethod
    def _check_file(cls, value: str) -> str:
        return _relative_file(value, field="file")

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        return _version(value)

    @field_validator("models", mode="before")
    @classmethod
    def _check_models(cls, value: Any) -> tuple[str, ...]:
        return _models(value, field="models")

    @property
    def known_version(self) -> str | None:
        """The version given, else the one in the Dell file name (None: neither)."""
        return self.version or dup_version(self.file)


def _version(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("version: empty; leave it out to read it from the file name")
    return None if value is None else value.strip()


class HttpRepository(_Source):
    """An HTTP(S) directory of Dell Update Packages.

    Packages are named per component in ``packages`` (relative to
    ``base_url``) or listed in the ``index`` JSON file (``index.json``:
    ``{"packages": [{file, component, component_id, version, models}]}``).
    Explicit ``packages`` win over the index. A named package is a file name
    (``"BIOS_8R8XJ_WN64_2.19.1.EXE"``) or ``{file, version, models}``; what it
    leaves out comes from the index entry of the same file, and with no index
    it must give its models (and its version, unless the Dell file name has it).
    """

    kind: Literal["repository"] = "repository"
    base_url: str = Field(description="Repository URL, http(s)://host[:port]/path/")
    packages: dict[ComponentKind, NamedPackage] | None = Field(
        default=None,
        description="Package per component: a file relative to base_url, or "
        "{file, version, models}",
    )
    index: str | None = Field(
        default="index.json", description="Index file relative to base_url; None for no index"
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        text = _http_url(value, field="base_url")
        if httpx.URL(text).query:
            raise ValueError("base_url: must not have a query")
        return text if text.endswith("/") else text + "/"

    @field_validator("packages", mode="before")
    @classmethod
    def _check_packages(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError("packages: must map component names to file names")
        # A bare file name is the short form of {"file": name}.
        return {_component(k): {"file": v} if isinstance(v, str) else v for k, v in value.items()}

    @field_validator("index")
    @classmethod
    def _check_index(cls, value: str | None) -> str | None:
        return None if value is None else _relative_file(value, field="index")

    @model_validator(mode="after")
    def _needs_something(self) -> HttpRepository:
        if not self.packages and self.index is None:
            raise ValueError("a repository needs packages per component or an index file")
        if self.index is None:  # nothing to look a named package up in: it must say it all
            for kind, named in (self.packages or {}).items():
                where = f"packages.{kind.value}"
                if named.known_version is None:
                    raise ValueError(
                        f"{where}.version: the file name {named.file!r} carries no Dell "
                        "version and the repository has no index; set the version it installs"
                    )
                if not named.models:
                    raise ValueError(
                        f"{where}.models: the repository has no index to read them from; "
                        'set the server models the package is for, e.g. ["PowerEdge R640"]'
                    )
        return self

    def url_of(self, file: str) -> str:
        """Absolute URL of a file in the repository.

        Args:
            file: Path relative to ``base_url`` (an absolute http(s) URL is kept).

        Returns:
            The URL.
        """
        return str(httpx.URL(self.base_url).join(file))

    @property
    def index_url(self) -> str | None:
        """URL of the index file, or None when the repository has none."""
        return None if self.index is None else self.url_of(self.index)


class RepositoryShare(BaseModel):
    """The InstallFromRepository arguments that locate a catalog."""

    model_config = ConfigDict(frozen=True)

    host: str = Field(description="IPAddress field: host, with :port when not the default")
    share_type: Literal["HTTP", "HTTPS"]
    share_name: str = Field(description="Directory of the catalog on the host, no slashes around")
    catalog_file: str


class DellCatalog(_Source):
    """A Dell catalog (``Catalog.xml`` or ``.xml.gz``), online or mirrored.

    Applied by the iDRAC itself with InstallFromRepository (the share is
    derived from ``catalog_url``), or read by rackflow to pick one package
    per component for SimpleUpdate. A mirrored catalog must have its
    ``baseLocation`` rewritten (:func:`clients.firmware.rewrite_base_location`).
    """

    kind: Literal["catalog"] = "catalog"
    catalog_url: str = Field(
        default=DELL_ONLINE_CATALOG, description="URL of Catalog.xml or Catalog.xml.gz"
    )
    ignore_cert_warning: bool = Field(
        default=False, description="Let the iDRAC accept an untrusted HTTPS share certificate"
    )

    @field_validator("catalog_url")
    @classmethod
    def _check_catalog_url(cls, value: str) -> str:
        text = _http_url(value, field="catalog_url", needs_file=True)
        url = httpx.URL(text)
        if url.query:
            raise ValueError("catalog_url: must not have a query (the iDRAC cannot send one)")
        if not url.path.lower().endswith((".xml", ".xml.gz")):
            raise ValueError(f"catalog_url: must end in .xml or .xml.gz, got {text!r}")
        return text

    def share(self) -> RepositoryShare:
        """Split ``catalog_url`` into InstallFromRepository's share fields.

        Returns:
            Host (with a non-default port), HTTP/HTTPS, directory and catalog file name.
        """
        url = httpx.URL(self.catalog_url)
        directory, file = posixpath.split(url.path)
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        share_type: Literal["HTTP", "HTTPS"] = "HTTPS" if url.scheme == "https" else "HTTP"
        return RepositoryShare(
            host=host, share_type=share_type, share_name=directory.strip("/"), catalog_file=file
        )


class DirectUrl(_Source):
    """One Dell Update Package at one URL, for one component and some server models.

    The package itself is only downloaded by the iDRAC, so what it installs
    and which models it is for are told here: ``models`` always, ``version``
    unless the Dell file name carries it.
    """

    kind: Literal["url"] = "url"
    url: str = Field(description="http(s) URL of the package (the iDRAC downloads it)")
    component: ComponentKind = Field(description="Which component the package updates")
    version: str | None = Field(
        default=None, description="Version the package installs; None: read from the file name"
    )
    models: tuple[str, ...] = Field(
        default=(),
        description='Server models the package is for, e.g. ["PowerEdge R640"] (required)',
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value, field="url", needs_file=True)

    @field_validator("component", mode="before")
    @classmethod
    def _check_component(cls, value: Any) -> ComponentKind:
        return _component(value)

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        return _version(value)

    @field_validator("models", mode="before")
    @classmethod
    def _check_models(cls, value: Any) -> tuple[str, ...]:
        return _models(value, field="models")

    @model_validator(mode="after")
    def _knows_what_it_is(self) -> DirectUrl:
        if self.known_version is None:
            raise ValueError(
                f"version: the file name {posixpath.basename(httpx.URL(self.url).path)!r} "
                "carries no Dell version; set the version the package installs"
            )
        if not self.models:
            raise ValueError(
                "models: set the server models the package is for, e.g. "
                '["PowerEdge R640"] (a package is never sent to a server it cannot be checked for)'
            )
        return self

    @property
    def known_version(self) -> str | None:
        """The version given, else the one in the Dell file name (None: neither)."""
        return self.version or dup_version(httpx.URL(self.url).path)


FirmwareSource = Annotated[HttpRepository | DellCatalog | DirectUrl, Field(discriminator="kind")]

_SOURCE_ADAPTER: TypeAdapter[HttpRepository | DellCatalog | DirectUrl] = TypeAdapter(FirmwareSource)


def parse_source(
    data: Mapping[str, Any] | HttpRepository | DellCatalog | DirectUrl,
) -> HttpRepository | DellCatalog | DirectUrl:
    """Validate a firmware source given as plain data (flow parameter, YAML).

    Args:
        data: A mapping with ``kind`` (``repository``, ``catalog`` or ``url``), or a source.

    Returns:
        The validated source.

    Raises:
        PreconditionError: Unknown kind or invalid fields, naming each problem.
    """
    if isinstance(data, HttpRepository | DellCatalog | DirectUrl):
        return data
    try:
        return _SOURCE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'source'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PreconditionError(subject="firmware source", reason=problems) from None
