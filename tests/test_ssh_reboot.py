"""SSH reboots of reboot-lab machines through real sshd hosts on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prefect import flow

from clients.errors import AuthError, DeadlineExceeded, PreconditionError, TransportError
from clients.ping import ping
from clients.ssh import HostKeyError, RebootFailed
from lab.machines.sshd import SshFaults
from tasks.ping import wait_for_reachability
from tasks.ssh import ssh_reboot
from tests.helpers import wait_until
from tests.ssh_lab import (  # noqa: F401 (fixtures)
    SshLab,
    captured_fixture,
    make_key_pair,
    ssh_lab_fixture,
    start_ssh_lab,
)

M1, WIN = "m1.lab.test", "m2.lab.test"
BLOCK = "ssh-lab"


@pytest.fixture
async def lab(prefect_harness: None, tmp_path: Path) -> AsyncIterator[SshLab]:
    with start_ssh_lab(tmp_path, count=2, windows=[WIN]) as running:
        await running.save_credentials(BLOCK)
        yield running


@flow
async def reboot_and_watch(
    host: str, ssh_port: int, ping_port: int, credentials: str, windows: bool = False
) -> dict[str, object]:
    command = await ssh_reboot(
        host, port=ssh_port, credentials=credentials, windows=windows, command_timeout_s=10
    )
    down = await wait_for_reachability(
        host, port=ping_port, method="tcp", reachable=False, deadline_s=10, interval_s=0.02
    )
    up = await wait_for_reachability(
        host, port=ping_port, method="tcp", reachable=True, deadline_s=10, interval_s=0.02
    )
    return {"command": command, "down": down, "up": up}


@flow
async def reboot_only(host: str, ssh_port: int, credentials: str) -> str:
    # A Linux host the inventory knows as such (the unknown platform's Windows
    # fallback is in tests/test_ssh_reboot_fallback.py).
    return await ssh_reboot(
        host, port=ssh_port, credentials=credentials, windows=False, command_timeout_s=10
    )


def ssh_events(lab: SshLab, name: str) -> list[str]:
    return [e["event"] for e in lab.snapshot(name)["events"] if e["source"] == "ssh"]


def refusals(lab: SshLab, name: str) -> int:
    return lab.sshd.log_path(name).read_text().count("Connection closed by authenticating user")


def secret_fragments(private_key: str) -> list[str]:
    """The key's base64 body lines: none may show up anywhere."""
    return [line for line in private_key.splitlines() if line and not line.startswith("-----")]


def fingerprint(known_hosts_line: str) -> str:
    blob = base64.b64decode(known_hosts_line.split()[2])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


async def test_ssh_reboot_takes_the_machine_down_and_up(lab: SshLab, captured) -> None:
    address = lab.address(M1)
    before = lab.snapshot(M1)["cycles"]
    result = await reboot_and_watch(address, lab.ssh_port(M1), lab.ping_port(M1), BLOCK)
    assert result["command"] == "reboot"
    assert 0.2 < result["down"] < 5  # shutdown_s 0.3: it kept answering until then
    assert 0.3 < result["up"] < 5  # boot_s 0.5
    snap = lab.snapshot(M1)
    assert snap["cycles"] == before + 1 and snap["answering"] is True
    assert ssh_events(lab, M1) == ["reboot"]
    assert [(c["tool"], c["exit"]) for c in lab.sshd.calls(M1)] == [("reboot", 0)]
    # sshd is back on the same port with the same host key.
    lab.wait_ssh(M1)
    with lab.client(M1) as ssh:
        assert ssh.run("hostname >/dev/null; echo back", timeout_s=5).stdout == "back\n"
    assert "reboot accepted: 'reboot' (exit 0)" in captured.text
    for fragment in secret_fragments(lab.key.private):
        assert fragment not in captured.text


async def test_failing_reboot_falls_back_to_shutdown(lab: SshLab, captured) -> None:
    lab.sshd.set_faults(M1, SshFaults(fail={"reboot": "reboot: Permission denied"}))
    result = await reboot_and_watch(lab.address(M1), lab.ssh_port(M1), lab.ping_port(M1), BLOCK)
    assert result["command"] == "shutdown -r now"
    calls = [(c["tool"], c["args"], c["exit"]) for c in lab.sshd.calls(M1)]
    assert calls == [("reboot", [], 1), ("shutdown", ["-r", "now"], 0)]
    assert ssh_events(lab, M1) == ["reboot"]  # one reboot, from shutdown
    assert lab.snapshot(M1)["cycles"] == 1
    assert "'reboot' failed: exit 1: reboot: Permission denied" in captured.text


