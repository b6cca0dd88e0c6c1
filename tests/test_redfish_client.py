"""RedfishClient sessions, authentication and construction against a fake iDRAC."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import httpx
import pytest

from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    PreconditionError,
    RemoteError,
)
from clients.redfish import RedfishClient
from tests.redfish_fake import (
    BASE,
    PASSWORD,
    SESSIONS,
    USER,
    FakeIdrac,
    client_for,
    error_response,
)

# -- service root, sessions ------------------------------------------------------------


async def test_service_root_is_read_without_credentials() -> None:
    fake = FakeIdrac()
    async with client_for(fake) as bmc:
        root = await bmc.service_root()
    assert root.is_idrac
    assert root.service_tag == "8CYCZ23"
    assert root.sessions_path == SESSIONS
    assert fake.log == [("GET", "/redfish/v1", "none")]
    assert fake.logins == 0


async def test_construction_does_no_io_and_login_is_lazy() -> None:
    fake = FakeIdrac()
    bmc = client_for(fake)
    assert bmc.requests_made == 0
    assert fake.log == []
    async with bmc:
        system = await bmc.system()
    assert system.service_tag == "8CYCZ23"
    assert fake.logins == 1


async def test_one_session_reused_and_deleted_on_exit() -> None:
    fake = FakeIdrac()
    async with client_for(fake) as bmc:
        await bmc.service_root()
        system = await bmc.system()
        manager = await bmc.manager()
        assert len(fake.sessions) == 1
    assert (system.model, manager.firmware_version) == ("PowerEdge R640", "7.00.00.174")
    assert fake.logins == 1
    assert fake.sessions == {}
    assert fake.count("DELETE", SESSIONS + "/1") == 1
    # Every resource read carried the session token.
    assert {auth for m, p, auth in fake.log if p.startswith("/redfish/v1/S")} >= {"token"}
    # iDRAC root known: System.Embedded.1 and iDRAC.Embedded.1 read directly.
    assert bmc.requests_made == 5  # root, login, system, manager, logout
    assert bmc.requests_made == len(fake.log)


async def test_session_deleted_even_when_the_body_raises() -> None:
    fake = FakeIdrac()
    with pytest.raises(NotFoundError):
        async with client_for(fake) as bmc:
            await bmc.get_json("/redfish/v1/Nope")
    assert fake.sessions == {}
    assert fake.count("DELETE", SESSIONS) == 1


async def test_concurrent_first_calls_log_in_once() -> None:
    fake = FakeIdrac()
    async with client_for(fake) as bmc:
        results = await asyncio.gather(*(bmc.get_json("/redfish/v1/Systems") for _ in range(5)))
    assert len(results) == 5
    assert fake.logins == 1


async def test_relogin_once_on_401_after_session_expiry() -> None:
    fake = FakeIdrac()
    async with client_for(fake) as bmc:
        await bmc.system()
        fake.expire_sessions()  # iDRAC reset or 30 min idle
        manager = await bmc.manager()
    assert manager.id == "iDRAC.Embedded.1"
    assert fake.logins == 2
    assert fake.sessions == {}  # the second session was deleted on exit


async def test_second_401_after_relogin_is_auth_error_not_a_loop() -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1/Managers")] = error_response(
        401, "Base.1.12.InsufficientPrivilege", "role lacks Login privilege"
    )
    async with client_for(fake) as bmc:
        with pytest.raises(AuthError) as info:
            await bmc.get_json("/redfish/v1/Managers")
    assert fake.logins == 2
    assert fake.count("GET", "/redfish/v1/Managers") == 2
    assert info.value.status == 401
    assert not info.value.retryable


async def test_bad_password_is_auth_error_without_the_password() -> None:
    fake = FakeIdrac()
    bmc = client_for(fake, password="wrong-" + PASSWORD)
    with pytest.raises(AuthError) as info:
        async with bmc:
            await bmc.system()
    err = info.value
    assert err.code == "Base.1.12.InsufficientPrivilege"
    assert err.message == "bad credentials"
    for text in (str(err), repr(err), repr(err.args), repr(bmc), str(err.extended_info)):
        assert PASSWORD not in text
    assert fake.logins == 1  # never retried


async def test_password_echoed_by_the_bmc_is_scrubbed() -> None:
    fake = FakeIdrac()
    fake.routes[("POST", SESSIONS)] = error_response(
        400, "Base.1.12.PropertyValueFormatError", f"The value {PASSWORD} for Password is invalid"
    )
    with pytest.raises(RemoteError) as info:
        async with client_for(fake) as bmc:
            await bmc.login()
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in json.dumps(info.value.extended_info)
    assert "********" in info.value.message


async def test_session_limit_rac0218_is_busy_with_string_retry_after() -> None:
    fake = FakeIdrac(max_sessions=0)
    with pytest.raises(BusyError) as info:
        async with client_for(fake) as bmc:
            await bmc.system()
    err = info.value
    assert err.status == 503
    assert err.code is not None and err.code.endswith("RAC0218")
    assert err.retry_after == 30.0
    assert err.retryable
    assert "maximum number of user sessions" in err.message


async def test_basic_auth_fallback_when_root_has_no_session_service() -> None:
    fake = FakeIdrac(session_service=False, vendor_root=False)
    async with client_for(fake) as bmc:
        root = await bmc.service_root()
        assert root.sessions_path is None
        system = await bmc.system()
    assert system.service_tag == "8CYCZ23"
    assert fake.count("POST", "/redfish/v1") == 0  # root said: no sessions; none tried
    assert [a for m, p, a in fake.log if p.startswith("/redfish/v1/Systems")] == ["basic"] * 2
    assert bmc.requests_made == 3  # root, Systems, System.Embedded.1 (no logout)


async def test_basic_auth_fallback_after_404_on_both_session_paths() -> None:
    fake = FakeIdrac(session_service=False)
    async with client_for(fake) as bmc:
        data = await bmc.get_json("/redfish/v1/Managers")
    assert data["Members"]
    posts = [p for m, p, _ in fake.log if m == "POST"]
    assert posts == [SESSIONS, "/redfish/v1/Sessions"]
    assert fake.log[-1] == ("GET", "/redfish/v1/Managers", "basic")


async def test_basic_auth_with_wrong_password_is_auth_error() -> None:
    fake = FakeIdrac(session_service=False, vendor_root=False)
    async with client_for(fake, password="nope") as bmc:
        await bmc.service_root()
        with pytest.raises(AuthError):
            await bmc.system()
    assert fake.count("GET", "/redfish/v1/Systems") == 1  # no re-login loop on Basic


async def test_session_location_on_another_host_is_not_followed() -> None:
    seen: list[tuple[str, str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.host, request.url.path))
        if request.method == "POST":
            return httpx.Response(
                201,
                headers={"X-Auth-Token": "t", "Location": "https://evil.example/s/9"},
                json={},
            )
        return httpx.Response(204)

    async with RedfishClient(
        base_url=BASE, username=USER, password=PASSWORD, transport=httpx.MockTransport(handler)
    ) as other:
        await other.login()
    assert seen == [("POST", "127.10.0.1", SESSIONS), ("DELETE", "127.10.0.1", "/s/9")]


# -- construction and client ownership -------------------------------------------------


def test_repr_shows_no_password() -> None:
    bmc = RedfishClient(base_url=BASE, username=USER, password=PASSWORD)
    assert PASSWORD not in repr(bmc)
    assert "127.10.0.1" in repr(bmc)


@pytest.mark.parametrize(
    ("kwargs", "subject"),
    [
        ({"base_url": f"https://{USER}:{PASSWORD}@127.10.0.1"}, "base_url"),
        ({"base_url": "127.10.0.1"}, "base_url"),
        (
            {"base_url": BASE, "transport": httpx.MockTransport(lambda r: httpx.Response(200))},
            "transport",
        ),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], subject: str) -> None:
    shared = httpx.AsyncClient() if "transport" in kwargs else None
    with pytest.raises(PreconditionError) as info:
        RedfishClient(**kwargs, http_client=shared)
    assert info.value.subject == subject
    assert PASSWORD not in str(info.value)


async def test_shared_http_client_is_not_closed_and_own_client_is() -> None:
    fake = FakeIdrac()
    shared = httpx.AsyncClient(transport=fake.transport())
    async with shared:
        for _ in range(2):
            async with RedfishClient(
                base_url=BASE, username=USER, password=PASSWORD, http_client=shared
            ) as bmc:
                await bmc.system()
        assert not shared.is_closed
        own = client_for(fake)
        async with own:
            await own.system()
        assert own._client is None  # built lazily, closed on exit
    assert fake.logins == 3
    assert fake.sessions == {}


async def test_construction_with_shared_client_is_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    # An SSL context costs milliseconds each: a fleet of clients on one shared
    # httpx client must build none (the speed itself is the benchmarks' business).
    built: list[object] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        built.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    async with httpx.AsyncClient() as shared:
        monkeypatch.setattr(ssl, "create_default_context", counting)
        clients = [
            RedfishClient(
                base_url=f"https://127.10.{i // 256}.{i % 256}:8443",
                username=USER,
                password=PASSWORD,
                http_client=shared,
            )
            for i in range(5000)
        ]
        first_use = [c._http() for c in clients]  # what the first request would use
        monkeypatch.undo()
    assert built == []
    assert all(client is shared for client in first_use)
    assert sum(c.requests_made for c in clients) == 0


def test_base_url_trailing_slash_is_dropped() -> None:
    bmc = RedfishClient(base_url=BASE + "/")
    assert bmc.base_url == BASE
