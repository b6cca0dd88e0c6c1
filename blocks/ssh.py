"""SSH credentials (private key and trusted host keys) as a Prefect block."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from clients.ssh import SshClient


class SshCredentials(Block):
    """A login user, its private key, and the host keys to trust, for SSH to machines' OS.

    Host keys are verified against ``known_hosts`` only: a host missing from
    it, or offering another key, is refused (never trusted on first use).
    """

    _block_type_name = "SSH Credentials"
    _description = "Private key and known host keys for SSH to servers' operating systems."

    user: str = Field(description="Login user on the hosts, e.g. root or a sudo-capable user.")
    private_key: SecretStr = Field(
        description=(
            "The private key's text (OpenSSH or PEM: ed25519, ECDSA or RSA). "
            "Stored encrypted, shown masked."
        )
    )
    passphrase: SecretStr | None = Field(
        default=None, description="The private key's passphrase, when it is encrypted."
    )
    known_hosts: str = Field(
        description=(
            "known_hosts content (lines like `[10.0.0.5]:22 ssh-ed25519 AAAA...`, hashed "
            "names allowed): the only host keys trusted."
        )
    )
    port: int = Field(default=22, ge=1, le=65535, description="SSH port of the hosts.")
    connect_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds allowed for TCP connect, key exchange and authentication.",
    )

    def get_client(
        self, host: str, *, port: int | None = None, user: str | None = None
    ) -> SshClient:
        """Build an SSH client for one host. No network I/O until entered.

        Args:
            host: Address or host name.
            port: Override of ``port``.
            user: Override of ``user``.

        Returns:
            A client to use as ``with creds.get_client(host) as ssh:``.
        """
        passphrase = self.passphrase.get_secret_value() if self.passphrase else None
        return SshClient(
            host=host,
            port=port if port is not None else self.port,
            user=user or self.user,
            private_key=self.private_key.get_secret_value(),
            passphrase=passphrase,
            known_hosts=self.known_hosts,
            connect_timeout_s=self.connect_timeout_s,
        )
