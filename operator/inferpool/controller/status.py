"""The status the operator writes on InferencePools and AcceleratorPools (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from inferpool.api.common import Condition, ConditionStatus, set_condition
from inferpool.cluster import ClusterSnapshot
from inferpool.controller import failures as fl
from inferpool.controller.translate import LiveDeployment, ParsedPool
from inferpool.placement import PlacementKey, PoolOutcome
from inferpool.scaling.recommender import DemandStatus

DEMAND_UNKNOWN = "DemandUnknown"


def _existing(body: Mapping[str, Any]) -> tuple[Condition, ...]:
    out = []
    for raw in (body.get("status") or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValueError:
            continue  # a malformed condition someone wrote by hand: replace it
    return tuple(out)


def _cond(type_: str, true: bool, reason: str, message: str, generation: int,
          now: dt.datetime) -> Condition:
    return Condition(type=type_, status=ConditionStatus.TRUE if true else ConditionStatus.FALSE,
                     reason=reason, message=message, last_transition_time=now,
                     observed_generation=generation)


def with_conditions(body: Mapping[str, Any], new: Sequence[Condition]) -> list[dict[str, Any]]:
    conditions = _existing(body)
    for cond in new:
        conditions = set_condition(conditions, cond)
    return [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in conditions]


def invalid_status(body: Mapping[str, Any], message: str, now: dt.datetime) -> dict[str, Any]:
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    status = dict(body.get("status") or {})
    status["observedGeneration"] = generation
    status["conditions"] = with_conditions(body, [
        _cond("SpecInvalid", True, "InvalidSpec", message, generation, now),
        _cond("Ready", False, "SpecInvalid", "the spec is invalid; existing replicas are left "
              "as they are until it is fixed", generation, now),
    ])
    return status


def pool_status(
    pool: ParsedPool,
    outcome: PoolOutcome | None,
    demand: DemandStatus,
    targets: Mapping[PlacementKey, int],
    live: Mapping[PlacementKey, LiveDeployment],
    snapshot: ClusterSnapshot,
    holding: str | None,
    degraded: Sequence[tuple[str, str]],
    now: dt.datetime,
    provisioning: Sequence[str] = (),
) -> dict[str, Any]:
    """`degraded`: (reason, message) of every failure affecting the pool (planner); a refusal
    (controller/failures.py) names the Degraded condition, and the Ready one while the pool
    does not serve, so `kubectl get ipool` says why in the API server's words. `provisioning`:
    what its replicas waiting for an elastic pool's new nodes are told (controller/health.py),
    the Ready condition's reason while it does not serve yet."""
    spec = pool.model.spec
    gen = pool.generation
    capacity_of = {v.name: v.capacity for v in spec.variants}
    family_of = {v.name: v.accelerator.family.value for v in spec.variants}
    pool_names = {p.name for p in snapshot.pools}
    rows = []
    ready_total = desired_total = 0
    ready_capacity = ready_cost = 0.0
    families: set[str] = set()
    for key in sorted(set(targets) | set(live)):
        if key[0] != pool.key or key[1] not in capacity_of:
            continue
        desired = targets.get(key, 0)
        ready = min(live[key].ready, max(desired, live[key].replicas)) if key in live else 0
        if desired == 0 and ready == 0:
            continue
        rows.append({"variant": key[1], "nodePool": key[2], "family": family_of[key[1]],
                     "desired": desired, "ready": ready})
        ready_total += ready
        desired_total += desired
        ready_capacity += ready * capacity_of[key[1]]
        if key[2] in pool_names and ready:
            variant = spec.variant(key[1])
            price = (variant.cost_per_hour if variant.cost_per_hour is not None else
                     snapshot.pool(key[2]).price_per_accelerator_hour * variant.accelerator.count)
            ready_cost += ready * price
        if ready:
            families.add(family_of[key[1]])
    demand_rps = demand.demand_rps
    needed = demand.required_rps
    serving = ready_total >= spec.replicas.min and ready_capacity + 1e-9 >= min(
        needed, (outcome.capacity_rps if outcome else needed))
    shortfall = outcome.shortfall_rps if outcome else 0.0
    refusals = [(r, m) for r, m in degraded if r in fl.REASONS or r == fl.NAME_CONFLICT]
    ready_message = (f"{ready_total}/{desired_total} replicas Ready, {ready_capacity:.1f} req/s "
                     f"of {needed:.1f} req/s required")
    if not serving and refusals:
        ready_reason, ready_message = refusals[0][0], f"{ready_message}; {refusals[0][1]}"
    elif not serving and provisioning:
        ready_reason, ready_message = "Provisioning", "; ".join((ready_message, *provisioning))
    else:
        ready_reason = "Serving" if serving else "ReplicasNotReady"
    conditions = [
        _cond("SpecInvalid", False, "Valid", "", gen, now),
        _cond("Ready", serving, ready_reason, ready_message, gen, now),
        _cond("CapacityShortfall", shortfall > 1e-9,
              "InsufficientAccelerators" if shortfall > 1e-9 else "CapacityMet",
              (f"{shortfall:.1f} req/s short: {outcome.shortfall_cause}" if outcome and
               shortfall > 1e-9 else ""), gen, now),
        _cond("Rebalancing", holding is not None, "MovingReplicas" if holding else "Stable",
              holding or "", gen, now),
        _cond("Degraded", bool(degraded),
              refusals[0][0] if refusals else "Failover" if degraded else "Healthy",
              "; ".join(m for _, m in degraded), gen, now),
        # While demand is known the message stays fixed: the tracker's own message carries
        # timers that would rewrite the status on every tick.
        _cond(DEMAND_UNKNOWN, demand.demand_unknown, demand.reason,
              demand.message if demand.demand_unknown else "the load source answers", gen, now),
    ]
    return {
        "observedGeneration": gen,
        "desiredReplicas": desired_total,
        "readyReplicas": ready_total,
        "demand": round(demand_rps, 1) if demand_rps is not None else None,
        "requiredCapacity": round(needed, 1),
        "capacity": round(ready_capacity, 3),
        "costPerHour": round(ready_cost, 4),
        "families": ",".join(sorted(families)),
        "placement": rows,
        "conditions": with_conditions(pool.body, conditions),
    }


