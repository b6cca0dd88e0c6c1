"""Fleet files and generated fleets of the lab (no sockets)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from clients.errors import PreconditionError
from lab.fleet import FleetSpec, load_fleet

EXAMPLE = Path(__file__).resolve().parent.parent / "lab" / "fleets" / "example.yaml"


def test_example_fleet_has_each_failure_kind() -> None:
    fleet = load_fleet(EXAMPLE)
    faults = [b.faults for b in fleet.bmcs]
    assert sum(f.hang for f in faults) == 1 and sum(f.not_listening for f in faults) == 1
    assert any(f.latency_s > 0 for f in faults)
    assert sum(1 for b in fleet.bmcs if b.password) == 1
    assert len(fleet.password) >= 12  # generated, not a silent default
    assert len({b.service_tag for b in fleet.bmcs}) == len(fleet.bmcs)


def test_generate_is_deterministic_and_mixes_models() -> None:
    a = FleetSpec.generate(count=8, seed=3, password="x")
    b = FleetSpec.generate(count=8, seed=3, password="x")
    c = FleetSpec.generate(count=8, seed=4, password="x")
    assert [x.service_tag for x in a.bmcs] == [x.service_tag for x in b.bmcs]
    assert [x.service_tag for x in a.bmcs] != [x.service_tag for x in c.bmcs]
    assert {x.model for x in a.bmcs} == {f"PowerEdge {m}" for m in ("R640", "R740", "R650", "R750")}
    assert all(re.fullmatch(r"[0-9B-Z]{7}", x.service_tag) for x in a.bmcs)
    assert [x.address for x in a.bmcs[:2]] == ["127.10.0.1", "127.10.0.2"]


@pytest.mark.parametrize(
    ("entries", "names"),
    [
        ([{"count": 2}, {"model": "R999"}], "bmcs[1]"),
        ([{"address": "192.0.2.10"}], "bmcs[0] (address 192.0.2.10)"),
        ([{"name": "slow", "faults": {"latency_s": -1}}], "bmcs[0] (name slow)"),
        ([{"count": 0}], "bmcs[0]"),
        ([{"service_tag": "8CYCZ23"}, {"service_tag": "8CYCZ23"}], "already used by bmcs[0]"),
        ([{"name": "x", "faults": {"hang": True, "not_listening": True}}], "bmcs[0] (name x)"),
    ],
)
def test_load_fleet_errors_name_the_entry(
    tmp_path: Path, entries: list[dict[str, object]], names: str
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"subnet": "127.10.0.0/24", "bmcs": entries}))
    with pytest.raises(PreconditionError) as err:
        load_fleet(path)
    assert names in str(err.value) and str(path) in str(err.value)
