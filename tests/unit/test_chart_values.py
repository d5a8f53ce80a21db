"""values.schema.json refuses what the chart cannot honour, before anything reaches a cluster."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.unit.test_chart_helm import CHART, RELEASE, helm

BAD = {
    "unknown top-level key": ("--set", "replicas=2", "replicas"),
    "unknown nested key": ("--set", "operator.logFromat=json", "logFromat"),
    "log format not in the enum": ("--set", "operator.logFormat=xml", "logFormat"),
    "log level not in the enum": ("--set", "operator.logLevel=verbose", "logLevel"),
    "replica count as text": ("--set-string", "replicaCount=two", "replicaCount"),
    "pull policy": ("--set", "image.pullPolicy=Sometimes", "pullPolicy"),
    "port out of range": ("--set", "metrics.port=70000", "port"),
    "crds.install as text": ("--set-string", "crds.install=yes", "install"),
    "namespace that is not a DNS label": (
        "--set-json", 'operator.allowPrivilegedNamespaces=["Not_A_Name"]',
        "allowPrivilegedNamespaces"),
    "prometheus URL without scheme": ("--set", "prometheus.url=prometheus:9090", "url"),
    "allowed Prometheus URL with credentials": (
        "--set-json", 'prometheus.allowedURLs=["http://u:p@prom:9090"]', "allowedURLs"),
    "allowed Prometheus URLs as one comma-separated string": (
        "--set-json", 'prometheus.allowedURLs=["http://a,http://b"]', "allowedURLs"),
    "image digest": ("--set", "image.digest=latest", "digest"),
    "negative tick": ("--set", "operator.tickSeconds=-1", "tickSeconds"),
    "secrets switch as text": ("--set-string", "prometheus.authSecrets=true", "authSecrets"),
    "pdb percent without %": ("--set-string", "podDisruptionBudget.maxUnavailable=half",
                              "maxUnavailable"),
    "extra arg that is not a flag": ("--set-json", 'operator.extraArgs=["run"]', "extraArgs"),
}


@pytest.mark.parametrize(("flag", "value", "key"), BAD.values(), ids=BAD.keys())
def test_schema_refuses(flag: str, value: str, key: str) -> None:
    done = helm("template", RELEASE, str(CHART), flag, value, check=False)
    assert done.returncode != 0, f"{value} was accepted"
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert key in done.stderr, done.stderr


def test_schema_refuses_on_lint_too() -> None:
    done = helm("lint", "--strict", str(CHART), "--set", "operator.solver=quantum", check=False)
    assert done.returncode != 0
    assert "solver" in done.stdout + done.stderr


def test_pdb_refuses_both_bounds() -> None:
    done = helm("template", RELEASE, str(CHART), "--set", "podDisruptionBudget.enabled=true",
                "--set", "podDisruptionBudget.minAvailable=1", check=False)
    assert done.returncode != 0
    assert "not both" in done.stderr


def test_defaults_satisfy_the_schema_and_every_key_is_declared() -> None:
    """values.yaml and the schema describe the same tree (no undocumented or dead keys)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(value: object, node: dict[str, object], path: str) -> None:
        if node.get("type") != "object" or not isinstance(value, dict) or \
                "properties" not in node:
            return
        props = node["properties"]
        assert isinstance(props, dict)
        declared = set(props) - {"global"}
        if node.get("additionalProperties") is False:
            assert set(value) <= declared, f"{path}: not in the schema: {set(value) - declared}"
        assert set(value) >= declared or not value, (
            f"{path}: in the schema but not in values.yaml: {declared - set(value)}")
        for key, child in value.items():
            walk(child, props[key], f"{path}.{key}")

    walk(values, schema, "values")
    assert schema["additionalProperties"] is False
