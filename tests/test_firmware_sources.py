"""Firmware sources (validation, tagged union) and package resolution over real HTTP on loopback."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from clients.errors import NotFoundError, PreconditionError, ProtocolError
from clients.firmware import (
    DELL_ONLINE_CATALOG,
    UPDATE_ORDER,
    ApplyTime,
    DellCatalog,
    DirectUrl,
    HttpRepository,
    NamedPackage,
    PackageResolver,
    parse_components,
    parse_source,
    resolve_package,
    rewrite_base_location,
)
from clients.redfish.models import ComponentKind
from tests.firmware_fixtures import CATALOG_BYTES, IDRAC_DUP, INDEX

# -- sources --------------------------------------------------------------------------


def test_tagged_union_picks_the_kind() -> None:
    repo = parse_source({"kind": "repository", "base_url": "http://127.0.0.1:8099/repo"})
    catalog = parse_source({"kind": "catalog"})
    url = parse_source(
        {
            "kind": "url",
            "url": "http://127.0.0.1:8099/BIOS_8R8XJ_WN64_2.19.1.EXE",
            "component": "BIOS",
            "models": ["PowerEdge R640"],
        }
    )
    assert isinstance(repo, HttpRepository) and repo.base_url == "http://127.0.0.1:8099/repo/"
    assert repo.index_url == "http://127.0.0.1:8099/repo/index.json"
    assert isinstance(catalog, DellCatalog) and catalog.catalog_url == DELL_ONLINE_CATALOG
    assert isinstance(url, DirectUrl) and url.component is ComponentKind.BIOS
    assert (url.known_version, url.models) == ("2.19.1", ("PowerEdge R640",))
    assert parse_source(repo) is repo
    # Round trip through plain data (Prefect parameters, YAML).
    assert parse_source(json.loads(repo.model_dump_json())) == repo


def test_repository_packages_per_component() -> None:
    repo = HttpRepository(
        base_url="https://127.0.0.1:8443/fw/",
        packages={
            "iDRAC": {"file": IDRAC_DUP, "models": ["R640"]},
            "bios": {"file": "R640/bios.exe", "version": "2.19.1", "models": ["PowerEdge R640"]},
        },
        index=None,
    )
    assert repo.packages == {
        ComponentKind.IDRAC: NamedPackage(file=IDRAC_DUP, models=("R640",)),
        ComponentKind.BIOS: NamedPackage(
            file="R640/bios.exe", version="2.19.1", models=("PowerEdge R640",)
        ),
    }
    assert repo.packages[ComponentKind.IDRAC].known_version == "7.10.30.00"  # from the name
    assert repo.url_of("R640/BIOS.EXE") == "https://127.0.0.1:8443/fw/R640/BIOS.EXE"
    assert repo.index_url is None
    # With an index, a bare file name is enough: the rest is looked up there.
    short = HttpRepository(base_url="http://127.0.0.1/fw/", packages={"bios": "x/BIOS.EXE"})
    assert short.packages == {ComponentKind.BIOS: NamedPackage(file="x/BIOS.EXE")}
    assert parse_source(json.loads(short.model_dump_json())) == short


def test_components_each_once_and_updatable() -> None:
    assert parse_components(["BIOS", ComponentKind.IDRAC]) == [
        ComponentKind.BIOS,
        ComponentKind.IDRAC,
    ]
    with pytest.raises(PreconditionError) as info:
        parse_components(["bios", "disk", "psu", "bios"])
    assert info.value.subject == "components"
    assert "not updatable: disk, psu" in info.value.reason
    assert "given more than once: bios" in info.value.reason
    with pytest.raises(PreconditionError, match="no component given"):
        parse_components([])


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"kind": "tftp", "url": "x"}, "kind"),
        (
            {"kind": "repository", "base_url": "ftp://127.0.0.1/repo"},
            "scheme must be http or https",
        ),
        ({"kind": "repository", "base_url": "http://u:p@127.0.0.1/repo"}, "credentials"),
        ({"kind": "repository", "base_url": "http:///repo"}, "no host"),
        (
            {"kind": "repository", "base_url": "http://127.0.0.1/", "packages": {"gpu": "x.EXE"}},
            "unknown component 'gpu'",
        ),
        (
            {
                "kind": "repository",
                "base_url": "http://127.0.0.1/",
                "packages": {"bios": "../x.EXE"},
            },
            "inside the repository",
        ),
        (
            {"kind": "repository", "base_url": "http://127.0.0.1/", "index": "/etc/passwd"},
            "relative",
        ),
        ({"kind": "repository", "base_url": "http://127.0.0.1/", "index": None}, "needs packages"),
        ({"kind": "catalog", "catalog_url": "http://127.0.0.1/repo/"}, "must name a file"),
        ({"kind": "catalog", "catalog_url": "http://127.0.0.1/repo/cat.txt"}, ".xml or .xml.gz"),
        (
            {"kind": "url", "url": "http://127.0.0.1/BIOS.EXE", "component": "disk"},
            "unknown component",
        ),
        ({"kind": "url", "url": "http://127.0.0.1/BIOS.EXE"}, "component"),
        (
            {"kind": "url", "url": "http://127.0.0.1/B.EXE", "component": "bios", "version": " "},
            "empty",
        ),
        (
            {"kind": "url", "url": "http://127.0.0.1/B.EXE", "component": "bios", "models": ["R6"]},
            "version: the file name 'B.EXE' carries no Dell version",
        ),
        (
            {"kind": "url", "url": f"http://127.0.0.1/{IDRAC_DUP}", "component": "idrac"},
            "models: set the server models the package is for",
        ),
        (
            {
                "kind": "url",
                "url": f"http://127.0.0.1/{IDRAC_DUP}",
                "component": "idrac",
                "models": "R640",
            },
            "a list of model names",
        ),
        (
            {
                "kind": "repository",
                "base_url": "http://127.0.0.1/",
                "index": None,
                "packages": {"bios": {"file": "bios.exe", "models": ["R640"]}},
            },
            "packages.bios.version: the file name 'bios.exe' carries no Dell version",
        ),
        (
            {
                "kind": "repository",
                "base_url": "http://127.0.0.1/",
                "index": None,
                "packages": {"bios": "BIOS_8R8XJ_WN64_2.19.1.EXE"},
            },
            "packages.bios.models: the repository has no index",
        ),
        (
            {"kind": "url", "url": "http://127.0.0.1/B.EXE", "component": "bios", "extra": 1},
            "extra",
        ),
    ],
)
def test_invalid_sources_name_the_problem(data: dict, words: str) -> None:
    with pytest.raises(PreconditionError) as info:
        parse_source(data)
    assert info.value.subject == "firmware source"
    assert words in info.value.reason


def test_catalog_share_for_install_from_repository() -> None:
    online = DellCatalog().share()
    assert online.model_dump() == {
        "host": "dl.dell.com",
        "share_type": "HTTPS",
        "share_name": "catalog",
        "catalog_file": "catalog.xml.gz",
    }
    mirror = DellCatalog(catalog_url="http://127.0.0.1:8099/mirror/dell/Catalog.xml").share()
    assert (mirror.host, mirror.share_type, mirror.share_name, mirror.catalog_file) == (
        "127.0.0.1:8099",
        "HTTP",
        "mirror/dell",
        "Catalog.xml",
    )


def test_update_order_and_apply_time() -> None:
    assert [k.value for k in UPDATE_ORDER] == ["idrac", "bios", "cpld", "raid", "nic", "backplane"]
    assert ApplyTime("OnReset") is ApplyTime.ON_RESET and str(ApplyTime.IMMEDIATE) == "Immediate"


# -- resolution over a real HTTP server on loopback -----------------------------------


class Repo:
    """A tiny HTTP file server on 127.0.0.1 that counts requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        body = self.files.get(request.path)
        if body is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=body, content_type="application/octet-stream")


