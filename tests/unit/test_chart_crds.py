"""The chart's CRDs are the generated ones: its copies do not drift from crds/ and the generator,
and rendering adds nothing but Helm's labels and the keep policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferpool.api import crd
from tests.unit.test_chart_helm import CHART, REPO, render

FILES = CHART / "files"
NAMES = sorted(r.filename for r in crd.RESOURCES)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.yaml"))


def test_chart_copies_are_identical_to_crds() -> None:
    """`make crds` copies crds/ into the chart; this fails when someone forgot to."""
    assert _names(FILES / "crds") == _names(REPO / "crds") == NAMES
    for name in NAMES:
        assert (FILES / "crds" / name).read_text() == (REPO / "crds" / name).read_text(), (
            f"charts/inferpool-operator/files/crds/{name} differs from crds/{name}: run make crds")


@pytest.mark.parametrize("relaxed", [False, True], ids=["default", "privileged-templates"])
def test_chart_copies_match_the_generator(relaxed: bool) -> None:
    directory = FILES / ("crds-privileged" if relaxed else "crds")
    assert _names(directory) == NAMES
    for resource in crd.RESOURCES:
        expected = crd.render([crd.crd(resource, allow_privileged_templates=relaxed)])
        assert (directory / resource.filename).read_text() == expected, (
            f"{directory.relative_to(REPO)}/{resource.filename} is stale: run make crds")


def _exact(value: Any) -> str:
    """A comparison key that tells 1 from 1.0 and "1" (YAML round trips must not change types)."""
    return json.dumps(value, sort_keys=True)


def _rendered_crds(values: dict[str, str] | None = None,
                   json_values: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    docs = render(values, json_values=json_values)
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}


@pytest.mark.parametrize("relaxed", [False, True], ids=["default", "privileged-templates"])
def test_rendered_crds_are_the_files_plus_helm_metadata(relaxed: bool) -> None:
    json_values = {"operator.allowPrivilegedNamespaces": '["gpu-debug"]'} if relaxed else None
    rendered = _rendered_crds(json_values=json_values)
    directory = FILES / ("crds-privileged" if relaxed else "crds")
    assert sorted(rendered) == sorted(r.crd_name for r in crd.RESOURCES)
    for resource in crd.RESOURCES:
        source = yaml.safe_load((directory / resource.filename).read_text())
        got = rendered[resource.crd_name]
        assert _exact(got["spec"]) == _exact(source["spec"])
        assert {k: v for k, v in got.items() if k not in ("spec", "metadata")} == \
            {k: v for k, v in source.items() if k not in ("spec", "metadata")}
        meta = got["metadata"]
        assert meta["annotations"] == {**source["metadata"]["annotations"],
                                       "helm.sh/resource-policy": "keep"}
        assert meta["annotations"]["inferpool.dev/template-policy"] == (
            "operator" if relaxed else "api-server")
        added = {k: v for k, v in meta["labels"].items() if k not in source["metadata"]["labels"]}
        assert source["metadata"]["labels"].items() <= meta["labels"].items()
        assert added["app.kubernetes.io/managed-by"] == "Helm"
        assert set(added) == {"helm.sh/chart", "app.kubernetes.io/instance",
                              "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}


def test_crds_can_be_left_to_helm_uninstall_or_to_someone_else() -> None:
    for body in _rendered_crds({"crds.keep": "false"}).values():
        assert "helm.sh/resource-policy" not in body["metadata"]["annotations"]
    assert _rendered_crds({"crds.install": "false"}) == {}