async def test_every_command_failing_is_one_error_listing_each(lab: SshLab) -> None:
    lab.sshd.set_faults(
        M1,
        SshFaults(fail={"reboot": "reboot: Permission denied", "shutdown": "shutdown: nope"}),
    )
    start = time.monotonic()
    with pytest.raises(RebootFailed) as caught:
        await reboot_only(lab.address(M1), lab.ssh_port(M1), BLOCK)
    text = str(caught.value)
    assert "'reboot': exit 1: reboot: Permission denied" in text
    assert "'shutdown -r now': exit 1: shutdown: nope" in text
    assert [f.command for f in caught.value.failures] == ["reboot", "shutdown -r now"]
    assert len(lab.sshd.calls(M1)) == 2  # not retried: a refusal is not transient
    assert time.monotonic() - start < 5
    assert ssh_events(lab, M1) == [] and lab.snapshot(M1)["cycles"] == 0


async def test_windows_host_reboots_with_shutdown_r(lab: SshLab) -> None:
    result = await reboot_and_watch(
        lab.address(WIN), lab.ssh_port(WIN), lab.ping_port(WIN), BLOCK, windows=True
    )
    assert result["command"] == "shutdown /r /t 0"
    assert [(c["tool"], c["args"]) for c in lab.sshd.calls(WIN)] == [
        ("shutdown", ["/r", "/t", "0"])
    ]
    assert lab.snapshot(WIN)["cycles"] == 1
    # A Linux host does not know the Windows form, and the reverse.
    with lab.client(M1) as ssh:
        with pytest.raises(RebootFailed, match="invalid arguments"):
            ssh.reboot(windows=True, timeout_s=5)
    with lab.client(WIN) as ssh:
        assert ssh.run("reboot", timeout_s=5).exit_status == 1
    assert lab.snapshot(M1)["cycles"] == 0


async def test_unknown_host_key_is_refused_and_nothing_reboots(lab: SshLab) -> None:
    await lab.save_credentials("ssh-other-host", known_hosts=lab.known_hosts([WIN]))
    with pytest.raises(HostKeyError) as caught:
        await reboot_only(lab.address(M1), lab.ssh_port(M1), "ssh-other-host")
    error = caught.value
    host = f"[{lab.address(M1)}]:{lab.ssh_port(M1)}"
    assert error.host == host and error.expected is None
    assert error.fingerprint == fingerprint(lab.sshd.host_key_line(M1))
    assert host in str(error) and error.fingerprint in str(error)
    assert "not in known_hosts" in str(error)
    assert isinstance(error, PreconditionError) and not error.retryable
    assert lab.sshd.calls(M1) == [] and lab.snapshot(M1)["cycles"] == 0


def test_changed_host_key_is_refused_naming_both_keys(ssh_lab: SshLab) -> None:
    host = f"[{ssh_lab.address(M1)}]:{ssh_lab.ssh_port(M1)}"
    other_key = ssh_lab.sshd.host_key_line(WIN).split(" ", 1)[1]  # WIN's key under M1's name
    with pytest.raises(HostKeyError) as caught:
        ssh_lab.client(M1, known_hosts=f"{host} {other_key}\n").connect()
    error = caught.value
    assert error.fingerprint == fingerprint(ssh_lab.sshd.host_key_line(M1))
    assert error.expected == fingerprint(ssh_lab.sshd.host_key_line(WIN))
    assert "CHANGED" in str(error) and "man-in-the-middle" in str(error)
    assert ssh_lab.sshd.calls(M1) == [] and ssh_lab.snapshot(M1)["cycles"] == 0


