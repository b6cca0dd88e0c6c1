"""SSH reboot fallbacks against real sshd hosts: hung commands, silent sessions, platforms.

Each reboot command has its own timeout: a ``reboot`` that hangs (without
rebooting) is abandoned and ``shutdown -r now`` runs. When the platform is
unknown, the Windows form ``shutdown /r /t 0`` comes last.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prefect import flow

from clients.ssh import RebootFailed
from lab.machines.sshd import SshFaults
from tasks.ping import wait_for_reachability
from tasks.ssh import ssh_reboot
from tests.helpers import wait_until
from tests.ssh_lab import (  # noqa: F401 (fixtures)
    SshLab,
    captured_fixture,
    ssh_lab_fixture,
    start_ssh_lab,
)

M1, WIN = "m1.lab.test", "m2.lab.test"
BLOCK = "ssh-fallback-lab"


@pytest.fixture
async def lab(prefect_harness: None, tmp_path: Path) -> AsyncIterator[SshLab]:
    with start_ssh_lab(tmp_path, count=2, windows=[WIN], subnet="127.78.24.0/24") as running:
        await running.save_credentials(BLOCK)
        yield running


@flow
async def reboot_and_watch(
    lab_host: str,
    ssh_port: int,
    ping_port: int,
    windows: bool | None = None,
    command_timeout_s: float = 10.0,
) -> dict[str, object]:
    command = await ssh_reboot(
        lab_host, port=ssh_port, credentials=BLOCK, windows=windows,
        command_timeout_s=command_timeout_s,
    )  # fmt: skip
    for reachable in (False, True):
        await wait_for_reachability(
            lab_host, port=ping_port, method="tcp", reachable=reachable, deadline_s=10,
            interval_s=0.02,
        )  # fmt: skip
    return {"command": command}


@flow
async def reboot_only(host: str, ssh_port: int, windows: bool | None) -> str:
    return await ssh_reboot(
        host, port=ssh_port, credentials=BLOCK, windows=windows, command_timeout_s=10
    )


def watch(lab: SshLab, name: str, **kwargs: object) -> dict[str, object]:
    """Arguments of :func:`reboot_and_watch` for a machine."""
    return {
        "lab_host": lab.address(name), "ssh_port": lab.ssh_port(name),
        "ping_port": lab.ping_port(name), **kwargs,
    }  # fmt: skip


def calls(lab: SshLab, name: str) -> list[tuple[str, list[str], int | None]]:
    return [(c["tool"], c["args"], c["exit"]) for c in lab.sshd.calls(name)]


def ssh_events(lab: SshLab, name: str) -> list[str]:
    return [e["event"] for e in lab.snapshot(name)["events"] if e["source"] == "ssh"]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- a command that hangs ---------------------------------------------------------------


async def test_a_hung_reboot_times_out_and_shutdown_reboots(lab: SshLab, captured) -> None:
    lab.sshd.set_faults(M1, SshFaults(stall={"reboot"}))  # `reboot` hangs and does nothing
    # 3 s: `shutdown -r now` must exit within it even on a loaded machine (0.5 s did not).
    result = await reboot_and_watch(**watch(lab, M1, command_timeout_s=3.0))
    assert result["command"] == "shutdown -r now"
    # Both ran on the host; `reboot` never returned, `shutdown -r now` rebooted it, once.
    by_tool = {tool: (args, status) for tool, args, status in calls(lab, M1)}
    assert by_tool == {"reboot": ([], None), "shutdown": (["-r", "now"], 0)}
    assert ssh_events(lab, M1) == ["reboot"]
    assert lab.snapshot(M1)["cycles"] == 1 and lab.snapshot(M1)["answering"]
    assert "'reboot' failed: no exit after 3 s" in captured.text
    assert "reboot accepted: 'shutdown -r now' (exit 0)" in captured.text
    # The hung `reboot` outlived its channel and connection, but not the machine.
    [stalled] = [s for s in lab.sshd.stalls(M1) if s["event"] == "stalled"]
    assert not alive(stalled["pid"])
    assert lab.sshd.session_processes(M1) == []


def test_a_hung_command_is_abandoned_its_channel_closed_the_connection_kept(
    ssh_lab: SshLab,
) -> None:
    ssh_lab.sshd.set_faults(M1, SshFaults(stall={"reboot"}))
    threads_before = set(threading.enumerate())
    with ssh_lab.client(M1) as ssh:
        with pytest.raises(RebootFailed) as caught:
            ssh.reboot(commands=["reboot"], timeout_s=0.5)
        [failure] = caught.value.failures
        assert (failure.command, failure.exit_status) == ("reboot", None)
        assert failure.error == "no exit after 0.5 s"
        # The host saw the channel close while the connection stayed open: sshd
        # closed the hung tool's output, and the same connection still works.
        hung_up = lambda: [s["event"] for s in ssh_lab.sshd.stalls(M1)] == ["stalled", "hung up"]  # noqa: E731
        assert wait_until(hung_up, timeout_s=5)
        assert ssh.run("echo still here", timeout_s=5).stdout == "still here\n"
        [pid] = {s["pid"] for s in ssh_lab.sshd.stalls(M1)}
        assert alive(pid)  # like a real hung command: closing its channel does not kill it
    # The client left nothing behind: its transport thread ended with the connection.
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before, timeout_s=5)
    # On the host the orphan still runs, and nothing was rebooted...
    assert pid in ssh_lab.sshd.session_processes(M1)  # with its `sh -c`
    assert ssh_lab.snapshot(M1)["events"] == [] and ssh_lab.snapshot(M1)["cycles"] == 0
    # ...until the machine goes down: then every process on it dies.
    ssh_lab.lab.act(M1, "reset")
    ssh_lab.lab.wait_answering(M1, False, timeout_s=5)
    assert wait_until(lambda: not alive(pid), timeout_s=5)  # SIGKILLed as the machine went down
    assert ssh_lab.sshd.session_processes(M1) == []
    ssh_lab.lab.wait_answering(M1, True, timeout_s=5)


async def test_a_reboot_whose_session_goes_silent_counts_as_accepted_once(
    prefect_harness: None, tmp_path: Path, captured
) -> None:
    # `reboot` acts and the host's network goes first: the session neither
    # answers nor closes until the machine is down (shutdown_s later). The
    # client gives up on `reboot` after 2 s and cannot even open a channel
    # for `shutdown -r now`: the unanswered `reboot` was accepted; asking
    # again, or retrying the task, would reboot the machine twice. (2 s: far
    # longer than the fake `reboot` needs to act and silence the host, far
    # shorter than the 6 s shutdown, even on a loaded CI machine.)
    with start_ssh_lab(tmp_path, subnet="127.78.25.0/24", shutdown_s=6.0) as lab:
        await lab.save_credentials(BLOCK)
        lab.sshd.set_faults(M1, SshFaults(hang=True, silent=True))
        result = await reboot_and_watch(**watch(lab, M1, command_timeout_s=2.0))
        assert result["command"] == "reboot"
        assert calls(lab, M1) == [("reboot", [], 0)]  # `shutdown -r now` never reached it
        assert ssh_events(lab, M1) == ["reboot"] and lab.snapshot(M1)["cycles"] == 1
        assert "'reboot': session gone after it timed out" in captured.text
        assert "reboot accepted: 'reboot' (session dropped)" in captured.text
        assert "Retry" not in captured.text  # the task was not retried
        assert lab.sshd.session_processes(M1) == []
        lab.wait_ssh(M1)
        with lab.client(M1) as ssh:  # the host answers SSH again
            assert ssh.run("echo back", timeout_s=5).stdout == "back\n"


# -- the Windows form --------------------------------------------------------------------


async def test_unknown_platform_reboots_a_windows_host_with_the_windows_form_last(
    lab: SshLab, captured
) -> None:
    result = await reboot_and_watch(**watch(lab, WIN, windows=None))
    assert result["command"] == "shutdown /r /t 0"
    # Windows refused both Linux forms without doing anything, then rebooted.
    assert calls(lab, WIN) == [
        ("reboot", [], 1), ("shutdown", ["-r", "now"], 1), ("shutdown", ["/r", "/t", "0"], 0),
    ]  # fmt: skip
    assert ssh_events(lab, WIN) == ["reboot"] and lab.snapshot(WIN)["cycles"] == 1
    assert "'reboot' failed: exit 1: 'reboot' is not recognized" in captured.text


async def test_unknown_platform_on_linux_stops_at_the_first_accepted_linux_form(
    lab: SshLab,
) -> None:
    result = await reboot_and_watch(**watch(lab, M1, windows=None))
    assert result["command"] == "reboot"
    assert calls(lab, M1) == [("reboot", [], 0)]  # the Windows form was never sent
    assert lab.snapshot(M1)["cycles"] == 1


async def test_a_linux_host_refuses_the_windows_form_harmlessly(lab: SshLab) -> None:
    lab.sshd.set_faults(
        M1,
        SshFaults(
            fail={"reboot": "reboot: Permission denied", "shutdown -r now": "shutdown: nope"}
        ),
    )
    with pytest.raises(RebootFailed) as caught:
        await reboot_only(lab.address(M1), lab.ssh_port(M1), windows=None)
    failures = [(f.command, f.exit_status) for f in caught.value.failures]
    assert failures == [("reboot", 1), ("shutdown -r now", 1), ("shutdown /r /t 0", 1)]
    assert "'shutdown /r /t 0': exit 1: shutdown: invalid arguments: /r /t 0" in str(caught.value)
    assert lab.snapshot(M1)["events"] == [] and lab.snapshot(M1)["cycles"] == 0


async def test_a_known_linux_host_never_gets_the_windows_form(lab: SshLab) -> None:
    lab.sshd.set_faults(M1, SshFaults(fail={"reboot": "no", "shutdown": "no"}))
    with pytest.raises(RebootFailed) as caught:
        await reboot_only(lab.address(M1), lab.ssh_port(M1), windows=False)
    assert [f.command for f in caught.value.failures] == ["reboot", "shutdown -r now"]
    assert [tool for tool, _args, _status in calls(lab, M1)] == ["reboot", "shutdown"]
