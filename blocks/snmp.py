"""SNMP credentials (v2c community or v3 USM user) for switched PDUs, as a Prefect block."""

from __future__ import annotations

from typing import Literal, Self

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from clients.pdu import PduProfile
from clients.snmp import PduClient, SnmpAuth, V2cAuth, V3Auth

AuthProtocol = Literal["MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
PrivProtocol = Literal["DES", "AES", "AES-192", "AES-256", "AES-192-C", "AES-256-C"]


class SnmpCredentials(Block):
    """How to talk SNMP to a fleet of PDUs: a v2c community or an SNMPv3 user.

    v2c needs ``community`` (the read-write one to switch outlets). v3 needs
    ``user``; give ``auth_key`` for authNoPriv and ``priv_key`` too for
    authPriv (the usual setting). No default community is assumed.
    """

    _block_type_name = "SNMP Credentials"
    _description = "SNMP v2c community or SNMPv3 user for switched PDUs (APC, ServerTech)."

    version: Literal["2c", "3"] = Field(
        default="2c", description="SNMP version: 2c (community) or 3 (USM user)."
    )
    community: SecretStr | None = Field(
        default=None,
        description="v2c community; the read-write one to switch outlets. Stored encrypted.",
    )
    user: str | None = Field(default=None, description="SNMPv3 USM user name.")
    auth_protocol: AuthProtocol = Field(
        default="SHA", description="SNMPv3 authentication protocol (net-snmp's names)."
    )
    auth_key: SecretStr | None = Field(
        default=None, description="SNMPv3 authentication pass phrase. Stored encrypted."
    )
    priv_protocol: PrivProtocol = Field(
        default="AES",
        description="SNMPv3 privacy protocol (net-snmp's names; -C: Cisco key extension).",
    )
    priv_key: SecretStr | None = Field(
        default=None, description="SNMPv3 privacy pass phrase. Stored encrypted."
    )
    timeout: float = Field(default=2.0, gt=0, description="Seconds to wait for each answer.")
    retries: int = Field(
        default=1, ge=0, le=10, description="Re-sends after a timeout (0: a single try)."
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.version == "2c" and not (self.community and self.community.get_secret_value()):
            raise ValueError("SNMP v2c needs a community")
        if self.version == "3":
            if not self.user:
                raise ValueError("SNMPv3 needs a user")
            if self.priv_key is not None and self.auth_key is None:
                raise ValueError("SNMPv3 privacy (priv_key) needs an auth_key too")
        return self

    def auth(self) -> SnmpAuth:
        """The client-side credentials these settings describe.

        Returns:
            :class:`V2cAuth` or :class:`V3Auth`.
        """
        if self.version == "2c":
            assert self.community is not None  # checked by the validator
            return V2cAuth(community=self.community.get_secret_value())
        assert self.user is not None
        return V3Auth(
            user=self.user,
            auth_key=self.auth_key.get_secret_value() if self.auth_key else None,
            priv_key=self.priv_key.get_secret_value() if self.priv_key else None,
            auth_protocol=self.auth_protocol,
            priv_protocol=self.priv_protocol,
        )

    def get_client(
        self,
        host: str,
        *,
        port: int = 161,
        model: str | PduProfile,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> PduClient:
        """Build a PDU client. No network I/O until used.

        Args:
            host: The PDU's address or name.
            port: UDP port of its SNMP agent.
            model: ``apc``, ``sentry3`` or a profile.
            timeout: Override of ``timeout``.
            retries: Override of ``retries``.

        Returns:
            A client to use as ``async with creds.get_client(addr, model="apc") as pdu:``.

        Raises:
            PreconditionError: Unknown model.
        """
        return PduClient(
            host=host,
            port=port,
            auth=self.auth(),
            model=model,
            timeout=self.timeout if timeout is None else timeout,
            retries=self.retries if retries is None else retries,
        )