@pytest.fixture()
async def repo() -> AsyncIterator[Repo]:
    server = Repo()
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_index_resolution_picks_newest_for_the_model(repo: Repo) -> None:
    repo.files["/fw/index.json"] = json.dumps(INDEX).encode()
    source = HttpRepository(base_url=f"{repo.base}/fw")
    async with PackageResolver() as resolver:
        bios = await resolver.resolve(source, model="PowerEdge R640", component="bios")
        r650 = await resolver.resolve(source, model="PowerEdge R650", component=ComponentKind.BIOS)
        idrac = await resolver.resolve(source, model="PowerEdge R750", component="idrac")
    assert bios.uri == f"{repo.base}/fw/R640/BIOS_8R8XJ_WN64_2.19.1.EXE"
    assert (bios.version, bios.component_id, bios.file) == (
        "2.19.1",
        "159",
        "BIOS_8R8XJ_WN64_2.19.1.EXE",
    )
    assert bios.models == ("PowerEdge R640", "PowerEdge R740")
    assert r650.version == "1.10.2"
    assert idrac.uri == f"{repo.base}/fw/{IDRAC_DUP}" and idrac.version == "7.10.30.00"
    assert repo.hits["/fw/index.json"] == 1  # fetched once per resolver


async def test_index_model_mismatch_is_refused_naming_the_models(repo: Repo) -> None:
    repo.files["/fw/index.json"] = json.dumps(INDEX).encode()
    source = HttpRepository(base_url=f"{repo.base}/fw/")
    with pytest.raises(PreconditionError) as info:
        await resolve_package(source, model="PowerEdge R750", component="bios")
    assert "no bios package for model PowerEdge R750" in info.value.reason
    assert "PowerEdge R640" in info.value.reason
    with pytest.raises(PreconditionError, match="no cpld package"):
        await resolve_package(source, model="PowerEdge R640", component="cpld")
    with pytest.raises(PreconditionError, match="unknown component"):
        await resolve_package(source, model="PowerEdge R640", component="gpu")


