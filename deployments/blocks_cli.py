"""``rackflow blocks create-ssh|create-ipmi|create-snmp|create-ilo|create-xen|create-bugzilla``.

Secrets never come from the command line (``ps`` and shell history would
show them): passwords, communities and API keys come from an environment
variable (each command names its default, e.g. ``RACKFLOW_IPMI_PASSWORD``)
or, on a terminal, a hidden prompt; the SSH private key and known_hosts come
from files. Every block is validated by its own pydantic model before it is
saved; a bad value exits with status 2 and a message that never quotes a
secret. ``deployments.cli`` adds these commands to ``rackflow blocks``.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from clients.errors import PreconditionError
from deployments.console import fail, read_secret

if TYPE_CHECKING:  # Prefect takes seconds to import: only the commands that save load it
    from prefect.blocks.core import Block

app = typer.Typer()

# The pattern machine-access files use to name blocks (clients/inventory/access.py).
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")

NameArg = Annotated[
    str,
    typer.Argument(
        help="Block name (lowercase letters, digits, dashes), as machine-access files name it"
    ),
]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing block of that name")]
CaBundleOpt = Annotated[
    Path | None,
    typer.Option(help="CA bundle (PEM file) to verify the server with", dir_okay=False),
]
InsecureOpt = Annotated[bool, typer.Option(help="Turn TLS verification off (warned once per run)")]


def _read_file(path: Path, what: str) -> str:
    try:
        return path.expanduser().read_text()
    except FileNotFoundError:
        fail(f"{what} {path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {what} {path}: {type(exc).__name__}")


def _ca_bundle(path: Path | None) -> str | None:
    if path is None:
        return None
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        fail(f"CA bundle {path} does not exist")
    return str(resolved)  # absolute: a worker may start in another directory


def _problems(exc: ValidationError) -> str:
    # Only field and message: pydantic's own text quotes the input, which may be a secret.
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )


def _save(cls: type[Block], name: str, overwrite: bool, **fields: Any) -> None:
    if not _BLOCK_NAME.match(name):
        fail(f"block name {name!r}: use lowercase letters, digits and dashes (e.g. lab-ssh)")
    slug = cls.get_block_type_slug()
    try:
        block = cls(**fields)
    except ValidationError as exc:
        fail(f"invalid {slug}: {_problems(exc)}")
    try:
        # _sync: a sync save even when a loop runs (the CLI invoked from async tests).
        block.save(name, overwrite=overwrite, _sync=True)  # type: ignore[call-arg]
    except ValidationError as exc:
        fail(f"cannot save {slug}/{name}: {_problems(exc)}")
    except ValueError as exc:
        if "already in use" in str(exc):
            fail(f"{slug}/{name} already exists (--overwrite replaces it)")
        fail(f"cannot save {slug}/{name}: {exc}")
    typer.echo(f"saved {slug}/{name}")


def _known_host_lines(text: str) -> int:
    import paramiko

    count = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            fail(f"known_hosts line {number}: @cert-authority / @revoked are not supported")
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, ValueError):
            entry = None
        if entry is not None and entry.key is not None:
            count += 1
    return count


def _private_key(key_file: Path, passphrase_env: str) -> tuple[str, str | None]:
    from clients.ssh import load_private_key

    text = _read_file(key_file, "private key file")
    passphrase = os.environ.get(passphrase_env) or None
    try:
        load_private_key(text, passphrase)
    except PreconditionError as exc:
        if passphrase is not None or "encrypted" not in exc.reason:
            fail(f"private key {key_file}: {exc.reason}")
        passphrase = read_secret(passphrase_env, "passphrase for the encrypted key")
        try:
            load_private_key(text, passphrase)
        except PreconditionError as again:
            fail(f"private key {key_file}: {again.reason}")
    return text, passphrase


@app.command("create-ssh")
def create_ssh(
    name: NameArg,
    user: Annotated[str, typer.Option("--user", "--username", help="Login user on the hosts")],
    key_file: Annotated[Path, typer.Option(help="Private key file (OpenSSH or PEM)")],
    known_hosts_file: Annotated[
        Path, typer.Option(help="known_hosts file: the only host keys trusted")
    ],
    port: Annotated[int, typer.Option(help="SSH port of the hosts")] = 22,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to connect and log in")] = 10.0,
    passphrase_env: Annotated[
        str, typer.Option(help="Environment variable holding the key's passphrase, if encrypted")
    ] = "RACKFLOW_SSH_PASSPHRASE",  # noqa: S107 - the NAME of a variable
    overwrite: OverwriteOpt = False,
) -> None:
    """Create an SshCredentials block from a key file and a known_hosts file.

    Host keys are only ever trusted from known_hosts: a missing or empty file
    is refused (unknown hosts are never accepted on first use).
    """
    from blocks import SshCredentials

    known_hosts = _read_file(known_hosts_file, "known_hosts file")
    if _known_host_lines(known_hosts) == 0:
        fail(f"known_hosts file {known_hosts_file} lists no host key: nothing would be trusted")
    private_key, passphrase = _private_key(key_file, passphrase_env)
    _save(
        SshCredentials, name, overwrite, user=user, private_key=private_key,
        passphrase=passphrase, known_hosts=known_hosts, port=port,
        connect_timeout_s=connect_timeout,
    )  # fmt: skip


class Privilege(StrEnum):
    """IPMI session privilege levels."""

    ADMINISTRATOR = "administrator"
    OPERATOR = "operator"
    USER = "user"


@app.command("create-ipmi")
def create_ipmi(
    name: NameArg,
    user: Annotated[str, typer.Option("--user", "--username", help="BMC user (<= 16 bytes)")],
    privilege: Annotated[
        Privilege, typer.Option(help="Session privilege; power control needs operator")
    ] = Privilege.ADMINISTRATOR,
    cipher_suite: Annotated[int, typer.Option(help="RMCP+ cipher suite: 3 or 17")] = 3,
    port: Annotated[int, typer.Option(help="BMC UDP port")] = 623,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a BMC")] = 5.0,
    password_env: Annotated[
        str, typer.Option(help="Environment variable holding the password")
    ] = "RACKFLOW_IPMI_PASSWORD",  # noqa: S107 - the NAME of a variable
    overwrite: OverwriteOpt = False,
) -> None:
    """Create an IpmiCredentials block (password from the environment or a prompt)."""
    from blocks import IpmiCredentials

    password = read_secret(password_env, "IPMI password")
    _save(
        IpmiCredentials, name, overwrite, user=user, password=password,
        privilege=privilege.value, cipher_suite=cipher_suite, port=port, timeout=timeout,
    )  # fmt: skip


class SnmpVersion(StrEnum):
    """SNMP versions a PDU block speaks."""

    V2C = "2c"
    V3 = "3"


class SecurityLevel(StrEnum):
    """SNMPv3 security levels (net-snmp's ``-l`` names)."""

    AUTH_PRIV = "authPriv"
    AUTH_NO_PRIV = "authNoPriv"
    NO_AUTH_NO_PRIV = "noAuthNoPriv"


@app.command("create-snmp")
def create_snmp(
    name: NameArg,
    version: Annotated[SnmpVersion, typer.Option(help="2c (community) or 3 (USM user)")] = (
        SnmpVersion.V2C
    ),
    community_env: Annotated[
        str, typer.Option(help="v2c: environment variable holding the read-write community")
    ] = "RACKFLOW_SNMP_COMMUNITY",
    user: Annotated[str | None, typer.Option("--user", "--username", help="v3: USM user")] = None,
    level: Annotated[SecurityLevel, typer.Option(help="v3: security level")] = (
        SecurityLevel.AUTH_PRIV
    ),
    auth_protocol: Annotated[
        str, typer.Option(help="v3: MD5, SHA, SHA-224, SHA-256, SHA-384 or SHA-512")
    ] = "SHA",
    auth_key_env: Annotated[
        str, typer.Option(help="v3: environment variable holding the auth pass phrase")
    ] = "RACKFLOW_SNMP_AUTH_KEY",
    priv_protocol: Annotated[
        str, typer.Option(help="v3: DES, AES, AES-192, AES-256, AES-192-C or AES-256-C")
    ] = "AES",
    priv_key_env: Annotated[
        str, typer.Option(help="v3: environment variable holding the privacy pass phrase")
    ] = "RACKFLOW_SNMP_PRIV_KEY",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer")] = 2.0,
    retries: Annotated[int, typer.Option(help="Re-sends after a timeout")] = 1,
    overwrite: OverwriteOpt = False,
) -> None:
    """Create an SnmpCredentials block for PDUs: a v2c community or an SNMPv3 user."""
    from blocks import SnmpCredentials

    fields: dict[str, Any] = {"version": version.value, "timeout": timeout, "retries": retries}
    if version is SnmpVersion.V2C:
        fields["community"] = read_secret(community_env, "SNMP community")
    else:
        if not user:
            fail("SNMPv3 needs --user")
        fields.update(user=user, auth_protocol=auth_protocol, priv_protocol=priv_protocol)
        if level is not SecurityLevel.NO_AUTH_NO_PRIV:
            fields["auth_key"] = read_secret(auth_key_env, "SNMPv3 auth pass phrase")
        if level is SecurityLevel.AUTH_PRIV:
            fields["priv_key"] = read_secret(priv_key_env, "SNMPv3 privacy pass phrase")
    _save(SnmpCredentials, name, overwrite, **fields)


@app.command("create-ilo")
def create_ilo(
    name: NameArg,
    username: Annotated[str, typer.Option("--username", "--user", help="iLO user")],
    port: Annotated[int, typer.Option(help="iLO HTTPS port")] = 443,
    ca_bundle: CaBundleOpt = None,
    insecure: InsecureOpt = False,
    password_env: Annotated[
        str, typer.Option(help="Environment variable holding the password")
    ] = "RACKFLOW_ILO_PASSWORD",  # noqa: S107 - the NAME of a variable
    overwrite: OverwriteOpt = False,
) -> None:
    """Create an IloCredentials block (password from the environment or a prompt)."""
    from blocks import IloCredentials

    password = read_secret(password_env, "iLO password")
    _save(
        IloCredentials, name, overwrite, username=username, password=password, port=port,
        verify_tls=not insecure, ca_bundle=_ca_bundle(ca_bundle),
    )  # fmt: skip


@app.command("create-xen")
def create_xen(
    name: NameArg,
    url: Annotated[str, typer.Option(help="Pool master URL, e.g. https://xen-pool1.example.com/")],
    username: Annotated[str, typer.Option("--username", "--user", help="XAPI user")],
    ca_bundle: CaBundleOpt = None,
    insecure: InsecureOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds per XenAPI call")] = 30.0,
    password_env: Annotated[
        str, typer.Option(help="Environment variable holding the password")
    ] = "RACKFLOW_XEN_PASSWORD",  # noqa: S107 - the NAME of a variable
    overwrite: OverwriteOpt = False,
) -> None:
    """Create a XenCredentials block (password from the environment or a prompt)."""
    from blocks import XenCredentials

    if "@" in url:  # not quoted: the part before @ may be a password
        fail("--url must not carry credentials: the password comes from the environment")
    if not url.startswith(("http://", "https://")):
        fail(f"--url {url!r}: expected an http:// or https:// URL")
    password = read_secret(password_env, "XenAPI password")
    _save(
        XenCredentials, name, overwrite, url=url, username=username, password=password,
        verify_tls=not insecure, ca_bundle=_ca_bundle(ca_bundle), timeout_s=timeout,
    )  # fmt: skip


@app.command("create-bugzilla")
def create_bugzilla(
    name: NameArg,
    url: Annotated[str, typer.Option(help="Bugzilla base URL (without /rest)")],
    ca_bundle: CaBundleOpt = None,
    insecure: InsecureOpt = False,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key")
    ] = "RACKFLOW_BUGZILLA_API_KEY",
    overwrite: OverwriteOpt = False,
) -> None:
    """Create a BugzillaCredentials block (API key from the environment or a prompt)."""
    from blocks import BugzillaCredentials

    api_key = read_secret(api_key_env, "Bugzilla API key")
    _save(
        BugzillaCredentials, name, overwrite, url=url, api_key=api_key,
        verify_tls=not insecure, ca_bundle=_ca_bundle(ca_bundle),
    )  # fmt: skip
