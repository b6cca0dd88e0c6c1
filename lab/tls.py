"""Certificates of the lab: one CA, and a leaf certificate per BMC address.

Everything is cached under a directory (the lab's ``state_dir/tls``) so a
restarted lab keeps the CA that blocks and tests already trust. Starting a
large fleet stays fast: one EC P-256 key is shared by every leaf, and a leaf
is only signed when its address has no valid cached certificate yet.

``self-signed`` mode gives every BMC its own self-signed certificate, like a
factory-fresh iDRAC: clients must then verify nothing (the ``--insecure`` path)
and verification against the lab CA fails.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LEAF_DAYS = 397
_CA_DAYS = 3650
_RENEW_MARGIN = dt.timedelta(days=7)


class LabCertificates:
    """Creates and caches the lab CA and per-address server certificates.

    Args:
        directory: Where keys and certificates live (created on first use).
    """

    def __init__(self, *, directory: Path) -> None:
        self.directory = Path(directory)
        self.ca_path = self.directory / "ca.pem"
        self._ca_key_path = self.directory / "ca-key.pem"
        self._leaf_key_path = self.directory / "leaf-key.pem"
        self._ca_cert: x509.Certificate | None = None
        self._ca_key: ec.EllipticCurvePrivateKey | None = None
        self._leaf_key: ec.EllipticCurvePrivateKey | None = None

    def ensure(self) -> None:
        """Load the CA and the shared leaf key, creating them when missing or expiring."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = _load_cert(self.ca_path)
        key = _load_key(self._ca_key_path)
        if ca is None or key is None or not _fresh(ca) or ca.public_key() != key.public_key():
            key = ec.generate_private_key(ec.SECP256R1())
            ca = _build_ca(key)
            _write(self._ca_key_path, _key_pem(key), private=True)
            _write(self.ca_path, ca.public_bytes(serialization.Encoding.PEM))
        leaf_key = _load_key(self._leaf_key_path)
        if leaf_key is None:
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            _write(self._leaf_key_path, _key_pem(leaf_key), private=True)
        self._ca_cert, self._ca_key, self._leaf_key = ca, key, leaf_key

    def server_context(self, address: str, *, self_signed: bool = False) -> ssl.SSLContext:
        """Build the TLS server context for a BMC at ``address``.

        Args:
            address: The IPv4 address clients connect to (put in the IP SAN).
            self_signed: Serve a self-signed certificate instead of a CA-signed one.

        Returns:
            A server-side SSL context.
        """
        cert_path = self.certificate(address, self_signed=self_signed)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, self._leaf_key_path)
        return ctx

    def certificate(self, address: str, *, self_signed: bool = False) -> Path:
        """Return the cached certificate file for ``address``, issuing it if needed.

        Args:
            address: IPv4 address for the SAN.
            self_signed: Self-signed (factory) certificate instead of a CA-signed one.

        Returns:
            Path of the PEM certificate (its key is the shared leaf key).
        """
        if self._ca_cert is None or self._ca_key is None or self._leaf_key is None:
            self.ensure()
        assert self._ca_cert is not None and self._ca_key is not None
        assert self._leaf_key is not None
        kind = "self" if self_signed else self._ca_cert.fingerprint(hashes.SHA256()).hex()[:12]
        path = self.directory / kind / f"{address}.pem"
        cert = _load_cert(path)
        if cert is not None and _fresh(cert) and cert.public_key() == self._leaf_key.public_key():
            return path
        if self_signed:
            cert = _build_leaf(address, self._leaf_key, issuer_key=self._leaf_key, issuer=None)
        else:
            cert = _build_leaf(
                address, self._leaf_key, issuer_key=self._ca_key, issuer=self._ca_cert
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, cert.public_bytes(serialization.Encoding.PEM))
        return path


def _build_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rackflow lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, "rackflow lab CA"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def _build_leaf(
    address: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
) -> x509.Certificate:
    # Factory iDRAC certificates name the iDRAC; ours carry the IP SAN that
    # clients connecting by address verify against.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dell Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, f"idrac-{address}"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _RENEW_MARGIN > dt.datetime.now(dt.UTC)


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    # Write then rename, so a second lab starting at the same time never
    # reads half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