async def test_index_component_id_selects_the_right_raid_card(repo: Repo) -> None:
    repo.files["/fw/index.json"] = json.dumps(INDEX).encode()
    source = HttpRepository(base_url=f"{repo.base}/fw/")
    h330 = await resolve_package(
        source, model="PowerEdge R640", component="raid", component_id="101522"
    )
    newest = await resolve_package(source, model="PowerEdge R640", component="raid")
    assert (h330.version, newest.version) == ("25.5.9.0001", "51.16.0-4076")


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        (b"not json", "not JSON"),
        (b'{"packages": {"a": 1}}', "must be a list"),
        (b'[{"file": "x.EXE"}]', "needs file and version"),
        (b'[{"file": "x.EXE", "version": "1", "component": "toaster"}]', "unknown component"),
        (b'[{"file": "x.EXE", "version": "1", "component": "bios", "models": "R640"}]', "models"),
    ],
)
async def test_malformed_index_is_a_protocol_error(
    repo: Repo, document: bytes, detail: str
) -> None:
    repo.files["/fw/index.json"] = document
    with pytest.raises(ProtocolError, match=detail):
        await resolve_package(
            HttpRepository(base_url=f"{repo.base}/fw/"), model="PowerEdge R640", component="bios"
        )


async def test_missing_index_is_not_found(repo: Repo) -> None:
    with pytest.raises(NotFoundError):
        await resolve_package(
            HttpRepository(base_url=f"{repo.base}/nothing/"), model="R640", component="bios"
        )


async def test_explicit_packages_need_no_fetch(repo: Repo) -> None:
    named = {"file": "BIOS_8R8XJ_WN64_2.19.1.EXE", "models": ["R640", "PowerEdge R740"]}
    source = HttpRepository(base_url=f"{repo.base}/fw/", packages={"bios": named}, index=None)
    package = await resolve_package(source, model="PowerEdge R640", component="bios")
    assert package.uri == f"{repo.base}/fw/BIOS_8R8XJ_WN64_2.19.1.EXE"
    assert (package.version, package.models) == ("2.19.1", ("R640", "PowerEdge R740"))
    assert sum(repo.hits.values()) == 0
    with pytest.raises(PreconditionError, match="names no nic package"):
        await resolve_package(source, model="PowerEdge R640", component="nic")
    # Named by the operator, checked all the same: refused for another model.
    with pytest.raises(PreconditionError) as info:
        await resolve_package(source, model="PowerEdge R650", component="bios")
    assert info.value.reason == (
        "source.packages.bios (BIOS_8R8XJ_WN64_2.19.1.EXE) is for R640, PowerEdge R740, "
        "not for model PowerEdge R650"
    )


async def test_named_package_completed_from_its_index_entry(repo: Repo) -> None:
    repo.files["/fw/index.json"] = json.dumps(INDEX).encode()
    source = HttpRepository(
        base_url=f"{repo.base}/fw/",
        packages={"bios": "R640/BIOS_7N9D3_WN64_2.18.1.EXE", "raid": "raid/perc.exe"},
    )
    async with PackageResolver() as resolver:
        older = await resolver.resolve(source, model="PowerEdge R640", component="bios")
        with pytest.raises(PreconditionError) as wrong:
            await resolver.resolve(source, model="PowerEdge R740", component="bios")
        with pytest.raises(PreconditionError) as unlisted:
            await resolver.resolve(source, model="PowerEdge R640", component="raid")
    # The named (older) file wins over the index's newest; its models come from the index.
    assert (older.version, older.models, older.component_id) == (
        "2.18.1",
        ("PowerEdge R640",),
        "159",
    )
    assert "not for model PowerEdge R740" in wrong.value.reason
    assert "version unknown (not in the file name nor listed in" in unlisted.value.reason
    assert "set source.packages.raid.version" in unlisted.value.reason
    assert repo.hits["/fw/index.json"] == 1


