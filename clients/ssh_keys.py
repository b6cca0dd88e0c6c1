"""SSH keys for :mod:`clients.ssh`: the private key offered, the host keys trusted.

Host keys come from known_hosts text the caller gives, and nothing else: an
unknown or changed host key is refused with :class:`HostKeyError` naming
the host and the key's fingerprint, never accepted on first use. Errors
never quote key material.
"""

from __future__ import annotations

import io
import logging
from typing import NoReturn

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from clients.errors import PreconditionError

__all__ = ["HostKeyError", "RejectUnknownHosts", "load_known_hosts", "load_private_key"]

logger = logging.getLogger("rackflow.clients.ssh")  # one logger name for all of SSH


class HostKeyError(PreconditionError):
    """The host's key is not one known_hosts lists for it (unknown, or changed).

    A :class:`PreconditionError`, not an :class:`AuthError`: the host did not
    refuse our credentials, rackflow refused to trust the host. The fix is the
    known_hosts input (after checking the key out of band), never a retry and
    never the private key; a changed key may be a man in the middle.

    Args:
        host: The host as known_hosts names it (``[address]:port`` off port 22).
        key_type: Type of the key the host offered, e.g. ``ssh-ed25519``.
        fingerprint: Its SHA256 fingerprint, as ``ssh-keygen -l`` prints it.
        expected: Fingerprint known_hosts has for the host, when it has one.
    """

    def __init__(
        self, *, host: str, key_type: str, fingerprint: str, expected: str | None = None
    ) -> None:
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.expected = expected
        if expected is None:
            reason = (
                f"host key {key_type} {fingerprint} is not in known_hosts: refusing to "
                "connect (verify it out of band, then add it to the credentials' known_hosts)"
            )
        else:
            reason = (
                f"host key CHANGED: host offers {key_type} {fingerprint}, known_hosts has "
                f"{expected}: refusing to connect (possible man-in-the-middle)"
            )
        super().__init__(subject=host, reason=reason)


class RejectUnknownHosts(paramiko.RejectPolicy):
    """Refuse a host known_hosts does not list, with a :class:`HostKeyError` naming its key.

    paramiko's own RejectPolicy raises a bare SSHException without the key.
    """

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise HostKeyError(host=hostname, key_type=key.get_name(), fingerprint=key.fingerprint)


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """Read an OpenSSH or PEM private key (ed25519, ECDSA or RSA) from text.

    Args:
        text: The key file's content.
        passphrase: Its passphrase, when encrypted.

    Returns:
        The paramiko key.

    Raises:
        PreconditionError: Not a readable key, an unsupported type, or a missing or
            wrong passphrase. The message never contains the key.
    """
    data = text.strip().encode() + b"\n"
    password = passphrase.encode() if passphrase else None
    try:
        loaded = _parse_key(data, password)
    except TypeError:  # cryptography: encrypted without a password (or the reverse)
        if password is not None:
            return load_private_key(text, None)
        raise PreconditionError(
            subject="private_key", reason="the key is encrypted: a passphrase is needed"
        ) from None
    except Exception:  # noqa: BLE001 - never chain: a parser's message could quote the key
        loaded = None
    kind: type[paramiko.PKey]
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        kind = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        kind = paramiko.ECDSAKey
    elif isinstance(loaded, rsa.RSAPrivateKey):
        kind = paramiko.RSAKey
    else:
        raise PreconditionError(
            subject="private_key",
            reason="not a readable ed25519, ECDSA or RSA private key (or a wrong passphrase)",
        )
    try:
        return kind.from_private_key(io.StringIO(data.decode()), password=passphrase or None)
    except Exception:  # noqa: BLE001 - same: no key text in errors
        raise PreconditionError(
            subject="private_key", reason="paramiko could not load it"
        ) from None


def _parse_key(data: bytes, password: bytes | None) -> object:
    try:
        return serialization.load_ssh_private_key(data, password=password)
    except ValueError:  # not OpenSSH format: legacy PEM
        return serialization.load_pem_private_key(data, password=password)


def load_known_hosts(known_hosts: str, into: paramiko.HostKeys) -> None:
    """Add the host keys of known_hosts text to a paramiko key store.

    Args:
        known_hosts: known_hosts content (hashed host names work too).
        into: Where to add them (``SSHClient.get_host_keys()``).

    Raises:
        PreconditionError: A ``@cert-authority`` / ``@revoked`` line (not supported).
    """
    for number, raw in enumerate(known_hosts.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            # Ignoring a @revoked line would trust a revoked key: refuse instead.
            raise PreconditionError(
                subject="known_hosts",
                reason=f"line {number}: @cert-authority / @revoked markers are not supported",
            )
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, ValueError):
            entry = None
        if entry is None or entry.key is None:
            # Skipping an unreadable or unknown-type line can only trust fewer keys.
            logger.debug("known_hosts line %d skipped: unreadable or unsupported", number)
            continue
        for name in entry.hostnames:
            into.add(name, entry.key.get_name(), entry.key)
