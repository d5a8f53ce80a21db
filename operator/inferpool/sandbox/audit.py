"""The sandbox API server's audit log, read back as the API calls one user made.

`control.up` starts kube-apiserver with `POLICY` and a size-capped JSON log in the sandbox's
`logs/` folder, always: it is how tests/sandbox/test_chart.py shows that the chart's RBAC grants
exactly what the operator calls. Only ServiceAccount requests outside kube-system are logged
(the operator run as the chart's ServiceAccount), at Metadata level: who, which verb on which
resource, the answer's code; no bodies. The control plane's own controllers (kube-system
ServiceAccounts, certificate users) and kwok's node heartbeats are left out, so the log stays
small and costs the API server next to nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # a request is logged once it is answered (and once when a watch starts streaming)
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}
LOG_NAME = "audit.log"
# kube-apiserver rotates the log past this size, keeping one old file (read too)
MAX_SIZE_MB = 100
MAX_BACKUPS = 1


def server_flags(policy_file: Path, log_dir: Path) -> list[str]:
    return [f"--audit-policy-file={policy_file}", f"--audit-log-path={log_dir / LOG_NAME}",
            "--audit-log-format=json", f"--audit-log-maxsize={MAX_SIZE_MB}",
            f"--audit-log-maxbackup={MAX_BACKUPS}"]


@dataclass(frozen=True)
class Call:
    """One API request, as RBAC sees it."""

    group: str  # "" is the core group
    resource: str  # plural, "/subresource" appended: "inferencepools/status"
    verb: str  # get, list, watch, create, update, patch, delete, ...
    namespace: str | None
    name: str | None
    code: int | None  # the HTTP status of the answer (None: not answered yet)
    user_agent: str

    @property
    def rule(self) -> tuple[str, str, str]:
        """(API group, resource, verb): what an RBAC rule grants."""
        return (self.group, self.resource, self.verb)


def log_files(log_dir: Path) -> list[Path]:
    """The current log and its rotated backups (kube-apiserver names them audit-<time>.log)."""
    return sorted(log_dir.glob("audit*.log"))


def parse(lines: Iterable[str]) -> Iterator[tuple[str, Call]]:
    """(username, call) for every resource request in the log lines. Requests for non-resource
    URLs (discovery, /version, /healthz) have no RBAC resource and are left out, and so is a
    line the API server was still writing."""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        ref = event.get("objectRef")
        if not isinstance(ref, dict) or not ref.get("resource"):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        status = event.get("responseStatus") or {}
        yield (str((event.get("user") or {}).get("username", "")),
               Call(group=str(ref.get("apiGroup") or ""), resource=resource,
                    verb=str(event.get("verb", "")), namespace=ref.get("namespace"),
                    name=ref.get("name"), code=status.get("code"),
                    user_agent=str(event.get("userAgent", ""))))


def calls(log_dir: Path, user: str, *, exclude_agents: tuple[str, ...] = ()) -> list[Call]:
    """Every call `user` made, but those from clients whose user agent starts with one of
    `exclude_agents` (a test's own kubectl acting as the same ServiceAccount)."""
    found: list[Call] = []
    for path in log_files(log_dir):
        with path.open(errors="replace") as lines:
            found.extend(call for who, call in parse(lines)
                         if who == user and not call.user_agent.startswith(exclude_agents))
    return found
