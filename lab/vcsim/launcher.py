"""Start and stop the lab vCenter (govmomi's vcsim with rackflow's model).

::

    with Vcsim(spec=VcsimSpec.from_fleet(fleet), state_dir=tmp) as vc:
        client = VSphereClient(host=vc.host, port=vc.port, user=vc.username,
                               password=vc.password, verify=vc.ssl_context())
        vc.set_host("node0001.lab.example", enter_mm_delay_s=30)

The spec goes to the program's stdin (no password on a command line); the
program exits when its stdin closes, so it never outlives a crashed parent.
It serves HTTPS on 127.0.0.1 with a certificate written to ``state_dir``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import selectors
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.vcsim.build import build_vcsim
from lab.vcsim.spec import VcsimSpec

__all__ = ["Vcsim", "VcsimError"]


class VcsimError(RuntimeError):
    """The simulator did not start, died, or refused an admin request."""


def _write_certificate(state_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (vcsim's built-in one is RSA-1024,
    which OpenSSL's default security level refuses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rackflow lab vCenter")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = state_dir / "vcsim-cert.pem", state_dir / "vcsim-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Vcsim:
    """A running simulated vCenter (context manager).

    Args:
        spec: Clusters and hosts to create.
        state_dir: Directory for the certificate and the program's log.
        binary: A prebuilt program; default: build (or reuse) the cached one.
        ready_timeout_s: How long to wait for the program to serve.
    """

    def __init__(
        self,
        *,
        spec: VcsimSpec,
        state_dir: Path,
        binary: Path | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.spec = spec
        self.state_dir = Path(state_dir)
        self._binary = binary
        self._ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ready: dict[str, Any] = {}
        self.ca_path = self.state_dir / "vcsim-cert.pem"

    def __repr__(self) -> str:
        return f"Vcsim(url={self._ready.get('url')!r}, hosts={len(self.spec.all_hosts())})"

    # -- life cycle ---------------------------------------------------------
    def start(self) -> None:
        """Build if needed, start the program and wait until it serves.

        Raises:
            VcsimBuildError: The program could not be built.
            VcsimError: It exited or did not report ready in time.
        """
        if self._proc is not None:
            return
        binary = self._binary or build_vcsim()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cert, key = _write_certificate(self.state_dir)
        payload = self.spec.model_dump(mode="json")
        payload.update(cert_file=str(cert), key_file=str(key), listen="127.0.0.1:0")
        self._log = open(self.state_dir / "vcsim.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed argv
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(payload).encode() + b"\n")
            self._proc.stdin.flush()  # stdin stays open: closing it stops the program
            self._ready = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + self._ready_timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VcsimError(f"vcsim not ready after {self._ready_timeout_s:.0f} s")
                if sel.select(timeout=min(left, 0.5)):
                    line = proc.stdout.readline()
                    if line:
                        ready: dict[str, Any] = json.loads(line)
                        return ready
                if proc.poll() is not None:
                    raise VcsimError(f"vcsim exited with {proc.returncode}: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.state_dir / "vcsim.log").read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the program (close its stdin, then terminate, then kill)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._close_stdin(proc)  # the program exits at stdin EOF
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def _close_stdin(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass

    def __enter__(self) -> Vcsim:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what clients need --------------------------------------------------
    def _require(self, key: str) -> Any:
        if not self._ready:
            raise VcsimError("vcsim is not running: use 'with Vcsim(...)' or start()")
        return self._ready[key]

    @property
    def url(self) -> str:
        """SDK URL, e.g. ``https://127.0.0.1:40123/sdk``."""
        return str(self._require("url"))

    @property
    def host(self) -> str:
        """Address the simulator listens on (127.0.0.1)."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """TCP port the simulator listens on."""
        return int(urlsplit(self.url).port or 443)

    @property
    def username(self) -> str:
        """User name the simulator accepts."""
        return self.spec.username

    @property
    def password(self) -> str:
        """Password the simulator accepts."""
        return self.spec.password

    @property
    def host_moids(self) -> dict[str, str]:
        """Host name -> managed object id (``host-17``)."""
        return dict(self._require("hosts"))

    @property
    def cluster_moids(self) -> dict[str, str]:
        """Cluster name -> managed object id."""
        return dict(self._require("clusters"))

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context trusting the simulator's certificate.

        Returns:
            Verifying context with ``ca_path`` loaded.
        """
        return ssl.create_default_context(cafile=str(self.ca_path))

    # -- admin API ----------------------------------------------------------
    def _admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = str(self._require("admin_url")) + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - https on loopback only
            url, data=data, method="POST" if data else "GET"
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(  # noqa: S310 - https on loopback only
                request, context=self.ssl_context(), timeout=10
            ) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise VcsimError(f"admin {path or '/'}: HTTP {exc.code}: {exc.read()!r}") from None

    def hosts_state(self) -> list[dict[str, Any]]:
        """Read every host's run-time state from the simulator.

        Returns:
            One dict per host: name, moid, connection_state, in_maintenance and
            the maintenance-mode knobs.
        """
        result: list[dict[str, Any]] = self._admin("")
        return result

    def host_state(self, name: str) -> dict[str, Any]:
        """Read one host's run-time state.

        Args:
            name: Host name.

        Returns:
            As one entry of :meth:`hosts_state`.
        """
        result: dict[str, Any] = self._admin(f"/{name}")
        return result

    def set_host(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change a host while the simulator runs.

        Args:
            name: Host name.
            **changes: Any of ``connection_state`` (connected, disconnected,
                notResponding), ``reconnect_after_s`` (back to connected after
                that many lab seconds), ``in_maintenance``, ``enter_mm_delay_s``,
                ``enter_mm_fault``, ``exit_mm_delay_s``, ``exit_mm_fault``.

        Returns:
            The host's new state.

        Raises:
            VcsimError: Unknown host or bad change.
        """
        result: dict[str, Any] = self._admin(f"/{name}", changes)
        return result
