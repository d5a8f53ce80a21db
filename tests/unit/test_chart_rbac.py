"""The chart grants exactly what the operator uses (inferpool.k8s.access), commented with why.

Granting a verb or resource the operator does not use, a wildcard, or a namespaced permission
cluster-wide that it needs in one namespace only, fails here. That the grants are enough is
shown on a real API server by tests/sandbox/test_chart.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from inferpool.k8s import access
from tests.unit.test_chart_helm import NAMESPACE, RELEASE, env, only, render, render_text

ROLE_KINDS = {"ClusterRole": "cluster", "Role": "release-namespace"}
WATCHED = ("team-a", "team-b")


def is_metrics_reader(doc: dict[str, Any]) -> bool:
    """The ClusterRole for scrapers of a metrics.auth port: granted to them, not the operator."""
    return doc["kind"] == "ClusterRole" and doc["metadata"]["name"].endswith("-metrics-reader")


def _granted(docs: list[dict[str, Any]], lease_name: str,
             watched: tuple[str, ...] = ()) -> set[access.Grant]:
    """What the rendered roles grant; the Roles of every watched namespace must be the same."""
    got: set[access.Grant] = set()
    per_namespace: dict[str, set[access.Grant]] = {}
    for doc in docs:
        scope = ROLE_KINDS.get(doc["kind"])
        if scope is None or is_metrics_reader(doc):
            continue
        if scope == "release-namespace" and doc["metadata"]["namespace"] != NAMESPACE:
            assert doc["metadata"]["namespace"] in watched, doc["metadata"]
            rules = _granted([{**doc, "kind": "ClusterRole"}], lease_name)
            per_namespace[doc["metadata"]["namespace"]] = {
                (g, r, v, "watched-namespaces", o) for g, r, v, _, o in rules}
            continue
        if scope == "release-namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE
        for rule in doc["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            names = rule.get("resourceNames")
            assert names in (None, [lease_name]), rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        got.add((group, resource, verb, scope, names is not None))  # type: ignore[arg-type]
    assert set(per_namespace) == set(watched), sorted(per_namespace)
    for rules in per_namespace.values():
        assert rules == next(iter(per_namespace.values()))
        got |= rules
    return got


CONDITIONS = tuple(access.conditions())
# Every combination of the chart values that some rule depends on.
SWITCHES = [tuple(c for i, c in enumerate(CONDITIONS) if mask >> i & 1)
            for mask in range(2 ** len(CONDITIONS))]


@pytest.mark.parametrize("watched", [(), WATCHED], ids=["cluster-wide", "watchNamespaces"])
@pytest.mark.parametrize("enabled", SWITCHES, ids=lambda on: "+".join(on) or "none")
def test_chart_grants_exactly_what_the_operator_uses(enabled: tuple[str, ...],
                                                     watched: tuple[str, ...]) -> None:
    docs = render({key: str(key in enabled).lower() for key in CONDITIONS},
                  json_values={"watchNamespaces": json.dumps(list(watched))})
    lease_name = env(docs)["INFERPOOL_LEASE_NAME"]
    assert env(docs)["INFERPOOL_NAMESPACES"] == ",".join(watched)
    granted = _granted(docs, lease_name, watched)
    used = access.grants(enabled=enabled, namespaced=bool(watched))
    assert not granted - used, f"granted but not used by the operator: {sorted(granted - used)}"
    assert not used - granted, f"used by the operator but not granted: {sorted(used - granted)}"


ALL_ON = {key: "true" for key in CONDITIONS}


def test_no_wildcards_and_no_aggregation() -> None:
    docs = render(ALL_ON)
    for doc in docs:
        if doc["kind"] in ROLE_KINDS and not is_metrics_reader(doc):
            assert "aggregationRule" not in doc
            for rule in doc["rules"]:
                assert "nonResourceURLs" not in rule
                for key in ("apiGroups", "resources", "verbs"):
                    assert all("*" not in item for item in rule[key]), rule


def test_every_rule_is_commented_with_its_purpose() -> None:
    """The comment above each rule is the `why` of the Access it grants."""
    text = render_text(ALL_ON)
    by_rule = {(a.group, a.resource, a.verbs, a.own_object_only): a.why for a in access.ACCESS}
    seen = 0
    for document in text.split("\n---\n"):
        body = yaml.safe_load(document)
        if not body or body.get("kind") not in ROLE_KINDS or is_metrics_reader(body):
            continue
        comments = _rule_comments(document)
        assert len(comments) == len(body["rules"]), document
        for rule, comment in zip(body["rules"], comments, strict=True):
            (group,), (resource,) = rule["apiGroups"], rule["resources"]
            key = (group, resource, tuple(rule["verbs"]), "resourceNames" in rule)
            assert comment == by_rule[key], f"{key}: comment {comment!r}"
            seen += 1
    assert seen == len(access.ACCESS)


def _rule_comments(document: str) -> list[str]:
    """The comment block right above each `- apiGroups:` line under `rules:`."""
    comments, block = [], []
    in_rules = False
    for line in document.splitlines():
        if line.startswith("rules:"):
            in_rules = True
            continue
        if not in_rules:
            continue
        if m := re.fullmatch(r"\s+# (.*)", line):
            block.append(m.group(1))
        elif re.fullmatch(r"\s+- apiGroups:.*", line):
            comments.append(" ".join(block))
            block = []
        elif line.strip():
            block = []
    return comments


def test_bindings_give_the_roles_to_the_service_account_only() -> None:
    docs = render()
    account = only(docs, "ServiceAccount")["metadata"]["name"]
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        body = only(docs, binding)
        assert body["subjects"] == subject
        assert body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role,
                                   "name": only(docs, role)["metadata"]["name"]}
    assert only(docs, "RoleBinding")["metadata"]["namespace"] == NAMESPACE


def test_the_lease_rule_names_the_lease_the_operator_uses() -> None:
    docs = render({"fullnameOverride": "planner"})
    (named,) = [r for r in only(docs, "Role")["rules"] if "resourceNames" in r]
    assert named["resourceNames"] == ["planner"] == [env(docs)["INFERPOOL_LEASE_NAME"]]
    assert RELEASE not in named["resourceNames"][0]


def test_rbac_can_be_managed_elsewhere() -> None:
    docs = render({"rbac.create": "false"})
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & \
        {d["kind"] for d in docs}


def test_access_list_is_well_formed() -> None:
    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    for a in access.ACCESS:
        assert a.verbs, a
        assert set(a.verbs) <= verbs, a
        assert a.why.startswith(a.resource + ":"), a
        assert a.scope in ("cluster", "release-namespace")
        if a.resource in access.CLUSTER_SCOPED:
            assert a.scope == "cluster", a
        if a.own_object_only:
            assert "create" not in a.verbs, "create cannot be limited by resourceNames"
        assert set(a.unaudited) <= set(a.verbs), a
    assert set(CONDITIONS) == {"prometheus.authSecrets", "operator.replacePodsOnFailedNodes",
                               "operator.readAutoscalerEvents", "operator.readKarpenterLimits",
                               "metrics.auth.enabled"}
    for key in CONDITIONS:
        assert access.grants() < access.grants(enabled=[key])


def test_switches_default_to_the_operators_defaults() -> None:
    """A rule's switch is on by default exactly when the operator uses the access by default."""
    docs = render()
    variables = env(docs)
    assert variables["INFERPOOL_REPLACE_PODS_ON_FAILED_NODES"] == "true"
    assert ("", "pods", "delete", "cluster", False) in _granted(
        docs, variables["INFERPOOL_LEASE_NAME"])
    off = render({"operator.replacePodsOnFailedNodes": "false"})
    assert env(off)["INFERPOOL_REPLACE_PODS_ON_FAILED_NODES"] == "false"
    assert variables["INFERPOOL_READ_AUTOSCALER_EVENTS"] == "true"
    assert ("", "events", "list", "cluster", False) in _granted(
        docs, variables["INFERPOOL_LEASE_NAME"])
    off = render({"operator.readAutoscalerEvents": "false"})
    assert env(off)["INFERPOOL_READ_AUTOSCALER_EVENTS"] == "false"
    assert variables["INFERPOOL_READ_KARPENTER_LIMITS"] == "true"
    assert ("karpenter.sh", "nodepools", "list", "cluster", False) in _granted(
        docs, variables["INFERPOOL_LEASE_NAME"])
    off = render({"operator.readKarpenterLimits": "false"})
    assert env(off)["INFERPOOL_READ_KARPENTER_LIMITS"] == "false"
    assert ("karpenter.sh", "nodepools", "list", "cluster", False) not in _granted(
        off, env(off)["INFERPOOL_LEASE_NAME"])


def test_namespaced_mode_keeps_only_cluster_scoped_resources_cluster_wide() -> None:
    """With watchNamespaces the ClusterRole names nodes and AcceleratorPools only: no write to a
    namespaced resource reaches beyond the watched namespaces."""
    docs = render(ALL_ON, json_values={"watchNamespaces": json.dumps(list(WATCHED))})
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole" and not is_metrics_reader(d)]
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert resources == set(access.CLUSTER_SCOPED)
    bindings = {(d["metadata"]["namespace"], d["roleRef"]["name"]) for d in docs
                if d["kind"] == "RoleBinding"}
    workloads = f"{RELEASE}-inferpool-operator-workloads"
    assert {(ns, workloads) for ns in WATCHED} < bindings
