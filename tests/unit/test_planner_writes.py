"""A write the API server refuses is counted by kind and HTTP code (the "writes rejected" alert
reads that counter), and the planner carries on; a 404 on a delete or on the status of an object
deleted meanwhile is not a rejection."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from inferpool.controller.planner import Planner
from inferpool.controller.settings import Settings
from inferpool.controller.translate import LiveDeployment


class Refusing:
    """Stands for AppsV1Api, CoreV1Api and CustomObjectsApi: every call raises `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*_args: Any, **_kwargs: Any) -> None:
            self.calls.append(name)
            raise ApiException(status=self.status, reason="refused")
        return call


def planner(status: int) -> Planner:
    p = Planner(Settings(), api=None)  # type: ignore[arg-type]
    p.apps = p.core = p.custom = Refusing(status)  # type: ignore[assignment]
    return p


def errors(p: Planner, kind: str, code: str) -> float | None:
    return p.metrics.registry.get_sample_value("inferpool_api_write_errors_total",
                                               {"kind": kind, "code": code})


DEPLOYMENT = {"metadata": {"name": "chat-h100-h100", "namespace": "serving", "labels": {}},
              "spec": {"replicas": 1}}


def live() -> LiveDeployment:
    return LiveDeployment(key=("serving/chat", "h100", "h100"), namespace="serving",
                          name="chat-h100-h100", replicas=1, ready=1,
                          body=DEPLOYMENT)


@pytest.mark.parametrize("status", [403, 422, 500])
def test_every_kind_of_rejected_write_is_counted(status: int) -> None:
    p = planner(status)
    assert not p._write_deployment(DEPLOYMENT, None)  # server-side apply
    assert not p._write_deployment(DEPLOYMENT, live().body)  # replace
    assert not p._delete(live())
    assert not p._delete_pod("serving", "chat-h100-h100-abc")
    assert not p._patch_status("inferencepools", "serving", "chat", {"readyReplicas": 1})
    assert not p._patch_status("acceleratorpools", None, "h100", {"nodes": 2})
    code = str(status)
    assert errors(p, "Deployment", code) == 3  # the apply, the replace and the delete
    assert errors(p, "Pod", code) == 1
    assert errors(p, "InferencePool", code) == 1
    assert errors(p, "AcceleratorPool", code) == 1
    assert p.metrics.registry.get_sample_value("inferpool_api_writes_total") == 0


def test_not_found_on_delete_or_status_is_not_a_rejection() -> None:
    p = planner(404)
    assert not p._delete(live())
    assert not p._delete_pod("serving", "gone")
    assert not p._patch_status("inferencepools", "serving", "deleted", {})
    for kind in ("Deployment", "Pod", "InferencePool"):
        assert errors(p, kind, "404") is None
    assert not p._write_deployment(DEPLOYMENT, None)  # an apply into a vanished namespace is one
    assert errors(p, "Deployment", "404") == 1


INVALID = (b'{"kind":"Status","status":"Failure","reason":"Invalid","code":422,"message":'
           b'"Deployment.apps \\"chat-h100-h100\\" is invalid: spec.template.spec.containers[0]'
           b'.volumeMounts[0].name: Not found: \\"weights\\"","details":{"causes":[{"field":'
           b'"spec.template.spec.containers[0].volumeMounts[0].name"}]}}')


class DryRunning:
    """AppsV1Api whose dry runs answer `refusal` (or warn), and whose writes succeed."""

    def __init__(self, refusal: ApiException | None = None, warning: str | None = None) -> None:
        self.refusal, self.warning = refusal, warning
        self.calls: list[str] = []

    def patch_namespaced_deployment(self, *_args: Any, **kwargs: Any) -> Any:
        dry = bool(kwargs.get("dry_run"))
        self.calls.append("dry run" if dry else "apply")
        if dry and self.refusal is not None:
            raise self.refusal
        raw = type("Raw", (), {})()
        raw.data = b'{"metadata": {"generation": 1}}'
        raw.headers = {"Warning": self.warning} if dry and self.warning else {}
        return raw


def test_a_new_specs_refused_dry_run_is_reported_and_nothing_is_applied() -> None:
    p = Planner(Settings(), api=None)  # type: ignore[arg-type]
    refusal = ApiException(status=422, reason="Unprocessable Entity")
    refusal.body = INVALID
    p.apps = DryRunning(refusal)  # type: ignore[assignment]
    key = ("serving/chat", "h100", "h100")
    assert not p._write_deployment(DEPLOYMENT, None, key, 0.0, dry_run=True)
    assert p.apps.calls == ["dry run"]  # type: ignore[attr-defined]
    why = p.refusals.why[("serving/chat", "h100")]
    assert why.reason == "WriteRejected"
    assert "dry run" in why.message
    assert "field spec.template.spec.containers[0].volumeMounts[0].name" in why.message
    assert p.refusals.refused(1.0) == {("serving/chat", "h100")}  # held back: not every tick
    assert errors(p, "Deployment", "422") == 1


def test_a_dry_runs_admission_warning_is_kept_and_the_write_goes_ahead() -> None:
    p = Planner(Settings(), api=None)  # type: ignore[arg-type]
    p.apps = DryRunning(warning='299 - "would violate PodSecurity \\"restricted:latest\\": '  # type: ignore[assignment]
                                'runAsNonRoot != true"')
    key = ("serving/chat", "h100", "h100")
    assert p._write_deployment(DEPLOYMENT, None, key, 0.0, dry_run=True)
    assert p.apps.calls == ["dry run", "apply"]  # type: ignore[attr-defined]
    assert p.dry_run_warnings["serving/chat"] == [
        'a dry run of Deployment serving/chat-h100-h100 warned: would violate PodSecurity '
        '"restricted:latest": runAsNonRoot != true']


class Owned:
    """CoreV1Api and PolicyV1Api for Services and PodDisruptionBudgets: applies succeed and are
    recorded; lists answer what `existing` holds."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []
        self.existing: set[tuple[str, str, str]] = set()
        self.lists = 0

    def patch_namespaced_service(self, name: str, namespace: str, *_a: Any, **_k: Any) -> None:
        self.applied.append(("Service", name))
        self.existing.add(("Service", namespace, name))

    def patch_namespaced_pod_disruption_budget(self, name: str, namespace: str, *_a: Any,
                                               **_k: Any) -> None:
        self.applied.append(("PodDisruptionBudget", name))
        self.existing.add(("PodDisruptionBudget", namespace, name))

    def _listed(self, kind: str) -> Any:
        items = [type("Item", (), {"metadata": type("Meta", (), {"namespace": ns, "name": n})})
                 for k, ns, n in sorted(self.existing) if k == kind]
        return type("List", (), {"items": items})

    def list_service_for_all_namespaces(self, **_k: Any) -> Any:
        self.lists += 1
        return self._listed("Service")

    def list_pod_disruption_budget_for_all_namespaces(self, **_k: Any) -> Any:
        return self._listed("PodDisruptionBudget")

    list_namespaced_service = list_namespaced_pod_disruption_budget = None  # not watched so


def test_services_and_budgets_are_applied_once_and_again_only_when_deleted() -> None:
    import asyncio

    from inferpool.controller.translate import parse_pools
    from tests.unit.test_binding import ipool, variant

    p = Planner(Settings(resync_seconds=60), api=None)  # type: ignore[arg-type]
    fake = Owned()
    p.core = p.policy = fake  # type: ignore[assignment]
    body = ipool("chat", 1, variant("h100", "nvidia", 8, 1.0))
    body["spec"]["service"] = {"targetPort": 8000}
    (pool,), _ = parse_pools([body])

    def reconcile(now: float) -> list[tuple[str, str]]:
        fake.applied = []
        asyncio.run(p._forget_deleted_owned(now))
        for job in p._owned_object_jobs([pool]):
            assert job()
        return fake.applied

    assert reconcile(0.0) == [("Service", "chat"), ("PodDisruptionBudget", "chat")]
    assert reconcile(30.0) == []  # unchanged: no write, no list
    assert reconcile(90.0) == []  # listed: both still there
    fake.existing.discard(("PodDisruptionBudget", "ns", "chat"))  # someone deleted it
    assert reconcile(120.0) == []  # not listed again before the period is over
    assert reconcile(151.0) == [("PodDisruptionBudget", "chat")]  # put back
    assert fake.lists == 3
