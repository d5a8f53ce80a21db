"""Label and annotation keys the operator puts on what it creates."""

from __future__ import annotations

import hashlib
import re

GROUP = "inferpool.dev"
VERSION = "v1alpha1"

POOL = "inferpool.dev/pool"  # the InferencePool's name (a gateway selects a model's pods by it)
VARIANT = "inferpool.dev/variant"
ACCELERATOR = "inferpool.dev/accelerator"  # the accelerator family
NODE_POOL = "inferpool.dev/node-pool"  # also the sandbox's node label for its pools
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "inferpool"
FIELD_MANAGER = "inferpool-operator"
# On our Deployments: a fingerprint of the spec we want, so that a field we stopped setting
# (e.g. a node selector label) shows as a difference, also to an operator that just started.
DESIRED_DIGEST = "inferpool.dev/desired-digest"



def model_pods(pool: str) -> dict[str, str]:
    """The labels that select an InferencePool's pods of every variant (its Service and its
    PodDisruptionBudget select by them, and carry them)."""
    return {POOL: pool, MANAGED_BY: MANAGER}


def owner_reference(pool: str, uid: str) -> dict[str, object]:
    """The InferencePool as the controlling owner of what the operator makes for it (deleting
    it garbage-collects them)."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferencePool", "name": pool,
            "uid": uid, "controller": True, "blockOwnerDeletion": True}


FAMILY_RESOURCE = {
    "nvidia": "nvidia.com/gpu",
    "tpu": "google.com/tpu",
    "neuron": "aws.amazon.com/neuron",
}
# Taints the vendors put on accelerator nodes (GKE also taints GPU nodes).
FAMILY_TAINT_KEY = {
    "nvidia": "nvidia.com/gpu",
    "tpu": "google.com/tpu",
    "neuron": "aws.amazon.com/neuron",
}

_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def deployment_name(pool: str, variant: str, node_pool: str) -> str:
    """The plain, DNS-safe name of (InferencePool, variant, node pool); hashed when too long.
    Plain names can collide (`chat-3.1` and `chat-3-1`; `qa` + `l4-x` and `qa-l4` + `x`):
    controller/naming.py gives the hashed one where they do."""
    name = _NOT_NAME.sub("-", f"{pool}-{variant}-{node_pool}".lower()).strip("-")
    if len(name) <= 52:
        return name
    return hashed_deployment_name(pool, variant, node_pool)


def hashed_deployment_name(pool: str, variant: str, node_pool: str) -> str:
    """The plain name cut to 43 characters plus 8 hex digits of the exact (unsanitised) parts:
    distinct for distinct parts, and within the 63 characters of a pod name's label value once
    the ReplicaSet and pod suffixes are added."""
    name = _NOT_NAME.sub("-", f"{pool}-{variant}-{node_pool}".lower()).strip("-")
    digest = hashlib.sha256(f"{pool}/{variant}/{node_pool}".encode()).hexdigest()[:8]
    return f"{name[:43].rstrip('-')}-{digest}"
