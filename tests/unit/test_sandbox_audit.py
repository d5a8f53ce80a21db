"""The sandbox's audit log read back as (group, resource, verb) per user; the policy logs
ServiceAccount requests (not the control plane's own) at Metadata level, size-capped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inferpool.sandbox import audit

USER = "system:serviceaccount:inferpool-system:inferpool-operator"


def event(verb: str, resource: str | None, *, group: str = "", sub: str | None = None,
          user: str = USER, agent: str = "OpenAPI-Generator/37.0.2/python", code: int = 200,
          **ref: str) -> str:
    body: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1",
                            "level": "Metadata", "stage": "ResponseComplete", "verb": verb,
                            "user": {"username": user}, "userAgent": agent,
                            "responseStatus": {"code": code}}
    if resource is not None:
        body["objectRef"] = {"resource": resource, "apiGroup": group, **ref,
                             **({"subresource": sub} if sub else {})}
    else:
        body["requestURI"] = "/apis"
    return json.dumps(body)


def test_calls_of_one_user_by_rule(tmp_path: Path) -> None:
    (tmp_path / "audit-2026-01-01T00-00-00.000.log").write_text(
        event("watch", "nodes") + "\n")  # a rotated backup is read too
    (tmp_path / audit.LOG_NAME).write_text("\n".join([
        event("list", "pods"),
        event("patch", "inferencepools", group="inferpool.dev", sub="status",
              namespace="serving", name="chat"),
        event("update", "leases", group="coordination.k8s.io", namespace="inferpool-system",
              name="inferpool-operator"),
        event("get", None),  # discovery: no RBAC resource
        event("get", "secrets", agent="kubectl/v1.33.0 (linux/amd64) kubernetes/abc",
              code=403),  # the test's own kubectl, same ServiceAccount
        event("get", "pods", user="system:serviceaccount:other:default"),
        '{"kind": "Event", "verb": "li',  # being written
    ]) + "\n")
    calls = audit.calls(tmp_path, USER, exclude_agents=("kubectl/",))
    assert {c.rule for c in calls} == {
        ("", "nodes", "watch"), ("", "pods", "list"),
        ("inferpool.dev", "inferencepools/status", "patch"),
        ("coordination.k8s.io", "leases", "update")}
    (lease,) = [c for c in calls if c.resource == "leases"]
    assert (lease.namespace, lease.name, lease.code) == (
        "inferpool-system", "inferpool-operator", 200)
    everyone = audit.calls(tmp_path, USER)
    assert ("", "secrets", "get") in {c.rule for c in everyone}


def test_policy_logs_service_accounts_but_not_the_control_plane(tmp_path: Path) -> None:
    rules = audit.POLICY["rules"]
    assert rules[0] == {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]}
    assert rules[1] == {"level": "Metadata", "userGroups": ["system:serviceaccounts"]}
    assert rules[-1] == {"level": "None"}  # everything else
    flags = audit.server_flags(tmp_path / "policy.yaml", tmp_path)
    assert f"--audit-log-path={tmp_path / audit.LOG_NAME}" in flags
    assert any(f.startswith("--audit-log-maxsize=") for f in flags)
