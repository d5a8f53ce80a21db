"""The Helm chart rendered by the real helm (`helm template`, `helm lint --strict`): the operator
Deployment, its security context and the optional objects. Helpers here are shared by the other
tests/unit/test_chart_*.py files.

helm is the sandbox's (`make sandbox-bin`); without it these tests are skipped.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inferpool-operator"
RELEASE = "ip"
NAMESPACE = "inferpool-system"


def helm_path() -> Path:
    from inferpool.sandbox import binaries, versions

    path = binaries.find(versions.HELM_COMPONENT)
    if path is None:
        pytest.skip("helm not built yet (make sandbox-bin)")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(helm_path()), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}{done.stdout}")
    return done


def set_args(values: Mapping[str, str] | None = None,
             json_values: Mapping[str, str] | None = None) -> list[str]:
    args = []
    for key, value in (values or {}).items():
        args += ["--set", f"{key}={value}"]
    for key, value in (json_values or {}).items():
        args += ["--set-json", f"{key}={value}"]
    return args


def render_text(values: Mapping[str, str] | None = None, *,
                json_values: Mapping[str, str] | None = None, chart: Path = CHART) -> str:
    return helm("template", RELEASE, str(chart), "--namespace", NAMESPACE,
                *set_args(values, json_values)).stdout


def render(values: Mapping[str, str] | None = None, *,
           json_values: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    text = render_text(values, json_values=json_values)
    return [d for d in yaml.safe_load_all(text) if d]


def only(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    (operator,) = pod["containers"]
    assert operator["name"] == "operator"
    return dict(operator)


def env(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


# --- tests -------------------------------------------------------------------------------------

LINT_CASES = {
    "defaults": [],
    "everything on": ["--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=true",
                      "--set", "metrics.serviceMonitor.enabled=true",
                      "--set", "metrics.prometheusRule.enabled=true",
                      "--set", "metrics.grafanaDashboard.enabled=true",
                      "--set", "prometheus.authSecrets=true",
                      "--set", "prometheus.url=http://prometheus.monitoring:9090",
                      "--set-json", 'prometheus.allowedURLs=["https://thanos.example/t/"]',
                      "--set-json", 'operator.allowPrivilegedNamespaces=["gpu-debug"]'],
    "pod monitor": ["--set", "metrics.podMonitor.enabled=true",
                    "--set", "metrics.service.enabled=false"],
    "everything off": ["--set", "crds.install=false", "--set", "rbac.create=false",
                       "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=op",
                       "--set", "metrics.service.enabled=false"],
}


@pytest.mark.parametrize("args", LINT_CASES.values(), ids=LINT_CASES.keys())
def test_lint_strict_is_clean(args: list[str]) -> None:
    done = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout, done.stdout
    assert "[ERROR]" not in done.stdout, done.stdout


CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_default_objects() -> None:
    docs = render()
    assert kinds(docs) == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                           "CustomResourceDefinition", "Deployment", "Role", "RoleBinding",
                           "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
                           "ValidatingAdmissionPolicyBinding"]
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    docs = render()
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Nothing in the pod reaches the host.
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    assert all("hostPath" not in v for v in pod["volumes"])
    # The read-only root filesystem gets a writable, bounded /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"]


def test_platform_assigned_ids_can_be_left_out() -> None:
    docs = render(json_values={"podSecurityContext": '{"runAsUser": null, "runAsGroup": null,'
                                                     ' "fsGroup": null}'})
    sc = only(docs, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert sc == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_operator_container() -> None:
    docs = render()
    op = container(docs)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert op["image"] == "ghcr.io/inferpool/inferpool-operator:0.1.0"  # the appVersion
    assert op["args"] == ["run"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("startupProbe", "livenessProbe"):
        assert op[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert op["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert set(op["resources"]) == {"requests", "limits"}
    variables = env(docs)
    assert variables["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert variables["INFERPOOL_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["INFERPOOL_METRICS_PORT"] == "8080"
    assert variables["INFERPOOL_HEALTH_PORT"] == "8081"
    assert variables["INFERPOOL_LOG_FORMAT"] == "json"
    assert variables["INFERPOOL_PROMETHEUS_ALLOWED_URLS"] == ""  # only prometheus.url


def test_every_env_variable_is_a_flag_of_inferpool_run() -> None:
    """A typo in an INFERPOOL_* name would be ignored silently by the operator."""
    from inferpool.controller.settings import Settings, env_name

    known = {env_name(name) for name in Settings.model_fields}
    for name in env(render()):
        if name.startswith("INFERPOOL_"):
            assert name in known, name


def test_values_reach_the_operator() -> None:
    docs = render({"operator.logFormat": "console", "operator.logLevel": "debug",
                   "operator.tickSeconds": "5", "prometheus.url": "http://prom.monitoring:9090",
                   "metrics.port": "9100", "health.port": "9101",
                   "image.repository": "inferpool-operator", "image.tag": "dev",
                   "image.pullPolicy": "Never"},
                  json_values={"operator.allowPrivilegedNamespaces": '["a", "b"]',
                               "prometheus.allowedURLs": '["https://t.example/a", "*"]',
                               "operator.extraArgs": '["--hysteresis=0.1"]'})
    variables = env(docs)
    assert variables["INFERPOOL_LOG_FORMAT"] == "console"
    assert variables["INFERPOOL_LOG_LEVEL"] == "debug"
    assert variables["INFERPOOL_TICK_SECONDS"] == "5"
    assert variables["INFERPOOL_PROMETHEUS_URL"] == "http://prom.monitoring:9090"
    assert variables["INFERPOOL_ALLOW_PRIVILEGED_NAMESPACES"] == "a,b"
    assert variables["INFERPOOL_PROMETHEUS_ALLOWED_URLS"] == "https://t.example/a,*"
    assert variables["INFERPOOL_METRICS_PORT"] == "9100"
    op = container(docs)
    assert op["image"] == "inferpool-operator:dev"
    assert op["imagePullPolicy"] == "Never"
    assert op["args"] == ["run", "--hysteresis=0.1"]
    assert {p["name"]: p["containerPort"] for p in op["ports"]} == {"metrics": 9100,
                                                                   "health": 9101}
    service = only(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080,
                                         "targetPort": "metrics", "protocol": "TCP"}]


def test_digest_wins_over_tag() -> None:
    digest = "sha256:" + "ab" * 32
    op = container(render({"image.digest": digest, "image.tag": "x"}))
    assert op["image"] == f"ghcr.io/inferpool/inferpool-operator@{digest}"


def test_metrics_service_selects_the_operator_pods() -> None:
    docs = render()
    selector = only(docs, "Service")["spec"]["selector"]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_service_monitor_and_pdb_are_optional() -> None:
    assert not {"ServiceMonitor", "PodDisruptionBudget"} & set(kinds(render()))
    docs = render({"metrics.serviceMonitor.enabled": "true",
                   "metrics.serviceMonitor.labels.release": "kube-prometheus",
                   "podDisruptionBudget.enabled": "true", "replicaCount": "2"})
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    pdb = only(render({"podDisruptionBudget.enabled": "true"},
                      json_values={"podDisruptionBudget.minAvailable": '"50%"',
                                   "podDisruptionBudget.maxUnavailable": "null"}),
               "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": "50%", "selector": pdb["spec"]["selector"]}


def test_service_monitor_needs_the_service() -> None:
    done = helm("template", RELEASE, str(CHART), "--set", "metrics.serviceMonitor.enabled=true",
                "--set", "metrics.service.enabled=false", check=False)
    assert done.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in done.stderr


def test_high_availability_spreads_standbys_and_hands_over_make_before_break() -> None:
    one = only(render(), "Deployment")
    assert one["spec"]["replicas"] == 1
    assert "affinity" not in one["spec"]["template"]["spec"]
    assert one["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    two = only(render({"replicaCount": "2"}), "Deployment")
    assert two["spec"]["replicas"] == 2
    term = two["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == two["spec"]["selector"]["matchLabels"]


def test_existing_service_account() -> None:
    docs = render({"serviceAccount.create": "false", "serviceAccount.name": "platform-op"})
    assert "ServiceAccount" not in kinds(docs)
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == \
        "platform-op"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert only(docs, kind)["subjects"] == [
            {"kind": "ServiceAccount", "name": "platform-op", "namespace": NAMESPACE}]
    done = helm("template", RELEASE, str(CHART), "--set", "serviceAccount.create=false",
                check=False)
    assert done.returncode != 0
    assert "serviceAccount.name is required" in done.stderr



@pytest.mark.parametrize(("values", "json_values", "enabled"), [
    ({}, {}, "false"),  # no Prometheus to query: nothing shared
    ({"prometheus.url": "http://prom.monitoring:9090"}, {}, "true"),  # one for all namespaces
    ({}, {"prometheus.allowedURLs": '["https://thanos.example/t"]'}, "true"),
    ({"prometheus.url": "http://p:9090", "prometheus.tenancy.enabled": "false"}, {}, "false"),
    ({"prometheus.tenancy.enabled": "true", "prometheus.tenancy.label": "kube_namespace"}, {},
     "true"),
])
def test_prometheus_tenancy_is_on_when_the_prometheus_is_shared(
        values: dict[str, str], json_values: dict[str, str], enabled: str) -> None:
    variables = env(render(values, json_values=json_values))
    assert variables["INFERPOOL_PROMETHEUS_TENANCY"] == enabled
    assert variables["INFERPOOL_PROMETHEUS_TENANCY_LABEL"] == values.get(
        "prometheus.tenancy.label", "namespace")


def test_secured_metrics_reach_the_operator_the_probe_and_the_monitors() -> None:
    docs = render({"metrics.auth.enabled": "true", "metrics.tls.secretName": "metrics-cert",
                   "metrics.bindAddress": "::", "metrics.serviceMonitor.enabled": "true",
                   "metrics.auth.scrapeTokenSecret.name": "scrape-token",
                   "metrics.auth.scrapeTokenSecret.key": "token",
                   "metrics.tls.scrapeTLSConfig.serverName": "inferpool"})
    variables = env(docs)
    assert variables["INFERPOOL_METRICS_AUTH"] == "true"
    assert variables["INFERPOOL_METRICS_BIND_ADDRESS"] == "::"
    assert variables["INFERPOOL_METRICS_TLS_CERT_FILE"] == "/etc/inferpool/metrics-tls/tls.crt"
    op = container(docs)
    assert op["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "metrics-tls", "secret": {"secretName": "metrics-cert"}} in pod["volumes"]
    endpoint = only(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"serverName": "inferpool"}
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {
        "name": "scrape-token", "key": "token"}}
    reader = [d for d in docs if d["kind"] == "ClusterRole"
              and d["metadata"]["name"].endswith("-metrics-reader")]
    assert reader[0]["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    plain = env(render())
    assert plain["INFERPOOL_METRICS_AUTH"] == "false"
    assert "INFERPOOL_METRICS_TLS_CERT_FILE" not in plain
