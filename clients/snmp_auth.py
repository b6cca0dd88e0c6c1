"""SNMP credentials for :mod:`clients.snmp`: v2c communities and SNMPv3 USM users.

Checked when a client is built (nothing is sent with bad credentials) and
turned into pysnmp's auth objects on first use. Communities and keys are
left out of reprs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pysnmp.hlapi.v3arch import asyncio as hlapi

from clients.errors import PreconditionError

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "SnmpAuth",
    "V2cAuth",
    "V3Auth",
    "auth_data",
    "check_auth",
]

AUTH_PROTOCOLS: Mapping[str, Any] = MappingProxyType(
    {
        "MD5": hlapi.usmHMACMD5AuthProtocol,
        "SHA": hlapi.usmHMACSHAAuthProtocol,
        "SHA-224": hlapi.usmHMAC128SHA224AuthProtocol,
        "SHA-256": hlapi.usmHMAC192SHA256AuthProtocol,
        "SHA-384": hlapi.usmHMAC256SHA384AuthProtocol,
        "SHA-512": hlapi.usmHMAC384SHA512AuthProtocol,
    }
)
"""SNMPv3 authentication protocols by their net-snmp names."""

PRIV_PROTOCOLS: Mapping[str, Any] = MappingProxyType(
    {
        "DES": hlapi.usmDESPrivProtocol,
        "AES": hlapi.usmAesCfb128Protocol,
        # net-snmp's AES-192/256 extend keys the Blumenthal way; the "-C"
        # (Cisco) variants are Reeder's.
        "AES-192": hlapi.usmAesBlumenthalCfb192Protocol,
        "AES-256": hlapi.usmAesBlumenthalCfb256Protocol,
        "AES-192-C": hlapi.usmAesCfb192Protocol,
        "AES-256-C": hlapi.usmAesCfb256Protocol,
    }
)
"""SNMPv3 privacy protocols by their net-snmp names."""


@dataclass(frozen=True)
class V2cAuth:
    """SNMP v2c community authentication.

    Attributes:
        community: The community (a shared secret: never logged).
    """

    community: str = field(repr=False)


@dataclass(frozen=True)
class V3Auth:
    """SNMPv3 USM authentication.

    Attributes:
        user: USM user name.
        auth_key: Authentication pass phrase; None for noAuthNoPriv.
        priv_key: Privacy pass phrase; None for no encryption.
        auth_protocol: A key of :data:`AUTH_PROTOCOLS` (``SHA``, ``SHA-256``, ...).
        priv_protocol: A key of :data:`PRIV_PROTOCOLS` (``AES``, ``AES-256``, ...).
    """

    user: str
    auth_key: str | None = field(default=None, repr=False)
    priv_key: str | None = field(default=None, repr=False)
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"


SnmpAuth = V2cAuth | V3Auth


def check_auth(auth: SnmpAuth) -> None:
    """Refuse credentials that cannot work, before any packet.

    Args:
        auth: The credentials.

    Raises:
        PreconditionError: Empty community or user, unknown protocol, or
            privacy without an auth key.
    """
    if isinstance(auth, V2cAuth):
        if not auth.community:
            raise PreconditionError(subject="community", reason="SNMP v2c needs a community")
        return
    if not auth.user:
        raise PreconditionError(subject="user", reason="SNMPv3 needs a user name")
    if auth.auth_key is not None and auth.auth_protocol not in AUTH_PROTOCOLS:
        raise PreconditionError(
            subject="auth_protocol",
            reason=f"{auth.auth_protocol!r} is not one of {', '.join(AUTH_PROTOCOLS)}",
        )
    if auth.priv_key is not None:
        if auth.auth_key is None:
            raise PreconditionError(subject="priv_key", reason="SNMPv3 privacy needs an auth key")
        if auth.priv_protocol not in PRIV_PROTOCOLS:
            raise PreconditionError(
                subject="priv_protocol",
                reason=f"{auth.priv_protocol!r} is not one of {', '.join(PRIV_PROTOCOLS)}",
            )


def auth_data(auth: SnmpAuth) -> Any:
    """pysnmp's auth object for the credentials (build one per client and engine).

    Args:
        auth: Credentials that passed :func:`check_auth`.

    Returns:
        ``CommunityData`` (v2c) or ``UsmUserData`` (v3).
    """
    if isinstance(auth, V2cAuth):
        # v2c is what most PDUs in racks speak; V3Auth is there when they can.
        return hlapi.CommunityData(auth.community, mpModel=1)  # noqa: S508
    keys: dict[str, Any] = {}
    if auth.auth_key is not None:
        keys.update(authKey=auth.auth_key, authProtocol=AUTH_PROTOCOLS[auth.auth_protocol])
    if auth.priv_key is not None:
        keys.update(privKey=auth.priv_key, privProtocol=PRIV_PROTOCOLS[auth.priv_protocol])
    # authNoPriv / noAuthNoPriv only when the block asks for it (no keys given).
    return hlapi.UsmUserData(auth.user, **keys)  # noqa: S509
