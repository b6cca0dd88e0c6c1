"""prefect.yaml: each entrypoint loads the flow its deployment is named after."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_loads_the_named_flow(deployment: dict) -> None:
    path, _, name = deployment["entrypoint"].partition(":")
    flow = load_flow_from_entrypoint(f"{REPO / path}:{name}")
    assert flow.name == deployment["name"]
    accepted = set(flow.parameters.properties)
    assert set(deployment.get("parameters") or {}) <= accepted
    assert deployment["work_pool"]["name"] == "onprem"


def test_every_reboot_action_is_deployed() -> None:
    names = {d["name"] for d in DEPLOYMENTS}
    assert {
        "reboot", "ssh-reboot", "ipmi-reboot", "ipmi-power", "snmp-reboot", "ilo-reboot",
        "xenapi-reboot", "ping", "file-bugzilla-bug",
    } <= names  # fmt: skip
