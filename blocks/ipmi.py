"""Credentials for IPMI-over-LAN BMCs as a Prefect block."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from clients.ipmi import CIPHER_SUITES, IpmiClient


class IpmiCredentials(Block):
    """User, password and session settings for a fleet of IPMI BMCs.

    No default password is assumed. Power control needs at least
    ``operator`` privilege; ``user`` can only read the power state.
    """

    _block_type_name = "IPMI Credentials"
    _description = "Credentials and session settings for IPMI 2.0 (RMCP+) BMCs."

    user: str = Field(description="BMC user name (at most 16 characters).")
    password: SecretStr = Field(description="BMC password. Stored encrypted, shown masked.")
    privilege: Literal["administrator", "operator", "user"] = Field(
        default="administrator",
        description="Session privilege to ask for; power control needs operator or above.",
    )
    cipher_suite: int = Field(
        default=3,
        description=(
            "RMCP+ cipher suite: 3 (SHA-1, AES; accepts 17 when the BMC offers it) or "
            "17 (SHA-256, AES; refuses BMCs that only agree to 3). pyghmi speaks no other."
        ),
    )
    port: int = Field(default=623, ge=1, le=65535, description="BMC UDP port (623 by default).")
    timeout: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds to wait for a BMC to answer before it counts as unreachable, and "
            "before a power command is sent again."
        ),
    )

    @field_validator("cipher_suite")
    @classmethod
    def _known_suite(cls, value: int) -> int:
        if value not in CIPHER_SUITES:
            raise ValueError(f"cipher suite {value} unsupported: use one of {list(CIPHER_SUITES)}")
        return value

    def get_client(self, address: str, *, port: int | None = None) -> IpmiClient:
        """Build an IPMI client for one BMC. No network I/O until entered.

        Args:
            address: BMC IP address or host name.
            port: UDP port; None uses the block's ``port``.

        Returns:
            A client to use as ``with creds.get_client(addr) as bmc:``.
        """
        return IpmiClient(
            address=address,
            port=port if port is not None else self.port,
            user=self.user,
            password=self.password.get_secret_value(),
            privilege=self.privilege,
            cipher_suite=self.cipher_suite,
            timeout=self.timeout,
        )
