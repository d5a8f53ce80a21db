"""The chart's ValidatingAdmissionPolicy as the real helm renders it (on by default, a switch for
it and one for its ServiceAccount check). Its behaviour with two users on a real API server is
tests/sandbox/test_admission_policy.py."""

from __future__ import annotations

from tests.unit.test_chart_helm import render


def test_the_policy_can_be_turned_off_and_the_account_check_alone() -> None:
    """Rendered by the real helm: off means no policy and no binding; checkServiceAccounts=false
    keeps the Deployment check only."""
    assert not {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} & {
        d["kind"] for d in render({"admissionPolicy.enabled": "false"})}
    (lax,) = [d for d in render({"admissionPolicy.checkServiceAccounts": "false"})
              if d["kind"] == "ValidatingAdmissionPolicy"]
    assert [v["name"] for v in lax["spec"]["variables"]] == ["deployments"]
    assert len(lax["spec"]["validations"]) == 1


def test_chart_default_installs_the_policy_and_binds_it() -> None:
    docs = render()
    (body,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"] == {"policyName": body["metadata"]["name"],
                               "validationActions": ["Deny"]}
    assert body["spec"]["failurePolicy"] == "Fail"
    (rule,) = body["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["inferencepools"]  # not the status subresource
