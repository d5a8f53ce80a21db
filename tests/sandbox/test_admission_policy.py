"""The chart's ValidatingAdmissionPolicy on a real API server: a user may create or change an
InferencePool only if that user may create Deployments in its namespace, and impersonate each
ServiceAccount its template names (the operator would otherwise create them on the user's
behalf: a confused deputy). Two users, by impersonation from the admin kubeconfig (the API
server then authorizes the impersonated user, as for a client certificate of theirs); every
request is a server-side dry-run except where an object must exist."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.operator_process import install_crds
from tests.sandbox.test_chart import pool as chart_pool
from tests.support import Sandbox, wait_for
from tests.unit.test_chart_helm import CHART

pytestmark = pytest.mark.sandbox

RELEASE = "vap-test"
POLICY = f"{RELEASE}-inferpool-operator-inferencepool-rights"

def pool(name: str, account: str | None = None) -> str:
    """test_chart's small InferencePool, run as `account` if given."""
    text = chart_pool(name)
    if account:
        template = "      spec:\n"
        text = text.replace(template, f"{template}        serviceAccountName: {account}\n", 1)
    return text


def rendered_policy(sandbox: Sandbox, *values: str) -> str:
    return sandbox.helm("template", RELEASE, str(CHART), "--namespace", "inferpool-system",
                        "--show-only", "templates/admissionpolicy.yaml", *values).stdout


@pytest.fixture
def policy(sandbox: Sandbox) -> Iterator[str]:
    install_crds(sandbox)
    text = rendered_policy(sandbox)
    sandbox.kubectl("apply", "-f", "-", input=text)
    try:
        status = wait_for(lambda: sandbox.get_json("validatingadmissionpolicy", POLICY).get(
            "status", {}).get("observedGeneration") and sandbox.get_json(
            "validatingadmissionpolicy", POLICY)["status"], what="the policy type-checked")
        # type-checked against the CRD's schema: every field it reads exists there
        assert not status.get("typeChecking", {}).get("expressionWarnings"), status
        yield text
    finally:
        sandbox.kubectl("delete", "-f", "-", "--ignore-not-found", input=text, check=False)


def grant(sandbox: Sandbox, namespace: str, user: str, role: str, *args: str) -> None:
    sandbox.kubectl("create", "role", f"{user}-{role}", "-n", namespace, *args)
    sandbox.kubectl("create", "rolebinding", f"{user}-{role}", "-n", namespace,
                    f"--role={user}-{role}", f"--user={user}")


def as_user(sandbox: Sandbox, user: str, namespace: str, text: str,
            *args: str) -> subprocess.CompletedProcess[str]:
    return sandbox.kubectl("apply", "-n", namespace, "-f", "-", f"--as={user}", *args,
                           input=text, check=False)


def dry_run(sandbox: Sandbox, user: str, namespace: str,
            text: str) -> subprocess.CompletedProcess[str]:
    return as_user(sandbox, user, namespace, text, "--dry-run=server")


def test_only_users_who_may_create_deployments_may_create_inference_pools(
        sandbox: Sandbox, namespace: str, policy: str) -> None:
    pools = ("--verb=get,create,update,patch", "--resource=inferencepools.inferpool.dev")
    grant(sandbox, namespace, "alice", "pools", *pools)
    grant(sandbox, namespace, "alice", "deployments", "--verb=create",
          "--resource=deployments.apps")
    grant(sandbox, namespace, "bob", "pools", *pools)  # InferencePools, but no Deployments

    # RBAC and the policy's binding take a moment to reach the admission chain: a type-checked
    # policy may not be enforced yet, so wait for bob's refusal before judging anyone.
    def refused_by_policy() -> subprocess.CompletedProcess[str] | None:
        done = dry_run(sandbox, "bob", namespace, pool("mine"))
        return done if done.returncode != 0 and POLICY in done.stderr else None

    refused = wait_for(refused_by_policy, what="bob's InferencePool refused by the policy")
    wait_for(lambda: dry_run(sandbox, "alice", namespace, pool("mine")).returncode == 0,
             what="alice's InferencePool accepted")
    assert (f'user "bob" may not create Deployments in namespace "{namespace}", so may not '
            "create or change InferencePools there") in refused.stderr, refused.stderr

    # A ServiceAccount other than "default": alice needs impersonate on it.
    sandbox.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    refused = dry_run(sandbox, "alice", namespace, pool("mine", account="robot"))
    assert refused.returncode != 0
    assert (f'user "alice" may not run pods as ServiceAccount "robot" in namespace '
            f'"{namespace}"') in refused.stderr, refused.stderr
    assert dry_run(sandbox, "alice", namespace, pool("mine", account="default")).returncode == 0
    grant(sandbox, namespace, "alice", "robot", "--verb=impersonate",
          "--resource=serviceaccounts", "--resource-name=robot")
    wait_for(lambda: dry_run(sandbox, "alice", namespace,
                             pool("mine", account="robot")).returncode == 0,
             what="alice's InferencePool running as robot accepted")
    other = dry_run(sandbox, "alice", namespace, pool("mine", account="builder"))
    assert other.returncode != 0  # the grant names robot only
    assert '"builder"' in other.stderr

    # Changes: bob may relabel an existing pool (the operator creates nothing new) but not
    # change its spec.
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=pool("shared"))
    relabelled = sandbox.kubectl("label", "ipool", "shared", "-n", namespace, "team=b",
                                 "--as=bob", check=False)
    assert relabelled.returncode == 0, relabelled.stderr
    changed = sandbox.kubectl("patch", "ipool", "shared", "-n", namespace, "--as=bob",
                              "--type=merge", "-p", '{"spec": {"replicas": {"max": 5}}}',
                              check=False)
    assert changed.returncode != 0
    assert 'user "bob" may not create Deployments' in changed.stderr, changed.stderr
    sandbox.kubectl("delete", "ipool", "shared", "-n", namespace)