def accelerator_pool_status(body: Mapping[str, Any], snapshot: ClusterSnapshot,
                            in_use: Mapping[str, int], now: dt.datetime) -> dict[str, Any]:
    name = str((body.get("metadata") or {}).get("name"))
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    # the pool it declares may run under an older name (cluster/discovery.py)
    pool = next((p.name for p in snapshot.pools if p.accelerator_pool == name), None)
    nodes = snapshot.nodes_of(pool) if pool is not None else ()
    ready_nodes = [n for n in nodes if n.ready and n.schedulable]
    total = sum(n.allocatable for n in nodes)
    allocatable = sum(n.allocatable for n in ready_nodes)
    elastic = snapshot.pool(pool).elastic if pool is not None else None
    message = f"{len(ready_nodes)}/{len(nodes)} nodes Ready and schedulable"
    reason = "NodesReady" if ready_nodes else "NoReadyNodes"
    grows = elastic is not None and elastic.max_nodes > len(nodes)
    if elastic is not None:
        message += f"; elastic: may grow to {elastic.max_nodes} nodes"
        if elastic.limited_by:
            message += f" ({elastic.limited_by}; maxNodes is {elastic.declared_max_nodes})"
        reason = "NodesReady" if ready_nodes else "CanGrow" if grows else "AtNodeLimit"
    conditions = with_conditions(body, [
        _cond("Ready", bool(ready_nodes) or grows, reason, message, generation, now),
    ])
    status: dict[str, Any] = {
        "observedGeneration": generation, "nodes": len(nodes), "readyNodes": len(ready_nodes),
        "acceleratorsTotal": total, "acceleratorsAllocatable": allocatable,
        "acceleratorsInUse": in_use.get(name, 0), "conditions": conditions}
    if elastic is not None:
        status["maxNodes"] = elastic.max_nodes
        status["maxNodesLimitedBy"] = elastic.limited_by
    return status
