"""``rackflow blocks create-*`` for the reboot paths: secrets from env/files, validation."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from blocks import (
    BugzillaCredentials,
    IloCredentials,
    IpmiCredentials,
    SnmpCredentials,
    SshCredentials,
    XenCredentials,
)
from deployments.cli import app
from lab.machines.sshd import generate_key_pair
from tests.helpers import self_signed_cert

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def _name(kind: str) -> str:
    return f"cli-{kind}-{secrets.token_hex(3)}"


def _invoke(args: list[str], env: dict[str, str] | None = None):
    return runner.invoke(app, ["blocks", *args], env=env)


@pytest.fixture
def ssh_files(tmp_path: Path) -> tuple[Path, Path, str]:
    """A client key file, a known_hosts file with one host, and the key text."""
    private, _public = generate_key_pair("cli-test")
    _host_private, host_public = generate_key_pair()
    key_file, known_hosts = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key_file.write_text(private)
    known_hosts.write_text(f"[127.78.0.1]:2222 {host_public}\n")
    return key_file, known_hosts, private


def test_create_ssh_reads_key_and_known_hosts_files(ssh_files) -> None:
    key_file, known_hosts, private = ssh_files
    name = _name("ssh")
    result = _invoke(
        ["create-ssh", name, "--user", "ops", "--key-file", str(key_file),
         "--known-hosts-file", str(known_hosts), "--port", "2222"],
        env={"RACKFLOW_SSH_PASSPHRASE": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"saved ssh-credentials/{name}" in result.output
    assert private.splitlines()[1] not in result.output
    block = SshCredentials.load(name)
    assert (block.user, block.port, block.passphrase) == ("ops", 2222, None)
    assert block.private_key.get_secret_value() == private
    assert block.known_hosts == known_hosts.read_text()


def test_create_ssh_with_an_encrypted_key_needs_the_passphrase(tmp_path: Path) -> None:
    phrase = "pp-" + secrets.token_hex(8)
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(phrase.encode()),
    )
    key_file = tmp_path / "enc"
    key_file.write_bytes(key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"127.0.0.1 {generate_key_pair()[1]}\n")
    args = ["create-ssh", _name("ssh"), "--user", "ops", "--key-file", str(key_file),
            "--known-hosts-file", str(known_hosts)]  # fmt: skip
    refused = _invoke(args, env={"RACKFLOW_SSH_PASSPHRASE": ""})
    assert refused.exit_code == 2
    assert "no passphrase for the encrypted key: set RACKFLOW_SSH_PASSPHRASE" in refused.output
    wrong = _invoke(args, env={"RACKFLOW_SSH_PASSPHRASE": "nope-" + secrets.token_hex(4)})
    assert wrong.exit_code == 2 and "private key" in wrong.output
    ok = _invoke(args, env={"RACKFLOW_SSH_PASSPHRASE": phrase})
    assert ok.exit_code == 0, ok.output
    assert phrase not in ok.output
    block = SshCredentials.load(args[1])
    assert block.passphrase is not None and block.passphrase.get_secret_value() == phrase


def test_create_ssh_refuses_missing_or_empty_known_hosts(ssh_files, tmp_path: Path) -> None:
    key_file, _known_hosts, _private = ssh_files
    base = ["create-ssh", _name("ssh"), "--user", "ops", "--key-file", str(key_file)]
    missing = _invoke([*base, "--known-hosts-file", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "known_hosts file" in missing.output and "does not exist" in missing.output
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("# nothing trusted yet\n")
    refused = _invoke([*base, "--known-hosts-file", str(empty)])
    assert refused.exit_code == 2 and "lists no host key" in refused.output
    no_key = _invoke(["create-ssh", _name("ssh"), "--user", "ops", "--key-file",
                      str(tmp_path / "none"), "--known-hosts-file", str(_known_hosts)])  # fmt: skip
    assert no_key.exit_code == 2 and "private key file" in no_key.output


def test_create_ipmi_from_environment(unique_password: str) -> None:
    name = _name("ipmi")
    result = _invoke(
        ["create-ipmi", name, "--user", "rackadmin", "--privilege", "operator",
         "--cipher-suite", "17", "--port", "1623"],
        env={"RACKFLOW_IPMI_PASSWORD": unique_password},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert unique_password not in result.output
    block = IpmiCredentials.load(name)
    assert (block.user, block.privilege, block.cipher_suite, block.port) == (
        "rackadmin", "operator", 17, 1623,
    )  # fmt: skip
    assert block.password.get_secret_value() == unique_password


def test_create_ipmi_errors_are_clear_and_never_show_the_password(unique_password: str) -> None:
    bad = _invoke(
        ["create-ipmi", _name("ipmi"), "--user", "ops", "--cipher-suite", "5"],
        env={"RACKFLOW_IPMI_PASSWORD": unique_password},
    )
    assert bad.exit_code == 2
    assert "cipher suite 5 unsupported" in bad.output and unique_password not in bad.output
    missing = _invoke(
        ["create-ipmi", _name("ipmi"), "--user", "ops"], env={"RACKFLOW_IPMI_PASSWORD": ""}
    )
    assert missing.exit_code == 2
    assert "no IPMI password: set RACKFLOW_IPMI_PASSWORD" in missing.output
    other_env = _invoke(
        ["create-ipmi", _name("ipmi"), "--user", "ops", "--password-env", "MY_BMC_PW"],
        env={"MY_BMC_PW": unique_password},
    )
    assert other_env.exit_code == 0, other_env.output


def test_create_snmp_v2c_and_v3(unique_password: str) -> None:
    v2 = _name("snmp")
    result = _invoke(["create-snmp", v2], env={"RACKFLOW_SNMP_COMMUNITY": unique_password})
    assert result.exit_code == 0, result.output
    assert unique_password not in result.output
    block = SnmpCredentials.load(v2)
    assert block.version == "2c" and block.community is not None
    assert block.community.get_secret_value() == unique_password

    v3, auth, priv = _name("snmp"), "auth-" + secrets.token_hex(6), "priv-" + secrets.token_hex(6)
    result = _invoke(
        ["create-snmp", v3, "--version", "3", "--user", "ops", "--auth-protocol", "SHA-256",
         "--priv-protocol", "AES-256"],
        env={"RACKFLOW_SNMP_AUTH_KEY": auth, "RACKFLOW_SNMP_PRIV_KEY": priv},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert auth not in result.output and priv not in result.output
    block = SnmpCredentials.load(v3)
    assert (block.version, block.user, block.auth_protocol, block.priv_protocol) == (
        "3", "ops", "SHA-256", "AES-256",
    )  # fmt: skip
    assert block.auth_key is not None and block.auth_key.get_secret_value() == auth
    assert block.priv_key is not None and block.priv_key.get_secret_value() == priv


def test_create_snmp_refusals() -> None:
    no_user = _invoke(["create-snmp", _name("snmp"), "--version", "3"], env={})
    assert no_user.exit_code == 2 and "SNMPv3 needs --user" in no_user.output
    no_community = _invoke(["create-snmp", _name("snmp")], env={"RACKFLOW_SNMP_COMMUNITY": ""})
    assert no_community.exit_code == 2
    assert "no SNMP community: set RACKFLOW_SNMP_COMMUNITY" in no_community.output
    bad_protocol = _invoke(
        ["create-snmp", _name("snmp"), "--version", "3", "--user", "ops", "--level",
         "authNoPriv", "--auth-protocol", "SHA-1"],
        env={"RACKFLOW_SNMP_AUTH_KEY": "auth-" + secrets.token_hex(6)},
    )  # fmt: skip
    assert bad_protocol.exit_code == 2 and "auth_protocol" in bad_protocol.output


def test_create_ilo_with_ca_bundle(unique_password: str, tmp_path: Path) -> None:
    ca, _key = self_signed_cert(tmp_path, "127.0.0.1")
    name = _name("ilo")
    result = _invoke(
        ["create-ilo", name, "--username", "Administrator", "--ca-bundle", str(ca),
         "--port", "8443"],
        env={"RACKFLOW_ILO_PASSWORD": unique_password},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert unique_password not in result.output
    block = IloCredentials.load(name)
    assert (block.username, block.port, block.verify_tls) == ("Administrator", 8443, True)
    assert block.ca_bundle == str(ca.resolve())
    assert block.password.get_secret_value() == unique_password
    missing_ca = _invoke(
        ["create-ilo", _name("ilo"), "--username", "a", "--ca-bundle", str(tmp_path / "no.pem")],
        env={"RACKFLOW_ILO_PASSWORD": unique_password},
    )
    assert missing_ca.exit_code == 2 and "does not exist" in missing_ca.output


def test_create_xen(unique_password: str) -> None:
    name = _name("xen")
    result = _invoke(
        ["create-xen", name, "--url", "https://xen-pool1.example.com/", "--username", "root",
         "--timeout", "12"],
        env={"RACKFLOW_XEN_PASSWORD": unique_password},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    block = XenCredentials.load(name)
    assert (block.url, block.username, block.timeout_s) == (
        "https://xen-pool1.example.com/", "root", 12.0,
    )  # fmt: skip
    assert block.password.get_secret_value() == unique_password
    leaky = _invoke(
        ["create-xen", _name("xen"), "--url", "https://root:hunter2@xen/", "--username", "root"],
        env={"RACKFLOW_XEN_PASSWORD": unique_password},
    )
    assert leaky.exit_code == 2 and "must not carry credentials" in leaky.output
    assert "hunter2" not in leaky.output


def test_create_bugzilla(unique_password: str) -> None:
    name = _name("bugs")
    result = _invoke(
        ["create-bugzilla", name, "--url", "https://bugzilla.example.com/"],
        env={"RACKFLOW_BUGZILLA_API_KEY": unique_password},
    )
    assert result.exit_code == 0, result.output
    assert unique_password not in result.output
    block = BugzillaCredentials.load(name)
    assert block.url == "https://bugzilla.example.com"
    assert block.api_key.get_secret_value() == unique_password
    bad = _invoke(
        ["create-bugzilla", _name("bugs"), "--url", "ftp://bugzilla.example.com"],
        env={"RACKFLOW_BUGZILLA_API_KEY": unique_password},
    )
    assert bad.exit_code == 2
    assert "url: Value error, must be an http:// or https:// URL" in bad.output
    assert unique_password not in bad.output


def test_block_names_and_overwrite(unique_password: str) -> None:
    env = {"RACKFLOW_IPMI_PASSWORD": unique_password}
    bad_name = _invoke(["create-ipmi", "Lab_IPMI", "--user", "ops"], env=env)
    assert bad_name.exit_code == 2 and "lowercase letters, digits and dashes" in bad_name.output
    name = _name("ipmi")
    assert _invoke(["create-ipmi", name, "--user", "first"], env=env).exit_code == 0
    again = _invoke(["create-ipmi", name, "--user", "second"], env=env)
    assert again.exit_code == 2 and "already exists (--overwrite replaces it)" in again.output
    assert IpmiCredentials.load(name).user == "first"
    replaced = _invoke(["create-ipmi", name, "--user", "second", "--overwrite"], env=env)
    assert replaced.exit_code == 0, replaced.output
    assert IpmiCredentials.load(name).user == "second"
