"""SSH to a machine's OS (paramiko): run a command, reboot it.

Host keys are checked against the known_hosts text the caller gives, and
nothing else: an unknown or changed host key is refused with
:class:`HostKeyError` naming the host and the key's fingerprint, never
accepted on first use (:mod:`clients.ssh_keys`). Only the given private key
is offered (no agent, no ``~/.ssh`` keys). The API is synchronous (paramiko
is); async callers use ``asyncio.to_thread``.

A real ``reboot`` often kills the SSH session before the command returns, so
:meth:`SshClient.reboot` counts "the session ended after the command was
sent" as accepted, like exit status 0. That includes a command that timed out
(no exit within its own limit) followed by a connection that broke before the
next command could be sent: a reboot that took the network down first leaves
a silent session, and asking again (or retrying the task) could reboot the
machine twice. Callers verify the reboot by watching the machine go down.

Each command has its own timeout. A command that times out has its channel
closed and the next command runs on the same connection; sshd does not kill
the hung remote process (its output simply goes nowhere), the reboot that
follows does.

Which commands, by platform (``windows``):

* ``False`` (Linux and other Unixes): ``reboot``, then ``shutdown -r now``.
* ``True`` (OpenSSH for Windows): ``shutdown /r /t 0`` only.
* ``None`` (unknown): the Linux forms, then the Windows form last. That is
  safe on both: Windows refuses the Linux forms (``reboot`` is not a
  command, ``shutdown.exe`` rejects ``now``) and a Unix ``shutdown`` refuses
  ``/r`` as a time ("Failed to parse time specification"), all with a
  non-zero exit and nothing done; the cost is one more failed command when a
  Linux host refuses both of its forms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import paramiko

from clients.errors import (
    AuthError,
    DeadlineExceeded,
    PreconditionError,
    ProtocolError,
    RackflowError,
    RemoteError,
    TransportError,
)
from clients.ssh_keys import HostKeyError, RejectUnknownHosts, load_known_hosts, load_private_key

__all__ = [
    "ANY_REBOOT_COMMANDS",
    "LINUX_REBOOT_COMMANDS",
    "WINDOWS_REBOOT_COMMANDS",
    "CommandFailure",
    "CommandResult",
    "HostKeyError",
    "RebootFailed",
    "RebootResult",
    "SshClient",
    "load_private_key",
]

logger = logging.getLogger("rackflow.clients.ssh")

LINUX_REBOOT_COMMANDS = ("reboot", "shutdown -r now")
WINDOWS_REBOOT_COMMANDS = ("shutdown /r /t 0",)
ANY_REBOOT_COMMANDS = LINUX_REBOOT_COMMANDS + WINDOWS_REBOOT_COMMANDS
# SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE (RFC 4253 11.1): SSH's own
# "credentials refused" code, used as RemoteError.status.
_SSH_AUTH_REFUSED = 14


@dataclass(frozen=True)
class CommandResult:
    """What a remote command did."""

    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class CommandFailure:
    """A reboot command the host did not accept."""

    command: str
    exit_status: int | None
    error: str


@dataclass(frozen=True)
class RebootResult:
    """Which reboot command was accepted, and what failed before it.

    Attributes:
        command: The accepted command.
        session_dropped: True when the session ended before the command returned
            (a real reboot killing sshd), False when it exited 0.
        failures: Commands tried before, with their errors.
    """

    command: str
    session_dropped: bool
    failures: tuple[CommandFailure, ...] = ()


class RebootFailed(RemoteError):
    """Every reboot command failed; the message lists each command's error.

    Args:
        target: The host.
        failures: Each command tried and why it failed.
    """

    def __init__(self, *, target: str, failures: Sequence[CommandFailure]) -> None:
        self.failures = list(failures)
        listed = "; ".join(f"{f.command!r}: {f.error}" for f in self.failures)
        statuses = [f.exit_status for f in self.failures if f.exit_status is not None]
        super().__init__(
            status=statuses[-1] if statuses else -1,
            code="reboot-failed",
            message=f"no reboot command was accepted: {listed}",
            target=target,
            protocol="SSH exit",
        )


def _default_commands(windows: bool | None) -> tuple[str, ...]:
    if windows is None:
        return ANY_REBOOT_COMMANDS
    return WINDOWS_REBOOT_COMMANDS if windows else LINUX_REBOOT_COMMANDS


class SshClient:
    """One SSH connection to a host, authenticated with a private key.

    No network I/O until entered (``with SshClient(...) as ssh:``) or :meth:`connect`.

    Args:
        host: Address or host name.
        port: SSH port.
        user: Login user.
        private_key: The private key's text (OpenSSH or PEM).
        passphrase: The key's passphrase, when encrypted.
        known_hosts: known_hosts content: the only host keys trusted.
        connect_timeout_s: Limit for TCP connect, banner, key exchange and authentication.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 22,
        user: str,
        private_key: str,
        passphrase: str | None = None,
        known_hosts: str,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self._private_key = private_key
        self._passphrase = passphrase
        self._known_hosts = known_hosts
        self._timeout = connect_timeout_s
        self._client: paramiko.SSHClient | None = None
        self.target = f"[{host}]:{port}" if port != 22 or ":" in host else host

    def __repr__(self) -> str:
        """User and host only: never the key."""
        return f"SshClient({self.user}@{self.target})"

    def __enter__(self) -> SshClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open and authenticate the connection (no-op when open).

        Raises:
            HostKeyError: The host key is unknown or changed (nothing was sent).
            AuthError: The host refused the key for this user.
            TransportError: Could not connect, or the connection broke.
            ProtocolError: No common algorithms with the host.
            PreconditionError: Unreadable private key or known_hosts.
        """
        if self._client is not None:
            return
        pkey = load_private_key(self._private_key, self._passphrase)
        client = paramiko.SSHClient()
        load_known_hosts(self._known_hosts, client.get_host_keys())
        client.set_missing_host_key_policy(RejectUnknownHosts())
        t = self._timeout
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException as exc:
            client.close()
            if isinstance(exc, (paramiko.SSHException, OSError, EOFError)):
                raise self._connect_error(exc) from exc
            raise
        self._client = client
        logger.debug("ssh %s@%s: connected", self.user, self.target)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def run(self, command: str, *, timeout_s: float = 30.0) -> CommandResult:
        """Run a command and collect its exit status and output.

        Args:
            command: Shell command line (must not carry secrets: hosts log them).
            timeout_s: Limit for the whole command.

        Returns:
            Exit status, stdout and stderr (decoded, undecodable bytes replaced).

        Raises:
            TransportError: The connection broke, or the session ended without an exit status.
            DeadlineExceeded: The command did not finish in time (its channel is closed).
            PreconditionError: Not connected.
        """
        result = self._execute(command, timeout_s)
        if result is None:
            raise TransportError(
                target=self.target, reason=f"session ended before {command!r} reported its exit"
            )
        return result

    def reboot(
        self,
        *,
        commands: Sequence[str] | None = None,
        windows: bool | None = None,
        timeout_s: float = 20.0,
    ) -> RebootResult:
        """Ask the OS to reboot, trying each command until one is accepted.

        A command is accepted when it exits 0, or when the session ends after it
        was sent (a reboot kills sshd, often before the command returns). A
        command that does not exit within ``timeout_s`` failed: its channel is
        closed and the next command runs.

        Args:
            commands: Commands in order of preference; default by ``windows``.
            windows: The host runs Windows (``True``: ``shutdown /r /t 0``), a
                Unix (``False``: ``reboot``, ``shutdown -r now``), or unknown
                (``None``: the Unix forms, then the Windows form). See the
                module docstring.
            timeout_s: Limit for each command.

        Returns:
            The accepted command and the failures before it.

        Raises:
            RebootFailed: No command was accepted (the message lists each error).
            TransportError: The connection broke before a command could be sent,
                and no command before it was left without an answer.
        """
        tried = tuple(commands or _default_commands(windows))
        failures: list[CommandFailure] = []
        for command in tried:
            try:
                result = self._execute(command, timeout_s)
            except DeadlineExceeded:
                failures.append(CommandFailure(command, None, f"no exit after {timeout_s:g} s"))
                logger.info("ssh %s: %r: no exit after %g s", self.target, command, timeout_s)
                continue
            except TransportError as exc:
                return self._gone_after_timeout(failures, exc)
            if result is None or result.exit_status == 0:
                logger.info("ssh %s: reboot accepted: %r", self.target, command)
                return RebootResult(command, result is None, tuple(failures))
            error = (result.stderr.strip() or result.stdout.strip())[-500:]
            failures.append(
                CommandFailure(command, result.exit_status, f"exit {result.exit_status}: {error}")
            )
            logger.info("ssh %s: %r failed: exit %d", self.target, command, result.exit_status)
        raise RebootFailed(target=self.target, failures=failures)

    def _gone_after_timeout(
        self, failures: Sequence[CommandFailure], exc: TransportError
    ) -> RebootResult:
        """The connection broke before the next command: accept the one left unanswered.

        A command that timed out was sent and never answered; the session being
        gone now is the same "session ended after the command" as a reboot
        that killed sshd, only slower to notice (e.g. the network went down
        before sshd did). Asking again, or retrying the task, could reboot the
        machine twice.

        Raises:
            TransportError: ``exc``, when the last command tried did answer.
        """
        if not failures or failures[-1].exit_status is not None:
            raise exc
        sent = failures[-1]
        logger.info(
            "ssh %s: %r: session gone after it timed out (%s): counted as accepted",
            self.target, sent.command, exc.reason,
        )  # fmt: skip
        return RebootResult(sent.command, True, tuple(failures[:-1]))

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None:
            raise PreconditionError(subject=self.target, reason="not connected (use `with`)")
        return transport

    def _execute(self, command: str, timeout_s: float) -> CommandResult | None:
        """Run ``command``; None when the session ended after it was sent, without an exit."""
        transport = self._transport()
        try:
            channel = transport.open_session(timeout=timeout_s)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(
                target=self.target, reason=f"cannot run {command!r}: {exc}"
            ) from exc
        try:
            return self._collect(channel, command, timeout_s)
        finally:
            channel.close()

    def _collect(
        self, channel: paramiko.Channel, command: str, timeout_s: float
    ) -> CommandResult | None:
        start = time.monotonic()
        out, err = bytearray(), bytearray()
        while True:
            # status_event is set by the exit status and by the channel closing.
            done = channel.status_event.wait(0.05)
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            # sshd may send the exit status before the last output: wait for EOF too.
            if done and (channel.eof_received or channel.closed):
                break
            waited = time.monotonic() - start
            if waited > timeout_s:
                raise DeadlineExceeded(operation=f"{self.target}: {command!r}", waited_s=waited)
            if done:
                time.sleep(0.005)
        if channel.exit_status == -1:  # closed without exit-status: the session was killed
            return None
        return CommandResult(
            channel.exit_status, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def _connect_error(self, exc: BaseException) -> RackflowError:
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                host=self.target,
                key_type=exc.key.get_name(),
                fingerprint=exc.key.fingerprint,
                expected=exc.expected_key.fingerprint,
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return AuthError(
                protocol="SSH",
                status=_SSH_AUTH_REFUSED,
                code="SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE",
                message=f"the host refused the private key for user {self.user!r}",
                target=self.target,
            )
        if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
            return ProtocolError(target=self.target, detail=f"no common SSH algorithms: {exc}")
        if isinstance(exc, TimeoutError):
            return TransportError(target=self.target, reason=f"timed out after {self._timeout:g} s")
        # Refused, reset, banner not read (host still booting), EOF mid-handshake.
        return TransportError(target=self.target, reason=str(exc) or type(exc).__name__)
