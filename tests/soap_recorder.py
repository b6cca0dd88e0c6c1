"""A TLS proxy on loopback in front of the lab vcsim that keeps what clients send.

vcsim does not keep the arguments of a task it ran (a maintenanceSpec, say),
so tests that must see what rackflow asked vCenter for read the SOAP requests
on the wire here. The proxy presents the simulator's own certificate, so a
client trusting the simulator trusts the proxy.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading

from clients.closing import Closing
from lab.vcsim import Vcsim


class SoapRecorder(Closing):
    """Forward TLS connections to a running :class:`Vcsim`; record the client's bytes.

    Args:
        vc: The running simulator.
    """

    def __init__(self, vc: Vcsim) -> None:
        self._vc = vc
        self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_tls.load_cert_chain(
            vc.state_dir / "vcsim-cert.pem", vc.state_dir / "vcsim-key.pem"
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._sent = bytearray()
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def sent(self) -> bytes:
        """Everything clients sent so far (HTTP requests with their SOAP bodies)."""
        with self._lock:
            return bytes(self._sent)

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self._sent.clear()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # One thread per connection moves bytes both ways: an SSL socket must not be
        # read and written from two threads at once.
        try:
            client = self._server_tls.wrap_socket(conn, server_side=True)
            raw = socket.create_connection((self._vc.host, self._vc.port), timeout=30)
            upstream = self._vc.ssl_context().wrap_socket(raw, server_hostname=self._vc.host)
        except OSError:
            conn.close()
            return
        peer = {client: upstream, upstream: client}
        for sock in peer:
            # Non-blocking after the handshakes: a readable TLS socket may carry no
            # application data (a TLS 1.3 session ticket), and a blocking read then
            # would stall the other direction.
            sock.setblocking(False)
        try:
            while not self._closing.is_set():
                readable, _, _ = select.select(list(peer), [], [], 1.0)
                for src in readable:
                    data = self._read(src)
                    if data is None:
                        continue
                    if not data:
                        return
                    if src is client:
                        with self._lock:
                            self._sent += data
                    self._write(peer[src], data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    @staticmethod
    def _read(sock: ssl.SSLSocket) -> bytes | None:
        """What the socket has (b"": closed; None: nothing for the application yet)."""
        try:
            data = sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None
        while data and sock.pending():  # decrypted bytes select cannot see
            data += sock.recv(sock.pending())
        return data

    @staticmethod
    def _write(sock: ssl.SSLSocket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                select.select([], [sock], [], 1.0)

    def close(self) -> None:
        """Stop accepting connections."""
        self._closing.set()
        self._listener.close()
