"""Credentials for a VMware vCenter as a Prefect block."""

from __future__ import annotations

import logging
import ssl

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._tls import tls_context
from clients.vsphere import VSphereClient

logger = logging.getLogger("rackflow.blocks.vcenter")

# Run ids (or "local") already warned about disabled TLS verification.


class VCenterCredentials(Block):
    """Address, user, password and TLS settings of one vCenter.

    TLS verification is on by default; give ``ca_bundle`` for a vCenter with
    a certificate from VMCA or your own CA, or set ``verify_tls`` false
    explicitly (warned once per run).
    """

    _block_type_name = "vCenter Credentials"
    _description = "Address, credentials and TLS settings of a VMware vCenter."

    host: str = Field(description="vCenter address or DNS name, e.g. vcenter.example.com.")
    port: int = Field(default=443, gt=0, lt=65536, description="vCenter HTTPS port.")
    username: str = Field(description="vCenter user, e.g. svc-rackflow@vsphere.local.")
    password: SecretStr = Field(description="vCenter password. Stored encrypted, shown masked.")
    verify_tls: bool = Field(
        default=True,
        description="Verify vCenter's certificate. Turning this off is explicit and warned once.",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Path to a CA bundle file, or the PEM text itself, used to verify vCenter.",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for TCP and TLS set-up."
    )
    read_timeout: float = Field(
        default=120.0, gt=0, description="Seconds one vSphere API call may take."
    )
    poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between polls of a vCenter task or host state."
    )

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Build the TLS verification setting for pyVmomi.

        Returns:
            An ``ssl.SSLContext`` trusting ``ca_bundle`` (or the system store),
            or False when verification is off.
        """
        return tls_context(
            verify=self.verify_tls, ca_bundle=self.ca_bundle, peer=f"vCenter {self.host}"
        )

    def get_client(self) -> VSphereClient:
        """Build a vCenter client. No network I/O until entered.

        Returns:
            A client to use as ``with creds.get_client() as vc:``.
        """
        return VSphereClient(
            host=self.host,
            port=self.port,
            user=self.username,
            password=self.password.get_secret_value(),
            verify=self.ssl_context(),
            timeout=self.read_timeout,
            connect_timeout=self.connect_timeout,
            interval_s=self.poll_interval,
        )
