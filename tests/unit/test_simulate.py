"""The simulation: its cluster model, the policies on small scenarios, and the offline bound."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys
from typing import Any

import pytest

from inferpool.simulate import parse_scenario, simulate, summarize
from inferpool.simulate.bound import Option, cheapest_cover
from inferpool.simulate.cluster import SimCluster, shapes_of
from inferpool.simulate.scenario import ResilienceSpec
from tests.unit.test_simulate_scenario import scenario_with


def figures(data: dict[str, Any], policies: tuple[str, ...]) -> dict[str, Any]:
    summary = summarize(simulate(parse_scenario(data), policies))
    return dict(summary["policies"])


# --- the simulated cluster ------------------------------------------------------------------


def test_cluster_start_up_delay_outage_eviction_and_stockout() -> None:
    data = scenario_with(**{"events": [
        {"type": "outage", "pool": "h100", "from": "10m", "to": "40m"},
        {"type": "stockout", "pool": "v6e", "from": 0, "to": "1h"}]})
    scenario = parse_scenario(data)
    shape = shapes_of(scenario)[("m", "h100")]
    tpu = shapes_of(scenario)[("m", "v6e")]
    cluster = SimCluster(scenario, warm_until=0.0)
    key = ("sim/m", "h100", "h100")
    tpu_key = ("sim/m", "v6e", "v6e")
    cluster.advance(0)
    cluster.set_replicas(key, 2, shape, ("h100",), toleration=300, now=0)
    cluster.set_replicas(tpu_key, 1, tpu, ("v6e",), toleration=300, now=0)
    cluster.settle(0)
    assert cluster.ready_count(key, 0) == 2  # the warm start: Ready at once
    assert cluster.ready_count(tpu_key, 0) == 0  # stocked out: pending, costs nothing
    assert cluster.measure(0).cost_per_hour == pytest.approx(2 * 4 * 6.88)

    cluster.advance(60)
    cluster.set_replicas(key, 3, shape, ("h100",), toleration=300, now=60)
    cluster.settle(60)
    assert cluster.ready_count(key, 60) == 2  # the new one starts...
    cluster.advance(120)
    assert cluster.ready_count(key, 120) == 3  # ...and is Ready after nvidia's 60 s

    cluster.advance(600)  # the outage: nothing serves, nothing is paid
    assert cluster.measure(600).capacity == {}
    assert cluster.measure(600).cost_per_hour == 0
    assert all(n.ready for n in cluster.snapshot().nodes_of("h100"))  # not seen yet
    cluster.advance(660)  # seen NotReady after the 40 s detection delay
    assert not any(n.ready for n in cluster.snapshot().nodes_of("h100"))
    assert len(cluster.deployments[key].pods) == 3  # evicted only after the toleration
    cluster.advance(660 + 300)
    assert all(p.node is None for p in cluster.deployments[key].pods)  # replaced, pending

    cluster.advance(2400)  # recovered: bound again, Ready after the start-up delay
    assert cluster.ready_count(key, 2400) == 0
    cluster.advance(2460)
    assert cluster.ready_count(key, 2460) == 3
    assert cluster.ready_count(tpu_key, 2460) == 0
    cluster.advance(3600)  # the stockout ends: the TPU replica binds, Ready 180 s later
    cluster.advance(3600 + 180)
    assert cluster.ready_count(tpu_key, 3780) == 1


def test_scale_down_removes_pending_before_ready() -> None:
    scenario = parse_scenario(scenario_with(events=[]))
    shape = shapes_of(scenario)[("m", "h100")]
    cluster = SimCluster(scenario, warm_until=0.0)
    key = ("sim/m", "h100", "h100")
    cluster.set_replicas(key, 4, shape, ("h100",), 300, 0)
    cluster.settle(0)
    cluster.set_replicas(key, 6, shape, ("h100",), 300, 60)  # only 4 fit: 2 pending
    cluster.settle(60)
    assert sum(p.node is None for p in cluster.deployments[key].pods) == 2
    cluster.set_replicas(key, 4, shape, ("h100",), 300, 120)
    assert all(p.node is not None for p in cluster.deployments[key].pods)
    assert cluster.ready_count(key, 120) == 4


# --- policies ----------------------------------------------------------------------------------


def test_inferpool_serves_more_than_static_through_an_nvidia_outage() -> None:
    got = figures(scenario_with(), ("inferpool", "static"))
    ours, static = got["inferpool"], got["static"]
    # static has nothing but the failed H100s for 30 min of 2 h; inferpool keeps >= 40 % of
    # its capacity on TPU (maxFamilyShare 0.6) and replaces the rest within minutes
    assert static["served_pct"] < 85
    assert ours["served_pct"] > 97
    assert ours["served_pct"] > static["served_pct"] + 10
    assert ours["shortfall_model_minutes"] < static["shortfall_model_minutes"]


def test_inferpool_notices_a_stockout_faster_than_a_cluster_autoscaler() -> None:
    # Everything on the cheaper TPUs (no resilience rule); demand triples at 40 min while the
    # TPU pool cannot grow: the operator gives up on it after --stockout-seconds (30 s) and
    # spills to H100; the spill-over baseline waits a cluster autoscaler's 15 minutes.
    data = scenario_with(**{
        "duration": "2h", "nodePools.0.nodes": 4, "nodePools.1.nodes": 4,
        "models.0.resilience": {"maxFamilyShare": 1.0},
        "models.0.demand": {"generated": {
            "base": 20, "peak": 20, "noise": 0.0,
            "spikes": [{"at": "40m", "factor": 3, "duration": "1h"}]}},
        "events": [{"type": "stockout", "pool": "v6e", "from": "30m", "to": "2h"}]})
    got = figures(data, ("inferpool", "spill"))
    ours, spill = got["inferpool"], got["spill"]
    assert ours["stockouts_detected"] >= 1
    assert ours["shortfall_model_minutes"] <= 5
    assert spill["shortfall_model_minutes"] >= 15
    assert ours["unserved_demand_minutes"] < spill["unserved_demand_minutes"] / 3


def test_policies_are_deterministic_for_a_seed() -> None:
    data = scenario_with(**{"models.0.demand.generated.noise": 0.05, "seed": 11})
    policies = ("inferpool", "static", "spill", "offline")

    def run() -> dict[str, Any]:
        got = figures(data, policies)
        for entry in got.values():
            entry.pop("seconds")
        return got

    first = run()
    assert run() == first
    other = figures({**data, "seed": 12}, ("static",))
    assert other["static"]["demand_minutes"] != first["static"]["demand_minutes"]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("outage", [False, True])
def test_the_offline_bound_is_never_more_expensive(seed: int, outage: bool) -> None:
    data = scenario_with(**{"models.0.demand.generated.noise": 0.05, "seed": seed,
                            "models.0.demand.generated.peak": 120})
    if not outage:
        data["events"] = []
    scenario = parse_scenario(data)
    result = simulate(scenario, ("inferpool", "static", "spill", "offline"))
    got = summarize(result)["policies"]
    bound = result.runs["offline"]
    loose = bound.extra_cost_per_hour["no_resilience"]
    assert got["offline"]["served_pct"] == 100
    u = scenario.models[0].target_utilization
    for name in ("inferpool", "static", "spill"):
        run = result.runs[name]
        checked = 0
        for i, demand in enumerate(result.demand["m"]):
            # at every step where a policy keeps the headroom, it pays at least the bound
            # (a policy short of capacity, as static in the outage, may pay less)
            if run.capacity["m"][i] >= demand / u - 1e-9:
                assert loose[i] <= run.cost_per_hour[i] + 1e-6, (name, i)
                checked += 1
        assert checked > 0.5 * len(result.times), name  # not vacuous
    # over the run, the bound with the same rules is below what inferpool pays
    assert got["offline"]["cost_usd"] <= got["inferpool"]["cost_usd"]
    offline = got["offline"]
    assert offline["cost_at_full_utilization_usd"] <= offline["cost_without_resilience_usd"]
    assert offline["cost_without_resilience_usd"] <= offline["cost_usd"]


# --- the bound's exact solver -----------------------------------------------------------------


def brute_force(options: list[Option], required: float, low: int, high: int,
                resilience: ResilienceSpec | None) -> float:
    best = math.inf
    for counts in itertools.product(*(range(o.limit + 1) for o in options)):
        n = sum(counts)
        capacity = sum(c * o.rps for c, o in zip(counts, options, strict=True))
        if not (low <= n <= high) or capacity < required - 1e-9:
            continue
        if resilience is not None:
            families: dict[str, float] = {}
            for c, o in zip(counts, options, strict=True):
                if c:
                    families[o.family] = families.get(o.family, 0.0) + c * o.rps
            if any(v > resilience.max_family_share * capacity + 1e-9
                   for v in families.values()):
                continue
        best = min(best, sum(c * o.cost for c, o in zip(counts, options, strict=True)))
    return best


def test_cheapest_cover_is_exact_on_random_instances() -> None:
    rng = random.Random(5)
    share = ResilienceSpec.model_validate({"maxFamilyShare": 0.6})
    for _ in range(150):
        options = [Option(cost=round(rng.uniform(1, 30), 2), rps=float(rng.randint(5, 50)),
                          limit=rng.randint(0, 5), family=rng.choice(["nvidia", "tpu", "neuron"]),
                          pool=f"p{i}")
                   for i in range(rng.randint(1, 4))]
        required = rng.uniform(0, 150)
        low, high = rng.randint(0, 3), rng.randint(3, 12)
        for rule in (None, share):
            expected = brute_force(options, required, low, high, rule)
            cover = cheapest_cover(options, required, low, high, rule)
            if math.isinf(expected):
                assert cover is None
            else:
                assert cover is not None
                assert cover.cost == pytest.approx(expected)
                assert cover.capacity >= required - 1e-9


def test_the_simulator_does_not_import_kubernetes_or_kopf() -> None:
    code = ("import sys, inferpool.simulate, inferpool.simulate.cli; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# --- elastic pools ----------------------------------------------------------------------------


def elastic_pools(**elastic: Any) -> dict[str, Any]:
    data = scenario_with(events=[])
    for pool in data["nodePools"]:
        pool["nodes"] = 0
        pool["elastic"] = {"maxNodes": 2, "provisioningSeconds": 120,
                           "consolidateAfterSeconds": 60, **elastic}
    return data


def test_an_elastic_pool_launches_nodes_for_waiting_pods_and_consolidates_empty_ones() -> None:
    scenario = parse_scenario(elastic_pools())
    shape = shapes_of(scenario)[("m", "h100")]
    cluster = SimCluster(scenario, warm_until=-1.0)
    key = ("sim/m", "h100", "h100")
    cluster.advance(0)
    assert cluster.snapshot().nodes_of("h100") == ()
    assert len(cluster.snapshot().room_of("h100")) == 2  # planned room: maxNodes
    cluster.set_replicas(key, 3, shape, ("h100",), toleration=300, now=0)
    cluster.settle(0)
    assert cluster.nodes_launched == 2  # 3 replicas of 4 GPUs: two 8-GPU nodes
    said = cluster.autoscaler_signals()
    assert len(said) == 3
    assert all(s.provisioning for s in said.values())
    assert cluster.measure(0).cost_per_hour == pytest.approx(16 * 6.88)  # billed per node
    cluster.advance(119)
    assert cluster.ready_count(key, 119) == 0
    assert cluster.snapshot().nodes_of("h100") == ()  # not registered yet
    cluster.advance(120)
    assert len(cluster.snapshot().nodes_of("h100")) == 2
    cluster.advance(180)
    assert cluster.ready_count(key, 180) == 3  # bound at 120, Ready after nvidia's 60 s
    cluster.set_replicas(key, 1, shape, ("h100",), toleration=300, now=200)
    for now in (200, 259, 261):
        cluster.advance(now)
    assert cluster.nodes_removed == 1  # the node left empty, after consolidateAfter
    assert cluster.measure(261).cost_per_hour == pytest.approx(8 * 6.88)


def test_an_elastic_stockout_launches_nothing_and_says_so() -> None:
    data = elastic_pools()
    data["events"] = [{"type": "stockout", "pool": "v6e", "from": 0, "to": "1h"}]
    scenario = parse_scenario(data)
    cluster = SimCluster(scenario, warm_until=-1.0)
    key = ("sim/m", "v6e", "v6e")
    cluster.advance(0)
    cluster.set_replicas(key, 1, shapes_of(scenario)[("m", "v6e")], ("v6e",), 300, now=0)
    cluster.settle(0)
    assert cluster.nodes_launched == 0
    (said,) = cluster.autoscaler_signals().values()
    assert not said.provisioning
    assert said.message == "insufficient capacity for a v6e node"


def test_the_operator_spills_an_elastic_stockout_at_once_a_cluster_autoscaler_after_15_min(
        ) -> None:
    data = elastic_pools(maxNodes=4)
    data["models"][0]["resilience"] = {"maxFamilyShare": 1.0}
    # TPU is the cheaper per req/s (8 x 2.7 / 36 vs 4 x 6.88 / 40); it cannot grow all along
    data["events"] = [{"type": "stockout", "pool": "v6e", "from": 0, "to": "2h"}]
    got = figures(data, ("inferpool", "spill"))
    ours, autoscaler = got["inferpool"], got["spill"]
    assert ours["stockouts_detected"] >= 1
    # from zero nodes both wait for provisioning; the cluster autoscaler also for its 15 min
    assert ours["shortfall_model_minutes"] <= 10
    assert autoscaler["shortfall_model_minutes"] >= 15
    assert ours["nodes_launched"] >= 1
