"""`inferpool plan` and `inferpool status` on snapshot files (no cluster needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferpool import cli
from inferpool.controller import planner, planning
from inferpool.controller.inspect_cli import plan_report, status_report
from inferpool.controller.settings import Settings
from tests.unit.fake_cluster import H100, V6E, deployment, ipool, pod, snapshot_doc


def chat(**kwargs: Any) -> dict[str, Any]:
    return ipool("chat", 30, [H100, V6E], max_family_share=0.7, **kwargs)


def placement(report: dict[str, Any], pool: str = "chat") -> dict[tuple[str, str], tuple[int, int]]:
    (entry,) = [p for p in report["pools"] if p["name"] == pool]
    return {(r["variant"], r["nodePool"]): (r["now"], r["planned"]) for r in entry["placement"]}


def test_the_view_names_are_the_planners_index_names() -> None:
    assert planning.VIEW_NAMES == planner.INDEX_NAMES


def test_plan_of_a_new_pool_places_it_and_says_why() -> None:
    report = plan_report(snapshot_doc([chat()]), Settings())
    assert placement(report) == {("h100", "h100"): (0, 1), ("v6e", "v6e"): (0, 2)}
    (pool,) = report["pools"]
    assert pool["requiredRps"] == 30
    assert pool["demandSource"] == "spec.demand.fixed / targetUtilization"
    assert pool["costPerHour"] == 80
    assert pool["shortfallRps"] == 0
    assert pool["families"] == ["nvidia", "tpu"]
    assert pool["reasons"], "the engine gives reasons"


def test_plan_of_an_applied_placement_keeps_it() -> None:
    doc = snapshot_doc([chat()], deployments=[deployment("chat", "v6e", "v6e", "tpu", 2),
                                              deployment("chat", "h100", "h100", "nvidia", 1)])
    assert placement(plan_report(doc, Settings())) == {("h100", "h100"): (1, 1),
                                                       ("v6e", "v6e"): (2, 2)}


def test_demand_comes_from_status_then_spec_then_is_unknown() -> None:
    status = {"observedGeneration": 1, "requiredCapacity": 40.0}
    from_status = plan_report(snapshot_doc([chat(status=status)]), Settings())
    assert from_status["pools"][0]["requiredRps"] == 40
    assert from_status["pools"][0]["demandSource"] == "status.requiredCapacity"
    prometheus = ipool("prom", 10, [V6E])
    prometheus["spec"]["demand"] = {"prometheus": {"query": "sum(rate(x[1m]))"}}
    unknown = plan_report(snapshot_doc([prometheus]), Settings())
    assert unknown["pools"][0]["demandKnown"] is False
    assert unknown["pools"][0]["demandSource"].startswith("unknown")
    assert placement(unknown, "prom") == {("v6e", "v6e"): (0, 1)}  # replicas.min


def test_a_stocked_out_node_pool_is_treated_as_the_operator_would() -> None:
    # one TPU replica has been unschedulable for 10 minutes at capture time
    pods = [pod("chat-v6e-a", "chat", "v6e", "v6e", "v6e-0", "google.com/tpu"),
            pod("chat-v6e-b", "chat", "v6e", "v6e", None, "google.com/tpu", unschedulable=True)]
    doc = snapshot_doc([ipool("chat", 20, [V6E, H100])], pods=pods,
                       deployments=[deployment("chat", "v6e", "v6e", "tpu", 2, ready=1)])
    report = plan_report(doc, Settings())
    assert report["health"]["stockedOut"] == ["v6e"]
    assert placement(report) == {("v6e", "v6e"): (2, 1), ("h100", "h100"): (0, 1)}


def test_plan_and_status_commands_read_a_snapshot_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(snapshot_doc(
        [chat(status={"readyReplicas": 3, "desiredReplicas": 3, "demand": 30.0,
                      "requiredCapacity": 30.0, "capacity": 30.0, "costPerHour": 80.0,
                      "families": "nvidia,tpu", "observedGeneration": 1,
                      "conditions": [{"type": "Ready", "status": "True"},
                                     {"type": "Degraded", "status": "False"}]})],
        deployments=[deployment("chat", "v6e", "v6e", "tpu", 2),
                     deployment("chat", "h100", "h100", "nvidia", 1)],
        pods=[pod("chat-h100-a", "chat", "h100", "h100", "h100-0", "nvidia.com/gpu")])))

    assert cli.main(["plan", "--snapshot", str(path), "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert placement(report) == {("h100", "h100"): (1, 1), ("v6e", "v6e"): (2, 2)}

    assert cli.main(["plan", "--snapshot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "serving/chat: 30.0 req/s required" in out
    assert "Nothing is written" in out
    assert any(line.split()[:5] == ["v6e", "v6e", "tpu", "2", "2"] for line in out.splitlines())

    assert cli.main(["status", "--snapshot", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()
    chat_row = next(line.split() for line in rows if line.startswith("serving"))
    assert chat_row == ["serving", "chat", "3/3", "30.0", "30.0", "80.00", "nvidia,tpu"]
    h100_row = next(line.split() for line in rows if line.startswith("h100"))
    assert h100_row[-3:-1] == ["2/2", "8/16"]  # one pod holds 8 of the 16 GPUs

    assert cli.main(["status", "--snapshot", str(path), "-o", "wide"]) == 0
    rows = capsys.readouterr().out.splitlines()
    chat_row = next(line.split() for line in rows if line.startswith("serving"))
    assert chat_row[-2:] == ["30.0", "Ready"]  # wide: required capacity and conditions

    assert cli.main(["status", "--snapshot", str(path), "-o", "yaml"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["inferencePools"][0]["families"] == "nvidia,tpu"


def test_status_table_fits_80_columns_in_a_terminal() -> None:
    """The default table, as rich draws it on an 80-column terminal: a row stays one line, and
    a cell is cut short (…) when the row is too long, never folded into a narrow column."""
    from rich.console import Console

    from inferpool.controller.inspect_cli import _Output

    headers = ["NAMESPACE", "INFERENCEPOOL", "READY", "DEMAND", "CAPACITY", "$/H", "FAMILIES"]
    fits = ["serving", "llama-70b", "12/12", "480.0", "520.0", "1234.56", "neuron,nvidia,tpu"]
    too_long = ["llama-serving-prod", "llama-70b-instruct", *fits[2:]]
    for row in (fits, too_long):
        console = Console(width=80, force_terminal=True, color_system=None, record=True)
        _Output(console).table(headers, [row])
        lines = console.export_text().splitlines()
        assert all(len(line) <= 80 for line in lines)
        assert len(lines) == 2
        if row is fits:
            assert lines[1].split() == fits
    assert "…" in lines[1]


def test_status_report_lists_node_pools_even_without_inference_pools() -> None:
    report = status_report(snapshot_doc([]))
    assert report["inferencePools"] == []
    assert {p["name"]: p["acceleratorsFree"] for p in report["nodePools"]} == {"h100": 16,
                                                                               "v6e": 16}


def test_a_file_that_is_not_a_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"kind": "List", "items": []}))
    with pytest.raises(SystemExit, match="not a file written by `inferpool snapshot`"):
        cli.main(["plan", "--snapshot", str(path)])
