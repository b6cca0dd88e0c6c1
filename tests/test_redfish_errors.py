"""RedfishClient error mapping: statuses, bodies, transport and TLS failures.

TLS is tested against a real TLS server on 127.0.0.1 with a throwaway
self-signed certificate.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clients.errors import (
    AuthError,
    BusyError,
    NotFoundError,
    ProtocolError,
    RemoteError,
    ServerError,
    TlsError,
    TransportError,
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

# -- error mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (403, AuthError),
        (404, NotFoundError),
        (409, BusyError),
        (503, BusyError),
        (500, ServerError),
        (502, ServerError),
        (400, RemoteError),
    ],
)
async def test_status_mapping(status: int, exc_type: type[RemoteError]) -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1/Thing")] = error_response(status, "Base.1.12.Whatever", "nope")
    async with client_for(fake) as bmc:
        with pytest.raises(exc_type) as info:
            await bmc.get_json("/redfish/v1/Thing")
    assert type(info.value) is exc_type
    assert info.value.status == status
    assert info.value.code == "Base.1.12.Whatever"
    assert info.value.target == BASE + "/redfish/v1/Thing"
    assert info.value.extended_info[0]["MessageId"] == "Base.1.12.Whatever"


async def test_busy_with_http_date_retry_after_and_no_body() -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1/Thing")] = httpx.Response(
        409, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, text="busy"
    )
    async with client_for(fake) as bmc:
        with pytest.raises(BusyError) as info:
            await bmc.get_json("/redfish/v1/Thing")
    assert info.value.retry_after == 0.0
    assert info.value.code is None
    assert info.value.message == "Conflict"


async def test_server_error_idempotency_follows_method_and_flag() -> None:
    fake = FakeIdrac()
    for method in ("GET", "POST", "DELETE"):
        answer = error_response(500, "Base.1.12.InternalError", "x")
        fake.routes[(method, "/redfish/v1/Thing")] = answer
    async with client_for(fake) as bmc:
        errors: dict[str, ServerError] = {}
        for name, call in {
            "get": bmc.get_json("/redfish/v1/Thing"),
            "post": bmc.post("/redfish/v1/Thing", {"a": 1}),
            "post-idempotent": bmc.post("/redfish/v1/Thing", {}, idempotent=True),
            "delete": bmc.delete("/redfish/v1/Thing"),
        }.items():
            with pytest.raises(ServerError) as info:
                await call
            errors[name] = info.value
    assert {k: v.retryable for k, v in errors.items()} == {
        "get": True,
        "post": False,
        "post-idempotent": True,
        "delete": True,
    }


async def test_post_returns_response_and_sends_json() -> None:
    fake = FakeIdrac()
    seen: list[Any] = []
    action = "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset"

    def reset(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("X-Auth-Token"), json.loads(request.content)))
        return httpx.Response(204)

    original = fake.handle

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == action:
            return reset(request)
        return original(request)

    async with RedfishClient(
        base_url=BASE, username=USER, password=PASSWORD, transport=httpx.MockTransport(handler)
    ) as bmc:
        response = await bmc.post(action, {"ResetType": "GracefulRestart"})
    assert response.status_code == 204
    assert seen == [("token-1", {"ResetType": "GracefulRestart"})]


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (httpx.Response(200, text="<html>login</html>"), "not JSON"),
        (httpx.Response(200, json=[1, 2]), "not a JSON object"),
    ],
)
async def test_bad_json_is_protocol_error(answer: httpx.Response, detail: str) -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1/Thing")] = answer
    async with client_for(fake) as bmc:
        with pytest.raises(ProtocolError) as info:
            await bmc.get_json("/redfish/v1/Thing")
    assert detail in info.value.detail


async def test_non_redfish_root_is_protocol_error() -> None:
    fake = FakeIdrac()
    fake.routes[("GET", "/redfish/v1")] = httpx.Response(200, json={"hello": "printer"})
    async with client_for(fake) as bmc:
        with pytest.raises(ProtocolError):
            await bmc.service_root()


async def test_login_without_token_is_protocol_error() -> None:
    fake = FakeIdrac()
    fake.routes[("POST", SESSIONS)] = httpx.Response(201, json={})
    async with client_for(fake) as bmc:
        with pytest.raises(ProtocolError) as info:
            await bmc.system()
    assert "X-Auth-Token" in info.value.detail


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_transport_failures_are_transport_errors(exc: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    bmc = RedfishClient(
        base_url=BASE, username=USER, password=PASSWORD, transport=httpx.MockTransport(handler)
    )
    async with bmc:
        with pytest.raises(TransportError) as info:
            await bmc.system()
    assert type(info.value) is TransportError
    assert info.value.retryable
    assert info.value.target.startswith(BASE)
    assert PASSWORD not in str(info.value)


async def test_connection_refused_on_a_real_socket() -> None:
    with socket.socket() as s:  # find a free port, then close it: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with RedfishClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as bmc:
        with pytest.raises(TransportError) as info:
            await bmc.service_root()
    assert info.value.retryable
    assert bmc.requests_made == 1


# -- TLS against a real server on 127.0.0.1 ----------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1, like a factory iDRAC's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idrac-8CYCZ23")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "bmc.pem", tmp_path / "bmc.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _RootHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"@odata.id": "/redfish/v1", "RedfishVersion": "1.11.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RootHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_untrusted_certificate_is_tls_error(tls_server: tuple[str, Path]) -> None:
    url, _ = tls_server
    async with RedfishClient(
        base_url=url, username=USER, password=PASSWORD, verify=True, timeout=5.0
    ) as bmc:
        with pytest.raises(TlsError) as info:
            await bmc.service_root()
    assert not info.value.retryable
    assert isinstance(info.value, TransportError)
    assert "certificate" in info.value.reason
    assert PASSWORD not in str(info.value)


async def test_same_server_is_trusted_with_its_certificate(tls_server: tuple[str, Path]) -> None:
    url, cert_path = tls_server
    context = ssl.create_default_context(cafile=str(cert_path))
    async with RedfishClient(base_url=url, verify=context, timeout=5.0) as bmc:
        root = await bmc.service_root()
    assert root.redfish_version == "1.11.0"
