"""Choose the package that updates one component of one server model.

``resolve_package`` reads a source (repository index, Dell catalog, or a
direct URL) over async httpx and answers with a :class:`Package`: the URI
the iDRAC will download (SimpleUpdate ``ImageURI``) and the version it
installs, refusing with PreconditionError when nothing applies to the model.
A package the operator named (a direct URL, a file named in a repository)
is checked against the model too, with the models given or listed for it in
the repository index: a wrong-model package is refused here, before any
server is touched, rather than failing in the iDRAC's job. No Prefect; no
I/O outside the ``resolve`` calls.
"""

from __future__ import annotations

import logging
import posixpath
import ssl

import httpx

from clients.closing import AsyncClosing
from clients.errors import (
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RemoteError,
    ServerError,
    TransportError,
)
from clients.firmware.catalog import Catalog, CatalogEntry, model_key, parse_catalog
from clients.firmware.index import choose_from_index, json_document, parse_index
from clients.firmware.package import Package, dup_version
from clients.firmware.sources import (
    DellCatalog,
    DirectUrl,
    HttpRepository,
    NamedPackage,
    parse_component,
)
from clients.redfish.models import ComponentKind

__all__ = ["Package", "PackageResolver", "dup_version", "resolve_package"]

logger = logging.getLogger("rackflow.clients.firmware")

# Hosts of Dell's own download service: packages of a catalog served from
# anywhere else are looked for beside the catalog (a mirror).
DELL_HOSTS = frozenset({"dl.dell.com", "downloads.dell.com", "ftp.dell.com"})
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