async def test_named_package_without_models_and_without_index_is_refused(repo: Repo) -> None:
    source = HttpRepository(
        base_url=f"{repo.base}/none/", packages={"bios": "BIOS_8R8XJ_WN64_2.19.1.EXE"}
    )
    with pytest.raises(PreconditionError) as info:
        await resolve_package(source, model="PowerEdge R640", component="bios")
    assert "the server models it is for are unknown" in info.value.reason
    assert 'set source.packages.bios.models, e.g. ["PowerEdge R640"]' in info.value.reason


async def test_direct_url_reads_version_from_the_file_name() -> None:
    source = DirectUrl(
        url="http://127.0.0.1:8099/x/BIOS_8R8XJ_WN64_2.19.1.EXE", component="bios", models=["R640"]
    )
    package = await resolve_package(source, model="PowerEdge R640", component="bios")
    assert (package.uri, package.version, package.file) == (
        source.url,
        "2.19.1",
        "BIOS_8R8XJ_WN64_2.19.1.EXE",
    )
    pinned = DirectUrl(
        url="http://127.0.0.1:8099/x/fw.bin", component="nic", version="22.31.6", models=["R650"]
    )
    assert (await resolve_package(pinned, model="R650", component="nic")).version == "22.31.6"
    with pytest.raises(PreconditionError, match="is a nic package"):
        await resolve_package(pinned, model="R650", component="bios")
    with pytest.raises(PreconditionError) as info:
        await resolve_package(pinned, model="PowerEdge R640", component="nic")
    assert info.value.reason == "source.url (fw.bin) is for R650, not for model PowerEdge R640"


async def test_mirrored_catalog_points_at_the_mirror_not_at_dell(repo: Repo) -> None:
    # The mirror kept Dell's baseLocation: packages are still read beside the catalog.
    repo.files["/mirror/Catalog.xml.gz"] = gzip.compress(CATALOG_BYTES)
    source = DellCatalog(catalog_url=f"{repo.base}/mirror/Catalog.xml.gz")
    async with PackageResolver() as resolver:
        bios = await resolver.resolve(source, model="PowerEdge R640", component="bios")
        raid = await resolver.resolve(
            source, model="PowerEdge R740", component="raid", component_id="101548"
        )
        with pytest.raises(PreconditionError) as info:
            await resolver.resolve(source, model="PowerEdge R740", component="cpld")
    assert bios.uri == f"{repo.base}/mirror/FOLDER10911204M/1/BIOS_8R8XJ_WN64_2.19.1.EXE"
    assert (bios.version, bios.reboot_required, bios.models) == ("2.19.1", True, ("R640", "R740"))
    assert raid.version == "51.16.0-4076"
    assert "no cpld package for model PowerEdge R740" in info.value.reason
    assert "R640" in info.value.reason
    assert repo.hits["/mirror/Catalog.xml.gz"] == 1


async def test_rewritten_catalog_base_location_is_followed(repo: Repo) -> None:
    repo.files["/c/Catalog.xml"] = rewrite_base_location(CATALOG_BYTES, f"{repo.base}/pkgs")
    source = DellCatalog(catalog_url=f"{repo.base}/c/Catalog.xml")
    nic = await resolve_package(source, model="PowerEdge R650", component="nic")
    assert (
        nic.uri == f"{repo.base}/pkgs/FOLDER10500022M/1/Network_Firmware_9NPPG_WN64_22.31.6_A00.EXE"
    )


async def test_dell_hosted_catalog_uses_dell_base_location() -> None:
    # Never contact Dell from tests: the catalog is served by a MockTransport.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=gzip.compress(CATALOG_BYTES))

    package = await resolve_package(
        DellCatalog(),
        model="PowerEdge R640",
        component="idrac",
        transport=httpx.MockTransport(handler),
    )
    assert seen == [DELL_ONLINE_CATALOG]
    assert package.uri == f"https://downloads.dell.com/FOLDER10032207M/1/{IDRAC_DUP}"