async def test_wrong_private_key_is_an_auth_error_and_nothing_reboots(
    lab: SshLab, captured
) -> None:
    wrong = make_key_pair("not-authorized")
    await lab.save_credentials("ssh-wrong-key", private_key=wrong.private)
    with pytest.raises(AuthError) as caught:
        await reboot_only(lab.address(M1), lab.ssh_port(M1), "ssh-wrong-key")
    assert not caught.value.retryable
    assert f"[{lab.address(M1)}]:{lab.ssh_port(M1)}" in str(caught.value)
    assert lab.sshd.calls(M1) == [] and lab.snapshot(M1)["cycles"] == 0
    # One attempt: an AuthError is never retried (sshd logs the refusal a moment later).
    assert wait_until(lambda: refusals(lab, M1) >= 1)
    assert refusals(lab, M1) == 1
    # Neither key leaks into logs or the error (its text, repr, or causes).
    texts = [captured.text, str(caught.value), repr(caught.value)]
    cause = caught.value.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    for secret in (wrong.private, lab.key.private):
        for fragment in secret_fragments(secret):
            assert all(fragment not in text for text in texts)


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"correct horse"),
    ).decode()
    with start_ssh_lab(tmp_path / "enc", subnet="127.78.23.0/24", authorized_keys=[public]) as lab:
        with lab.client(M1, private_key=encrypted, passphrase="correct horse") as ssh:
            assert ssh.run("echo ok", timeout_s=5).stdout == "ok\n"
        with pytest.raises(PreconditionError, match="passphrase") as missing:
            lab.client(M1, private_key=encrypted).connect()
        with pytest.raises(PreconditionError, match="passphrase") as wrong:
            lab.client(M1, private_key=encrypted, passphrase="wrong").connect()
        with pytest.raises(PreconditionError, match="not a readable"):
            lab.client(M1, private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").connect()
    for error in (missing.value, wrong.value):
        assert all(f not in str(error) for f in secret_fragments(encrypted))


def test_sshd_follows_the_machine_down_and_up(ssh_lab: SshLab) -> None:
    address, port = ssh_lab.address(M1), ssh_lab.ssh_port(M1)
    ssh = ssh_lab.client(M1)
    ssh.connect()
    try:
        assert ssh.run("echo up", timeout_s=5).stdout == "up\n"
        ssh_lab.lab.act(M1, "reset")  # down at once, like a hard reset
        ssh_lab.lab.wait_answering(M1, False, timeout_s=5)
        assert not ssh_lab.sshd.running(M1)
        # The open session died with the machine, and nothing answers on port 22.
        with pytest.raises(TransportError):
            ssh.run("echo still here", timeout_s=2)
    finally:
        ssh.close()
    refused = asyncio.run(ping(address, port=port, method="tcp", timeout_s=1))
    assert (refused.reachable, refused.error) == (False, "connection refused")
    with pytest.raises(TransportError) as down:
        ssh_lab.client(M1).connect()
    assert down.value.retryable
    ssh_lab.lab.wait_answering(M1, True, timeout_s=5)
    ssh_lab.wait_ssh(M1)
    with ssh_lab.client(M1) as again:  # same port, same host key
        assert again.run("echo back", timeout_s=5).stdout == "back\n"
    assert ssh_lab.snapshot(M1)["cycles"] == 1


def test_a_reboot_that_kills_the_session_counts_as_accepted(ssh_lab: SshLab) -> None:
    ssh_lab.sshd.set_faults(M1, SshFaults(hang=True))  # `reboot` never returns
    start = time.monotonic()
    with ssh_lab.client(M1) as ssh:
        result = ssh.reboot(timeout_s=10)
    assert (result.command, result.session_dropped, result.failures) == ("reboot", True, ())
    assert 0.2 < time.monotonic() - start < 5  # the session died at the end of shutdown_s
    ssh_lab.lab.wait_answering(M1, True, timeout_s=5)
    assert ssh_lab.snapshot(M1)["cycles"] == 1


def test_run_reports_exit_status_and_both_streams(ssh_lab: SshLab) -> None:
    with ssh_lab.client(M1) as ssh:
        result = ssh.run("echo out; echo err >&2; exit 7", timeout_s=5)
        assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
        big = ssh.run("head -c 300000 /dev/zero | tr '\\0' x", timeout_s=10)
        assert len(big.stdout) == 300000
        with pytest.raises(DeadlineExceeded):
            ssh.run("sleep 5", timeout_s=0.3)
        assert ssh.run("echo fine", timeout_s=5).stdout == "fine\n"  # connection still usable