class PackageResolver(AsyncClosing):
    """Resolve packages from firmware sources; caches each fetched index/catalog.

    One resolver can serve a whole fleet: the catalog is fetched once, not
    once per server. Use as ``async with PackageResolver() as r:``.

    Args:
        http_client: A shared httpx client, used as is and not closed here.
        transport: Transport for an own client (tests: ``httpx.MockTransport``).
        timeout: Per-request timeout in seconds.
        verify: TLS verification for an own client.

    Raises:
        PreconditionError: Both ``http_client`` and ``transport`` given.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if http_client is not None and transport is not None:
            raise PreconditionError(
                subject="transport", reason="give either transport or http_client, not both"
            )
        self._client = http_client
        self._owns_client = http_client is None
        self._transport = transport
        self._timeout = timeout
        self._verify = verify
        self._documents: dict[str, bytes] = {}

    async def aclose(self) -> None:
        """Close the httpx client if this resolver built it."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self._verify, timeout=self._timeout, transport=self._transport
            )
        return self._client

    async def fetch(self, url: str) -> bytes:
        """GET a document (index or catalog), once per resolver.

        Args:
            url: http(s) URL.

        Returns:
            The body bytes.

        Raises:
            TransportError: Not reachable. NotFoundError: 404.
            ServerError: 5xx. RemoteError: other error statuses.
            ProtocolError: Body over the size limit.
        """
        cached = self._documents.get(url)
        if cached is not None:
            return cached
        try:
            response = await self._http().get(url, follow_redirects=True, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise TransportError(target=url, reason=f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            raise NotFoundError(status=404, message="not found", target=url)
        if response.status_code >= 500:
            raise ServerError(status=response.status_code, idempotent=True, target=url)
        if not response.is_success:
            raise RemoteError(
                status=response.status_code, message=response.reason_phrase, target=url
            )
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ProtocolError(target=url, detail="document is too large")
        self._documents[url] = response.content
        return response.content

    async def catalog(self, url: str) -> Catalog:
        """Fetch and parse a Dell catalog.

        Args:
            url: URL of ``Catalog.xml`` or ``Catalog.xml.gz``.

        Returns:
            The parsed catalog.

        Raises:
            ProtocolError: Not a catalog. Others: see :meth:`fetch`.
        """
        return parse_catalog(await self.fetch(url), target=url)

    async def resolve(
        self,
        source: HttpRepository | DellCatalog | DirectUrl,
        *,
        model: str | None,
        component: ComponentKind | str,
        component_id: str | None = None,
    ) -> Package:
        """Pick the package that updates ``component`` on a ``model`` server.

        Args:
            source: Where firmware comes from.
            model: The server's model (``PowerEdge R640``); None skips the model check.
            component: Component kind or name (``bios``, ``idrac``, ...).
            component_id: The installed component's Dell id, to tell apart
                e.g. two RAID controllers; optional.

        Returns:
            The newest applicable package.

        Raises:
            PreconditionError: Unknown component, no package for it, none for this
                model, or a named package whose version or models are unknown.
            ProtocolError: A malformed index or catalog.
            TransportError, RemoteError: The index or catalog could not be fetched.
        """
        kind = parse_component(component)
        if isinstance(source, DirectUrl):
            return _direct(source, kind, model)
        if isinstance(source, HttpRepository):
            return await self._from_repository(source, kind, model, component_id)
        return await self._from_catalog(source, kind, model, component_id)

    async def _from_repository(
        self, source: HttpRepository, kind: ComponentKind, model: str | None, cid: str | None
    ) -> Package:
        if source.packages and kind in source.packages:
            return await self._named(source, kind, source.packages[kind], model)
        index_url = source.index_url
        if index_url is None:
            named = ", ".join(sorted(k.value for k in source.packages or {}))
            raise PreconditionError(
                subject=f"{kind.value} firmware",
                reason=f"repository {source.base_url} names no {kind.value} package "
                f"(it names: {named or 'none'}) and has no index",
            )
        document = json_document(await self.fetch(index_url), target=index_url)
        packages = parse_index(document, where=index_url)
        chosen = choose_from_index(packages, kind=kind, model=model, cid=cid, where=index_url)
        return chosen.model_copy(update={"uri": str(httpx.URL(index_url).join(chosen.uri))})

    async def _named(
        self, source: HttpRepository, kind: ComponentKind, named: NamedPackage, model: str | None
    ) -> Package:
        """A package named by the operator, completed from its index entry when needed."""
        uri = source.url_of(named.file)
        version, models = named.known_version, named.models or None
        listed = None
        if (version is None or models is None) and source.index_url is not None:
            listed = await self._listed(source.index_url, uri)
            if listed is not None:
                version = version or listed.version
                models = models if models is not None else listed.models
        where = f"source.packages.{kind.value} ({named.file})"
        unlisted = f" nor listed in {source.index_url}" if source.index_url else ""
        if version is None:
            raise PreconditionError(
                subject=f"{kind.value} firmware",
                reason=f"{where}: version unknown (not in the file name{unlisted}); "
                f"set source.packages.{kind.value}.version",
            )
        if models is None:
            raise PreconditionError(
                subject=f"{kind.value} firmware",
                reason=f"{where}: the server models it is for are unknown (not given{unlisted}); "
                f'set source.packages.{kind.value}.models, e.g. ["PowerEdge R640"]',
            )
        package = Package(
            uri=uri,
            file=posixpath.basename(named.file),
            component=kind,
            version=version,
            component_id=listed.component_id if listed else None,
            models=models,
            name=listed.name if listed else None,
        )
        _check_model(package, model, where=where)
        return package

    async def _listed(self, index_url: str, uri: str) -> Package | None:
        """The index entry of the file at ``uri`` (None: not listed, or no index there)."""
        try:
            document = json_document(await self.fetch(index_url), target=index_url)
        except NotFoundError:
            return None
        for entry in parse_index(document, where=index_url):
            if str(httpx.URL(index_url).join(entry.uri)) == uri:
                return entry
        return None

    async def _from_catalog(
        self, source: DellCatalog, kind: ComponentKind, model: str | None, cid: str | None
    ) -> Package:
        catalog = await self.catalog(source.catalog_url)
        found = catalog.candidates(component=kind, model=model, component_id=cid)
        if not found:
            _refuse_catalog(catalog, kind=kind, model=model, cid=cid, where=source.catalog_url)
        entry = found[0]
        base = package_base(source.catalog_url, catalog)
        return _from_entry(entry, kind, base)


async def resolve_package(
    source: HttpRepository | DellCatalog | DirectUrl,
    *,
    model: str | None,
    component: ComponentKind | str,
    component_id: str | None = None,
    http_client: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 60.0,
    verify: ssl.SSLContext | bool = True,
) -> Package:
    """Resolve one package with a throwaway :class:`PackageResolver`.

    Args:
        source: Where firmware comes from.
        model: The server's model; None skips the model check.
        component: Component kind or name.
        component_id: The installed component's Dell id (optional).
        http_client: Shared httpx client (not closed here).
        transport: Transport for an own client (tests).
        timeout: Per-request timeout in seconds.
        verify: TLS verification for an own client.

    Returns:
        The package. See :meth:`PackageResolver.resolve` for errors.
    """
    async with PackageResolver(
        http_client=http_client, transport=transport, timeout=timeout, verify=verify
    ) as resolver:
        return await resolver.resolve(
            source, model=model, component=component, component_id=component_id
        )


def _direct(source: DirectUrl, kind: ComponentKind, model: str | None) -> Package:
    if source.component != kind:
        raise PreconditionError(
            subject=f"{kind.value} firmware",
            reason=f"the direct URL {source.url} is a {source.component.value} package",
        )
    path = httpx.URL(source.url).path
    package = Package(
        uri=source.url,
        file=posixpath.basename(path),
        component=kind,
        version=source.known_version,
        models=source.models,
    )
    _check_model(package, model, where=f"source.url ({package.file})")
    return package


def _check_model(package: Package, model: str | None, *, where: str) -> None:
    """Refuse a named package not meant for ``model`` (no models listed: fits every model).

    Raises:
        PreconditionError: The package lists models and ``model`` is not one of them.
    """
    if model is None or not package.models:
        return
    if any(model_key(m) == model_key(model) for m in package.models):
        return
    raise PreconditionError(
        subject=f"{package.component.value} firmware",
        reason=f"{where} is for {', '.join(package.models)}, not for model {model}",
    )


def _refuse_catalog(
    catalog: Catalog, *, kind: ComponentKind, model: str | None, cid: str | None, where: str
) -> None:
    any_model = catalog.candidates(component=kind, model=None, component_id=cid)
    what = f"{kind.value} package" + (f" (component id {cid})" if cid else "")
    if not any_model:
        raise PreconditionError(subject=f"{kind.value} firmware", reason=f"no {what} in {where}")
    listed = sorted({m.name for e in any_model for m in e.models})
    raise PreconditionError(
        subject=f"{kind.value} firmware",
        reason=f"no {what} for model {model} in {where} (packages exist for: "
        f"{', '.join(listed[:12])}{', ...' if len(listed) > 12 else ''})",
    )


def package_base(catalog_url: str, catalog: Catalog) -> str:
    """Where a catalog's package paths are relative to.

    Dell's own catalogs name Dell's download host in ``baseLocation``. A
    mirror that kept that ``baseLocation`` still serves the packages beside
    the catalog, so SimpleUpdate is pointed at the mirror, not at Dell.

    Args:
        catalog_url: URL the catalog was read from.
        catalog: The parsed catalog.

    Returns:
        A base URL ending in ``/``.
    """
    url = httpx.URL(catalog_url)
    beside = str(url.copy_with(path=posixpath.dirname(url.path).rstrip("/") + "/", query=None))
    base = (catalog.base_location or "").strip().rstrip("/")
    if not base:
        return beside
    _, sep, rest = base.partition("://")
    host = (rest if sep else base).split("/", 1)[0].split(":", 1)[0].lower()
    if host in DELL_HOSTS and (url.host or "").lower() not in DELL_HOSTS:
        logger.debug("catalog %s is a mirror of Dell's; packages are read beside it", catalog_url)
        return beside
    if sep:
        return f"{base}/"
    protocols = catalog.access_protocols
    scheme = url.scheme
    if protocols and scheme.upper() not in protocols:
        scheme = "https" if "HTTPS" in protocols else "http"
    return f"{scheme}://{base}/"


def _from_entry(entry: CatalogEntry, kind: ComponentKind, base: str) -> Package:
    return Package(
        uri=str(httpx.URL(base).join(entry.path.lstrip("/"))),
        file=entry.file,
        component=kind,
        version=entry.vendor_version,
        component_id=entry.component_ids[0] if entry.component_ids else None,
        models=tuple(m.name for m in entry.models),
        name=entry.name,
        reboot_required=entry.reboot_required,
    )
