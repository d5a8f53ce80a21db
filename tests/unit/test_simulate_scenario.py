"""Scenario files: strict validation with errors that name the field, and demand traces."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from inferpool.simulate.scenario import (
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
)
from inferpool.simulate.traces import demand_traces

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

BASE: dict[str, Any] = {
    "name": "tiny",
    "duration": "2h",
    "nodePools": [
        {"name": "h100", "family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3", "nodes": 2,
         "acceleratorsPerNode": 8, "pricePerAcceleratorHour": 6.88},
        {"name": "v6e", "family": "tpu", "product": "tpu-v6e-slice", "topology": "2x4",
         "nodes": 2, "acceleratorsPerNode": 8, "pricePerAcceleratorHour": 2.7},
    ],
    "models": [{
        "name": "m",
        "replicas": {"min": 1, "max": 10},
        "resilience": {"maxFamilyShare": 0.6},
        "variants": [
            {"name": "h100", "accelerator": {"family": "nvidia",
                                             "product": "NVIDIA-H100-80GB-HBM3", "count": 4},
             "capacity": 40},
            {"name": "v6e", "accelerator": {"family": "tpu", "type": "tpu-v6e-slice",
                                            "topology": "2x4", "count": 8}, "capacity": 36},
        ],
        "demand": {"generated": {"base": 40, "peak": 80, "noise": 0.0}},
    }],
    "events": [{"type": "outage", "pool": "h100", "from": "30m", "to": "1h"}],
}


def scenario_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes, e.g. {"nodePools.0.nodes": 0}."""
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return str(info.value)


def test_the_base_and_the_examples_are_valid() -> None:
    tiny = parse_scenario(BASE)
    assert tiny.steps == 120
    assert tiny.step_seconds == 60
    week = load_scenario(EXAMPLES / "week-two-outages.yaml")
    assert week.duration == 7 * 86400
    assert sum(e.type == "outage" for e in week.events) == 2
    assert sum(e.type == "stockout" for e in week.events) == 1
    assert {p.family for p in week.node_pools} == {"nvidia", "tpu", "neuron"}
    day = load_scenario(EXAMPLES / "day-spike.yaml")
    assert day.steps == 1440
    elastic = load_scenario(EXAMPLES / "day-elastic.yaml")
    assert elastic.elastic_pools == ["h100", "l4", "v6e", "inf2"]
    assert all(p.nodes == 0 for p in elastic.node_pools)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"nodePools.0.acceleratorsPerNode": 0}, "nodePools[0].acceleratorsPerNode: Input should be"),
    ({"nodePools.1.nodes": "3"}, "nodePools[1].nodes: Input should be a valid integer"),
    ({"nodePools.0.family": "amd"}, "nodePools[0].family: Input should be"),
    ({"nodePools.0.topology": "2x4"}, "nodePools[0]: topology is only valid for the tpu family"),
    ({"nodePools.0.nodes": 0}, "nodePools[0]: nodes must be at least 1 unless the pool is elastic"),
    ({"nodePools.0.elastic": {"maxNodes": 1}},
     "nodePools[0]: elastic.maxNodes must be at least nodes"),
    ({"duration": "two weeks"}, "duration: not a duration: 'two weeks'"),
    ({"stepSeconds": 5}, "stepSeconds: Input should be greater than or equal to 10"),
    ({"models.0.replicas": {"min": 1}}, "models[0].replicas.max: Field required"),
    ({"models.0.demand": {}}, "models[0].demand: exactly one of generated and csv"),
    ({"models.0.demand": {"generated": {"base": 50, "peak": 10}}},
     "models[0].demand.generated: peak must be at least base"),
    ({"models.0.resilience": {"maxFamilyShare": 0.4}},
     "models[0]: not a valid InferencePool: spec: resilience.maxFamilyShare"),
    ({"models": []}, "models: at least one model is needed"),
    ({"models.0.variants.1.accelerator.topology": "4x4"},
     "models[0].variants[1]: no node pool of tpu/tpu-v6e-slice/4x4 with 16 accelerators"),
    ({"events.0.pool": "a100"}, "events[0].pool: unknown node pool 'a100'"),
    ({"events.0.to": "10m"}, "events[0].to: must be after from"),
    ({"events.0": {"type": "flood", "pool": "h100"}}, "events[0]: Input tag 'flood'"),
    ({"events.0": {"type": "price", "pool": "v6e", "at": "1h"}},
     "events[0].pricePerAcceleratorHour: Field required"),
])
def test_errors_name_the_field(changes: dict[str, Any], expected: str) -> None:
    assert expected in error_of(scenario_with(**changes))


