"""Crash safety: kill the flow process mid-rollout, run again, nothing twice, nothing left behind.

The killed run's machine lease is freed by Prefect when its lease expires
(~60 s + 15 s), so the re-run waits for it: this test is slow on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

import pytest

from flows.firmware_update import rolling_firmware_update
from flows.rollout import StepDeadlines
from tests.fw_env import build_env

DEADLINES = StepDeadlines(
    maintenance_enter_s=60,
    maintenance_exit_s=60,
    job_staged_s=60,
    job_done_s=60,
    graceful_reboot_s=5,
    host_back_s=60,
    poll_interval_s=0.2,
)
CHILD = """
import asyncio, json, sys
from flows.firmware_update import rolling_firmware_update
params = json.load(open(sys.argv[1]))
asyncio.run(rolling_firmware_update(**params))
"""


pytestmark = pytest.mark.own_process


@pytest.fixture()
async def env(prefect_harness, real_prefect_server, tmp_path):
    # A real server: an ephemeral one (like the test harness) never runs the
    # Repossessor, so a killed holder's machine lease would never be freed.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: real_prefect_server}), ExitStack() as stack:
        # slow enough (speed 4: ~4 s per server) to kill the run in the middle
        yield await build_env(stack, tmp_path, count=3, cluster_size=3, speed=4.0)


def _params(env) -> dict:
    return {
        "source": env.source(),
        "targets": env.tags,
        "components": ["bios"],
        "credentials_block": env.names["redfish"],
        "vcenter_block": env.names["vcenter"],
        "inventory_block": env.names["inventory"],
        "deadlines": DEADLINES.model_dump(),
        "max_parallel": 1,
        "lease_wait_s": 240,
    }


async def test_killed_rollout_is_finished_by_the_next_run(env, tmp_path):
    from prefect.settings import PREFECT_API_URL

    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(_params(env)))
    child_env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(params_file)],
        env=child_env,
        cwd=os.getcwd(),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "child.log").open("wb"),
        start_new_session=True,
    )
    second = env.tags[1]
    try:  # kill it while the second server is in maintenance with its job under way
        deadline = time.monotonic() + 120
        while not (env.in_maintenance() and env.bmc(second).jobs.all()):
            assert proc.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never reached the second server"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert env.in_maintenance() == {env.host_of[second]}  # the crash left it there
    assert env.bmc(env.tags[2]).jobs.all() == []  # the third was never started

    state = await rolling_firmware_update(**_params(env), return_state=True)
    summary = await state.result(raise_on_failure=False)

    assert state.is_completed(), [(r.server, r.result, r.message) for r in summary.rows]
    target = env.target("bios")
    for tag in env.tags:
        assert env.bmc(tag).bios_version == target
        updates = [j for j in env.bmc(tag).jobs.all() if j.job_type == "FirmwareUpdate"]
        assert len(updates) == 1, f"{tag} updated {len(updates)} times"
        assert not [k for k in env.record(tag).attributes if k.startswith("pending:")]
    assert env.in_maintenance() == set()
    results = {r.server: r.result for r in summary.rows}
    assert results[env.tags[0]] == "current"  # done before the crash: not touched again
    assert results[env.tags[2]] == "updated"
