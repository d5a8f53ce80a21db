"""The PodDisruptionBudget made for one InferencePool: evictions of its pods, whatever variant or
node pool they run in, go a few at a time.

What it stops is the voluntary kind: Karpenter's consolidation and drift, `kubectl drain`, a
cluster upgrade. The operator itself never evicts (it deletes pods and scales Deployments,
make-before-break), so the budget does not hold its moves back. Pods that are not Ready may
always be evicted (`unhealthyPodEvictionPolicy: AlwaysAllow`): a broken replica must not block a
node's drain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferpool.k8s import labels as lbl


def build(pool: str, namespace: str, owner_uid: str, budget: Mapping[str, Any]
          ) -> dict[str, Any] | None:
    """The PodDisruptionBudget body, or None when it is disabled."""
    if not budget.get("enabled", True):
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": pool,
            "namespace": namespace,
            "labels": lbl.model_pods(pool),
            "ownerReferences": [lbl.owner_reference(pool, owner_uid)],
        },
        "spec": {
            "maxUnavailable": int(budget.get("maxUnavailable", 1)),
            "selector": {"matchLabels": lbl.model_pods(pool)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