def test_unknown_keys_are_refused_where_they_are() -> None:
    data = scenario_with()
    data["nodePools"][1]["acceleratorsPerNodes"] = 8
    data["models"][0]["targetUtilisation"] = 0.5
    message = error_of(data)
    assert "nodePools[1].acceleratorsPerNodes: Extra inputs are not permitted" in message
    assert "models[0].targetUtilisation: Extra inputs are not permitted" in message


def test_duplicate_names_are_refused() -> None:
    data = scenario_with()
    data["nodePools"].append(dict(data["nodePools"][0]))
    assert "nodePools[2].name: duplicate name 'h100'" in error_of(data)


def test_load_reports_missing_files_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenario(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)


def test_durations() -> None:
    assert parse_duration("1d2h30m15s") == 86400 + 7200 + 1800 + 15
    assert parse_duration("90m") == 5400
    assert parse_duration(42) == 42
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1 week")


def test_truncated_keeps_the_first_part_and_its_events() -> None:
    week = load_scenario(EXAMPLES / "week-two-outages.yaml")
    day = week.truncated(86400)
    assert day.steps == 1440
    assert all(getattr(e, "from_", getattr(e, "at", 0.0)) < 86400 for e in day.events)
    assert len(day.events) < len(week.events)


def test_generated_trace_shape_seed_weekend_and_spikes() -> None:
    data = scenario_with(**{
        "duration": "7d", "events": [],
        "models.0.demand": {"generated": {
            "base": 100, "peak": 300, "peakHour": 12, "weekendFactor": 0.5, "noise": 0.0,
            "spikes": [{"at": "1d6h", "factor": 2.0, "duration": "10m"}]}}})
    demand = demand_traces(parse_scenario(data))["m"]
    per_hour = 60
    assert demand[12 * per_hour] == pytest.approx(300)  # Monday noon: the peak
    assert demand[0] == pytest.approx(100)  # midnight: the base
    assert demand[5 * 24 * per_hour + 12 * per_hour] == pytest.approx(150)  # Saturday noon
    spike = (24 + 6) * per_hour
    assert demand[spike] == pytest.approx(2 * demand[spike - 1440], rel=1e-9)
    assert demand[spike + 10] == pytest.approx(demand[spike + 10 - 1440], rel=1e-9)

    noisy = scenario_with(**{"models.0.demand.generated.noise": 0.05})
    first, again = demand_traces(parse_scenario(noisy)), demand_traces(parse_scenario(noisy))
    assert first == again  # the seed fixes the noise
    other = demand_traces(parse_scenario({**noisy, "seed": 1}))
    assert other != first


def test_csv_trace_holds_values_and_repeats(tmp_path: Path) -> None:
    (tmp_path / "load.csv").write_text("seconds,rps\n0,10\n1800,20\n3600,30\n")
    data = scenario_with(**{"duration": "3h",
                            "models.0.demand": {"csv": {"path": "load.csv", "repeat": True}}})
    scenario_file = tmp_path / "s.yaml"
    import yaml

    scenario_file.write_text(yaml.safe_dump(data))
    demand = demand_traces(load_scenario(scenario_file))["m"]
    assert demand[:31] == [10] * 30 + [20]
    assert demand[60] == 30
    assert demand[90] == 10  # the file covers 90 min (its last row holds one interval)

    data["models"][0]["demand"]["csv"]["repeat"] = False
    scenario_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"models\[0\]\.demand\.csv: .* covers 5400 s"):
        demand_traces(load_scenario(scenario_file))

    data["models"][0]["demand"]["csv"] = {"path": "load.csv", "column": "qps"}
    scenario_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match="has no column 'qps'"):
        demand_traces(load_scenario(scenario_file))


def test_a_neuron_type_matches_only_pools_of_that_instance_type() -> None:
    from inferpool.simulate.scenario import NodePoolSpec, VariantSpec, pool_matches

    def spec(instance_type: str | None) -> NodePoolSpec:
        return NodePoolSpec.model_validate({
            "name": "p", "family": "neuron", "product": "trainium2", "nodes": 1,
            "acceleratorsPerNode": 16, "pricePerAcceleratorHour": 1.0,
            **({"instanceType": instance_type} if instance_type else {})})

    variant = VariantSpec.model_validate({
        "name": "v", "accelerator": {"family": "neuron", "type": "trn2.48xlarge", "count": 8},
        "capacity": 1.0})
    assert pool_matches(spec("trn2.48xlarge"), variant)
    assert not pool_matches(spec("inf2.48xlarge"), variant)
    assert not pool_matches(spec(None), variant)
