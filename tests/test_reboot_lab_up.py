"""The reboot lab ``rackflow lab up`` starts: its files, endpoints and printed next steps.

Runs the composition (:func:`lab.runner.reboot_lab`), not the foreground CLI:
the machine-access file must load and name endpoints that answer with the
written SSH key / known_hosts and the lab's secrets, and the printed
``rackflow`` commands, run as printed, must give blocks every reboot path works with.
"""

from __future__ import annotations

import io
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from blocks import (
    BugzillaCredentials,
    IloCredentials,
    InventoryStore,
    IpmiCredentials,
    SnmpCredentials,
    SshCredentials,
    XenCredentials,
)
from clients.inventory import access_file
from deployments.cli import app
from flows.reboot import reboot_flow
from flows.reboot_chain import ChainDeadlines, RebootResult
from lab.machines.fleet import BLOCKS, BUG_COMPONENT, BUG_PRODUCT, RebootLabSpec, missing_tools
from lab.runner import RebootLabRun, print_reboot_next_steps, reboot_lab

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason="needs ipmi_sim, snmpd and sshd (scripts/system-deps.sh)"
)
FAST = ChainDeadlines(down_s=5.0, up_s=8.0, poll_s=0.1, method_s=5.0)
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RebootLabRun]:
    spec = RebootLabSpec(machines=2, subnet="127.78.120.0/24", shutdown_s=0.3, boot_s=0.6)
    with reboot_lab(spec, tmp_path_factory.mktemp("lab-up"), out=io.StringIO()) as running:
        assert running is not None
        yield running


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


async def test_written_files_load_and_name_endpoints_that_answer(run: RebootLabRun) -> None:
    files, sec = run.files, run.fleet.secrets
    assert files.access_file.parent == files.key_file.parent == files.known_hosts_file.parent
    assert files.key_file.stat().st_mode & 0o077 == 0  # a private key only its owner reads
    entries = access_file.load(files.access_file.read_text(), source=str(files.access_file))
    assert [e.name for e in entries] == ["m1.lab.test", "m2.lab.test"]
    for entry in entries:
        assert entry.ping and entry.ssh and entry.ipmi and entry.pdu and entry.ilo and entry.xen
        assert entry.bugzilla and (entry.bugzilla.product, entry.bugzilla.component) == (
            BUG_PRODUCT, BUG_COMPONENT,
        )  # fmt: skip
        used = {p: getattr(entry, p).credentials for p in ("ssh", "ipmi", "pdu", "ilo", "xen")}
        assert used | {"bugzilla": entry.bugzilla.credentials} == BLOCKS
        assert entry.address and _answers(entry.address, entry.ping.port)
        ssh = SshCredentials(
            user=run.fleet.ssh_user, private_key=SecretStr(files.key_file.read_text()),
            known_hosts=files.known_hosts_file.read_text(), connect_timeout_s=5.0,
        )  # fmt: skip
        with ssh.get_client(entry.ssh.host, port=entry.ssh.port) as client:
            assert client.run("echo hello").stdout.strip() == "hello"
        ipmi = IpmiCredentials(user="rackadmin", password=SecretStr(sec.ipmi_password))
        with ipmi.get_client(entry.ipmi.address, port=entry.ipmi.port) as bmc:
            assert bmc.power_status() == "on"
        pdu = SnmpCredentials(community=SecretStr(sec.rw_community), timeout=1.0, retries=0)
        async with pdu.get_client(entry.pdu.host, port=entry.pdu.port, model="apc") as client:
            assert await client.outlet_state(entry.pdu.outlet) == "on"
        ilo = IloCredentials(
            username="Administrator", password=SecretStr(sec.ilo_password),
            ca_bundle=str(run.fleet.ca_path),
        )  # fmt: skip
        async with ilo.get_client(entry.ilo.address, port=entry.ilo.port) as client:
            assert await client.power_state() == "On"
        xen = XenCredentials(
            url=run.fleet.xen.url, username="root", password=SecretStr(sec.xen_password),
            ca_bundle=str(run.fleet.ca_path),
        )  # fmt: skip
        with xen.get_client() as client:
            assert client.power_state(entry.xen.vm_uuid) == "Running"
    bugs = httpx.get(f"{run.fleet.bugzilla.url}/rest/version", timeout=5.0)
    assert bugs.status_code == 200 and "version" in bugs.json()


def _next_steps(run: RebootLabRun) -> list[str]:
    out = io.StringIO()
    print_reboot_next_steps(run, out=out)
    return [line.strip() for line in out.getvalue().splitlines()]


def _as_printed(line: str) -> tuple[dict[str, str], list[str]]:
    """Split ``VAR=value rackflow args...`` into the environment and the arguments."""
    words = shlex.split(line)
    env: dict[str, str] = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "rackflow"
    return env, words[1:]


@pytest.mark.usefixtures("prefect_harness")
async def test_printed_commands_create_blocks_every_path_reboots_with(
    run: RebootLabRun, tmp_path: Path
) -> None:
    lines = _next_steps(run)
    commands = [line for line in lines if "rackflow " in line]
    creates = [c for c in commands if " blocks create-" in c]
    assert len(creates) == 6
    for line in creates:
        env, args = _as_printed(line)
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (line, result.output)
        assert all(secret not in result.output for secret in run.fleet.secret_values())
    [imports] = [c for c in commands if "inventory import" in c]
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    _env, args = _as_printed(imports)
    result = runner.invoke(app, [*args, "--url", url])
    assert result.exit_code == 0 and "imported 2 machines" in result.output, result.output
    assert any("deployment run 'reboot/reboot' -p machine=m1.lab.test" in x for x in lines)
    await InventoryStore(url=SecretStr(url)).asave("lab-up-inv", overwrite=True)

    name = "m1.lab.test"
    for method in ("ssh", "ipmi-reset", "snmp", "ilo", "xen"):
        before = run.fleet.lab.snapshot(name)["cycles"]
        state = await reboot_flow(
            name, methods=[method], deadlines=FAST, file_bug=False,
            inventory_block="lab-up-inv", return_state=True,
        )  # fmt: skip
        outcome = state.result(raise_on_failure=False, _sync=True)
        assert isinstance(outcome, RebootResult), outcome
        assert outcome.rebooted and outcome.method == method, outcome.attempts
        assert run.fleet.lab.snapshot(name)["cycles"] == before + 1
        run.fleet.lab.wait_answering(name, True, timeout_s=5)
    bugzilla = await BugzillaCredentials.aload(BLOCKS["bugzilla"])
    async with bugzilla.get_client() as client:
        assert await client.find_open_bugs("x", product=BUG_PRODUCT, component=BUG_COMPONENT) == []


def test_missing_tools_skip_the_reboot_lab_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ipmi_sim on this PATH
    out = io.StringIO()
    with reboot_lab(RebootLabSpec(machines=1), tmp_path, out=out) as running:
        assert running is None
    assert "reboot lab skipped: ipmi_sim (apt package openipmi) not installed" in out.getvalue()
    assert not (tmp_path / "reboot").exists()


def test_lab_up_options_are_validated_before_anything_starts() -> None:
    result = runner.invoke(app, ["lab", "up", "--machines", "0", "--no-vcenter"])
    assert result.exit_code == 2 and "machines must be 1-250, got 0" in result.output
    assert "--no-reboot-lab" in runner.invoke(app, ["lab", "up", "--help"]).output
