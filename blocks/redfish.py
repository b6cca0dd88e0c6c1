"""Credentials for Redfish BMCs (Dell iDRAC first) as a Prefect block."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._tls import tls_context
from clients.redfish import RedfishClient

logger = logging.getLogger("rackflow.blocks.redfish")


class RedfishCredentials(Block):
    """User name, password and TLS settings for a fleet of Redfish BMCs.

    No default password is assumed: a block must be created with the real
    one. TLS verification is on by default; give ``ca_bundle`` for BMCs with
    certificates from your own CA, or set ``verify_tls`` false explicitly
    (warned once per run).
    """

    _block_type_name = "Redfish Credentials"
    _description = "Credentials and TLS settings for Redfish BMCs (iDRAC, iLO, ...)."

    username: str = Field(description="BMC user name, e.g. an iDRAC local user.")
    password: SecretStr = Field(description="BMC password. Stored encrypted, shown masked.")
    verify_tls: bool = Field(
        default=True,
        description=(
            "Verify BMC certificates. Turning this off is explicit and warned once per run."
        ),
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Path to a CA bundle file, or the PEM text itself, used to verify BMCs.",
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for TCP and TLS set-up."
    )
    read_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a BMC to answer a request."
    )

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Build the TLS verification setting for httpx.

        Returns:
            An ``ssl.SSLContext`` trusting ``ca_bundle`` (or the system store),
            or False when verification is off.
        """
        return tls_context(
            verify=self.verify_tls,
            ca_bundle=self.ca_bundle,
            peer=f"Redfish credentials {self._block_document_name or self.username!r}",
        )

    def timeout(self, *, connect: float | None = None, read: float | None = None) -> httpx.Timeout:
        """The httpx timeout these credentials ask for (overrides allowed).

        Args:
            connect: Override of ``connect_timeout``.
            read: Override of ``read_timeout``.

        Returns:
            A ``httpx.Timeout`` with connect, read, write and pool limits.
        """
        c = connect if connect is not None else self.connect_timeout
        r = read if read is not None else self.read_timeout
        return httpx.Timeout(connect=c, read=r, write=r, pool=None)

    def get_client(self, address: str, *, port: int = 443, **kwargs: Any) -> RedfishClient:
        """Build a Redfish client for one BMC. No network I/O until entered.

        Args:
            address: BMC IP address or host name.
            port: HTTPS port.
            **kwargs: Passed to :class:`RedfishClient` (``http_client``, ``transport``).

        Returns:
            A client to use as ``async with creds.get_client(addr) as bmc:``.
        """
        if "http_client" not in kwargs:  # a shared client already carries its TLS settings
            kwargs.setdefault("verify", self.ssl_context())
        kwargs.setdefault("timeout", self.timeout())
        host = f"[{address}]" if ":" in address else address
        return RedfishClient(
            base_url=f"https://{host}:{port}",
            username=self.username,
            password=self.password.get_secret_value(),
            **kwargs,
        )
