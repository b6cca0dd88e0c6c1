"""Where and how rackflow files bug reports: a Bugzilla URL and API key as a Prefect block."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from blocks._tls import tls_context
from clients.bugzilla import BugzillaClient

logger = logging.getLogger("rackflow.blocks.bugzilla")

# URLs already warned about for sending the key in clear (once per process is enough).
_warned_plain_http: set[str] = set()


class BugzillaCredentials(Block):
    """A Bugzilla 5 instance and the API key rackflow files bugs with.

    Create the key under Preferences -> API Keys of a service account. TLS
    verification is on by default; give ``ca_bundle`` for an in-house CA, or
    set ``verify_tls`` false explicitly (warned once per run).
    """

    _block_type_name = "Bugzilla Credentials"
    _description = "URL, API key and TLS settings of the Bugzilla that reboot flows report to."

    url: str = Field(
        description="Bugzilla base URL, e.g. https://bugzilla.example.com (without /rest)."
    )
    api_key: SecretStr = Field(
        description="Bugzilla API key (Preferences -> API Keys). Stored encrypted, shown masked."
    )
    verify_tls: bool = Field(
        default=True,
        description="Verify Bugzilla's certificate. Turning this off is explicit and warned once.",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Path to a CA bundle file, or the PEM text itself, used to verify Bugzilla.",
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for TCP and TLS set-up."
    )
    read_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for Bugzilla to answer one request."
    )

    @field_validator("url")
    @classmethod
    def check_url(cls, value: str) -> str:
        """Accept http(s) URLs with a host and no credentials; drop a trailing slash."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; the API key goes in api_key")
        return value.strip().rstrip("/")

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Build the TLS verification setting for httpx.

        Returns:
            An ``ssl.SSLContext`` trusting ``ca_bundle`` (or the system store),
            or False when verification is off.
        """
        return tls_context(
            verify=self.verify_tls, ca_bundle=self.ca_bundle, peer=f"Bugzilla {self.url}"
        )

    def get_client(self, **kwargs: Any) -> BugzillaClient:
        """Build a Bugzilla client. No network I/O until used.

        Args:
            **kwargs: Passed to :class:`BugzillaClient` (``transport``, ``timeout``).

        Returns:
            A client to use as ``async with creds.get_client() as bz:``.
        """
        if urlsplit(self.url).scheme == "http":
            self._warn_plain_http()
            kwargs.setdefault("verify", False)  # nothing to verify without TLS
        else:
            kwargs.setdefault("verify", self.ssl_context())
        kwargs.setdefault(
            "timeout",
            httpx.Timeout(
                connect=self.connect_timeout,
                read=self.read_timeout,
                write=self.read_timeout,
                pool=None,
            ),
        )
        return BugzillaClient(url=self.url, api_key=self.api_key.get_secret_value(), **kwargs)

    def _warn_plain_http(self) -> None:
        host = urlsplit(self.url).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback and self.url not in _warned_plain_http:
            _warned_plain_http.add(self.url)
            logger.warning("Bugzilla %s is plain HTTP: the API key travels unencrypted", self.url)
