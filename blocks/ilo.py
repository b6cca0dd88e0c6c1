"""Credentials for HPE iLO BMCs (Redfish) as a Prefect block."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from blocks.redfish import RedfishCredentials
from clients.ilo import IloClient


class IloCredentials(RedfishCredentials):
    """User name, password, TLS settings and port for a fleet of HPE iLOs.

    The fields of :class:`~blocks.redfish.RedfishCredentials` (TLS verification
    on by default, ``ca_bundle`` for your own CA) plus the iLO's HTTPS port.
    """

    _block_type_name = "HPE iLO Credentials"
    _description = "Credentials, TLS settings and port for HPE iLO BMCs (Redfish)."

    port: int = Field(default=443, gt=0, lt=65536, description="iLO HTTPS port.")

    def get_client(self, address: str, *, port: int | None = None, **kwargs: Any) -> IloClient:
        """Build an iLO client for one server. No network I/O until entered.

        Args:
            address: iLO IP address or host name.
            port: HTTPS port (default: the block's ``port``).
            **kwargs: Passed to :class:`IloClient` (``http_client``, ``transport``).

        Returns:
            A client to use as ``async with creds.get_client(addr) as ilo:``.
        """
        if "http_client" not in kwargs:  # a shared client already carries its TLS settings
            kwargs.setdefault("verify", self.ssl_context())
        kwargs.setdefault("timeout", self.timeout())
        host = f"[{address}]" if ":" in address else address
        return IloClient(
            base_url=f"https://{host}:{port or self.port}",
            username=self.username,
            password=self.password.get_secret_value(),
            **kwargs,
        )
