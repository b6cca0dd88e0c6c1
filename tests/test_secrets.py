"""A BMC password never shows up in anything a discovery run writes."""

from __future__ import annotations

import os
from pathlib import Path

from blocks import InventoryStore, RedfishCredentials
from flows.discovery import discovery
from lab.fleet import build_fleet
from lab.server import Lab


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(path)
            except OSError:
                continue
    return hits


async def test_password_not_in_logs_artifacts_parameters_or_results(
    prefect_harness, tmp_path, unique_password, caplog
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    # One BMC accepts the password, one refuses it (the auth-failure path logs too).
    fleet = build_fleet(
        {
            "subnet": "127.10.6.0/24",
            "port": 0,
            "password": unique_password,
            "bmcs": [{"count": 2}, {"password": "some-other-password"}],
        }
    )
    inventory = tmp_path / "inv.db"
    with Lab(fleet=fleet, state_dir=tmp_path / "lab") as lab:
        await RedfishCredentials(
            username=fleet.username, password=unique_password, ca_bundle=str(lab.ca_path)
        ).asave("secret-test", overwrite=True)
        await InventoryStore(url=f"sqlite:///{inventory}").asave("secret-inv", overwrite=True)
        state = await discovery(
            ranges=["127.10.6.1-3"],
            ports=[lab.bmcs[0].port],
            credentials_block="secret-test",
            inventory_block="secret-inv",
            resume_minutes=5,  # persist chunk results, so they can be searched too
            return_state=True,
        )
    summary = await state.result()
    assert (summary.found, summary.auth_failed) == (2, 1)
    run_id = state.state_details.flow_run_id

    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()  # logs travel to the API in batches
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        task_runs = await client.read_task_runs()
    assert logs, "the run wrote logs"
    assert {a.key for a in artifacts} >= {"discovery-summary", "discovery-servers"}

    assert unique_password not in repr(run.parameters)
    assert all(unique_password not in (log.message or "") for log in logs)
    assert all(unique_password not in repr(a.data) for a in artifacts)
    assert all(unique_password not in repr(t.task_inputs) for t in task_runs)
    assert all(unique_password not in r.getMessage() for r in caplog.records)
    needle = unique_password.encode()
    assert _files_containing(Path(os.environ["PREFECT_HOME"]), needle) == []
    assert needle not in inventory.read_bytes()
    # the result store was really written (so the search above meant something)
    assert any(Path(os.environ["PREFECT_HOME"]).rglob("storage/*"))
