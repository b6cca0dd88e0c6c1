"""A third-party Redfish service: OpenStack's sushy-tools emulator (fake driver).

It has no SessionService (clients must fall back to Basic auth), no
FirmwareInventory, and null Model/SKU/SerialNumber: discovery must still
recognise it and record it by UUID.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from tests.helpers import free_port, self_signed_cert, wait_for_tls

SYSTEM_UUID = "27946b59-9e44-4fa7-8e91-f3527a1ef094"
SUSHY_PASSWORD = "sushy-" + secrets.token_hex(8)

pytestmark = pytest.mark.sushy


@pytest.fixture(scope="module")
def sushy(tmp_path_factory):
    exe = Path(sys.executable).with_name("sushy-emulator")
    if not exe.exists():
        pytest.fail("sushy-emulator is not installed: pip install -e '.[test]'")
    d = tmp_path_factory.mktemp("sushy")
    cert, key = self_signed_cert(d, "127.0.0.1")
    (d / "htpasswd").write_text(
        "admin:" + bcrypt.hashpw(SUSHY_PASSWORD.encode(), bcrypt.gensalt()).decode() + "\n"
    )
    (d / "conf.py").write_text(
        f"SUSHY_EMULATOR_AUTH_FILE = {str(d / 'htpasswd')!r}\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(d / 'state')!r}\n"
        "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': {SYSTEM_UUID!r}, 'name': 'fake',"
        " 'power_state': 'On', 'nics': [{'mac': '00:5c:52:31:3a:9c', 'ip': '127.0.0.1'}]}]\n"
    )
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [
            str(exe),
            "--fake",
            "--config",
            str(d / "conf.py"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "--ssl-certificate",
            str(cert),
            "--ssl-key",
            str(key),
        ],
        stdout=(d / "log").open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_tls("127.0.0.1", port, timeout=30, proc=proc)
        yield {"port": port, "ca": cert, "log": d / "log"}
    finally:
        proc.terminate()
        proc.wait(10)


async def test_discovery_recognises_sushy_with_basic_auth(prefect_harness, sushy, tmp_path):
    from blocks import InventoryStore, RedfishCredentials
    from clients.inventory import ServerStatus
    from flows.discovery import discovery

    await RedfishCredentials(
        username="admin", password=SUSHY_PASSWORD, ca_bundle=str(sushy["ca"])
    ).asave("sushy", overwrite=True)
    url = f"sqlite:///{tmp_path / 'inv.db'}"
    await InventoryStore(url=url).asave("sushy-inv", overwrite=True)

    summary = await discovery(
        ranges=["127.0.0.1"],
        ports=[sushy["port"]],
        credentials_block="sushy",
        inventory_block="sushy-inv",
        resume_minutes=0,
    )

    assert (summary.found, summary.auth_failed, summary.errors) == (1, 0, 0)
    with InventoryStore(url=url).get_client() as inv:
        rec = inv.get(f"127.0.0.1:{sushy['port']}")
    assert rec is not None
    assert rec.uuid == SYSTEM_UUID
    assert rec.status == ServerStatus.ONLINE
    assert rec.power_state == "On"
    assert rec.redfish_version == "1.5.0"
    assert rec.firmware == []  # sushy has no FirmwareInventory
    log = sushy["log"].read_text()
    # Basic auth fallback: no session was ever created, authenticated reads succeeded.
    assert "POST /redfish/v1/SessionService/Sessions" not in log
    assert f'GET /redfish/v1/Systems/{SYSTEM_UUID} HTTP/1.1" 200' in log
