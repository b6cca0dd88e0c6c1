"""Credentials for a XenServer / XCP-ng pool (XenAPI) as a Prefect block."""

from __future__ import annotations

import ssl

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._tls import tls_context
from clients.xen import XenClient


class XenCredentials(Block):
    """URL, user, password and TLS settings of a XenServer / XCP-ng pool master.

    No default password is assumed. TLS verification is on by default for
    https URLs; give ``ca_bundle`` for a pool certificate from your own CA, or
    set ``verify_tls`` false explicitly (warned once per run).
    """

    _block_type_name = "XenAPI Credentials"
    _description = "Pool master URL, credentials and TLS settings for XenServer / XCP-ng."

    url: str = Field(
        description="Pool master URL, e.g. https://xen-pool1.example.com/ (no credentials)."
    )
    username: str = Field(description="XAPI user, e.g. root or an AD user with VM power rights.")
    password: SecretStr = Field(description="XAPI password. Stored encrypted, shown masked.")
    verify_tls: bool = Field(
        default=True,
        description=(
            "Verify the pool master's certificate (https URLs). Turning this off is "
            "explicit and warned once per run."
        ),
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Path to a CA bundle file, or the PEM text itself, to verify the pool master.",
    )
    timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to wait for one XenAPI call (clean shutdowns have their own limit).",
    )

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Build the TLS verification setting (only used for https URLs).

        Returns:
            An ``ssl.SSLContext`` trusting ``ca_bundle`` (or the system store),
            or False when verification is off.
        """
        return tls_context(
            verify=self.verify_tls,
            ca_bundle=self.ca_bundle,
            peer=f"XenAPI credentials {self._block_document_name or self.url!r}",
        )

    def get_client(self) -> XenClient:
        """Build a XenAPI client for the pool master. No network I/O until a call.

        Returns:
            A client to use as ``with creds.get_client() as xen:`` (logs out on exit).
        """
        verify = self.ssl_context() if self.url.startswith("https://") else True
        return XenClient(
            url=self.url,
            username=self.username,
            password=self.password.get_secret_value(),
            verify=verify,
            timeout_s=self.timeout_s,
        )
