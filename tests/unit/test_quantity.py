"""One quantity parser: the same answers as the client library's, and bad values never raise
where the operator counts resources."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from kubernetes.utils import parse_quantity as library_parse

from inferpool.cluster import build_snapshot
from inferpool.cluster import quantity as q
from inferpool.controller.health import accelerators_in_use, pod_accelerators
from inferpool.controller.planner import _in_use_by_pool
from tests.unit.test_snapshot import node, pod

NUMBERS = ["0", "1", "8", "16", "1.5", "2.", ".5", "-1", "+2", "1e3", "1E3", "1e", "0x10",
           "1_000", " 1", "1 ", "", "inf", "Infinity", "-inf", "NaN", "nan", "sNaN", "abc",
           "\uff11", "1e-3", "9" * 30]
SUFFIXES = ["", "n", "u", "m", "k", "K", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi",
            "Ei", "ki", "mi", "ni", "ui", "i", "x", "KK", "Kii", "e3"]


def _outcome(parse: Any, value: Any) -> tuple[str, Any]:
    try:
        result = parse(value)
    except ValueError:
        return ("ValueError", None)
    if isinstance(result, Decimal) and result.is_nan():
        return ("nan", None)
    return ("ok", result)


@pytest.mark.parametrize("value", [
    *("".join(p) for p in itertools.product(NUMBERS, SUFFIXES)),
    0, 3, 2.5, Decimal("7"), float("inf"), -4,
])
def test_parse_quantity_is_the_client_librarys(value: Any) -> None:
    assert _outcome(q.parse_quantity, value) == _outcome(library_parse, value)


@pytest.mark.parametrize(("value", "whole", "up", "milli"), [
    ("8", 8, 8, 8000), ("1k", 1000, 1000, 1_000_000), ("500m", 0, 1, 500),
    ("16Gi", 16 * 2**30, 16 * 2**30, 16 * 2**30 * 1000), (4, 4, 4, 4000),
    ("1.5", 1, 2, 1500), ("bogus", 0, 0, 0), ("-1", 0, 0, 0), ("inf", 0, 0, 0),
    ("NaN", 0, 0, 0), (None, 0, 0, 0), (True, 0, 0, 0), ("1ki", 0, 0, 0), ([], 0, 0, 0),
])
def test_counting_helpers_never_raise(value: Any, whole: int, up: int, milli: int) -> None:
    assert q.count(value) == whole
    assert q.count(value, round_up=True) == up
    assert q.milli(value) == milli


# --- the three places that used to parse on their own ---------------------------------------


def _our_pod(node_name: str, amount: Any, resource: str = "nvidia.com/gpu") -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": "ns", "labels": {
            "inferpool.dev/pool": "m", "inferpool.dev/variant": "v",
            "inferpool.dev/node-pool": "h100"}},
        "spec": {"nodeName": node_name, "containers": [
            {"name": "c", "resources": {"limits": {resource: amount},
                                        "requests": {resource: amount}}}]},
        "status": {"phase": "Running"},
    }


def test_discovery_reads_suffixed_quantities() -> None:
    # "1k" used to count as 0 in discovery: a node offering nothing, a pod using nothing
    nodes = [node("big", {"inferpool.dev/node-pool": "big"}, {"nvidia.com/gpu": "1k"})]
    snap = build_snapshot(nodes, [pod("big", "nvidia.com/gpu", 8)])
    assert snap.nodes[0].allocatable == 1000
    other = pod("big", "nvidia.com/gpu", 0)
    other["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "1k"
    assert build_snapshot(nodes, [other]).nodes[0].used_by_others == 1000


def test_discovery_counts_a_bad_quantity_as_nothing() -> None:
    nodes = [node("n", {"inferpool.dev/node-pool": "p"}, {"nvidia.com/gpu": "8"})]
    bad = pod("n", "nvidia.com/gpu", 0)
    bad["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "eight"
    assert build_snapshot(nodes, [bad]).nodes[0].used_by_others == 0


@pytest.mark.parametrize(("amount", "expected"), [("2", 2), ("1k", 1000), ("eight", 0),
                                                  ("-3", 0), (4, 4)])
def test_stockout_cap_parses_like_the_rest(amount: Any, expected: int) -> None:
    # int(str("1k")) raised ValueError inside the engine phase
    assert accelerators_in_use([_our_pod("h100-0", amount)], "h100") == expected


@pytest.mark.parametrize(("amount", "expected"), [("2", 2), ("1k", 1000), ("eight", 0)])
def test_status_phase_in_use_never_raises(amount: Any, expected: int) -> None:
    # int(str("1k")) raised inside the status phase and failed the whole reconcile
    pods = [_our_pod("h100-0", amount)]
    assert pod_accelerators(pods[0]) == expected
    nodes = {"h100-0": {"metadata": {"name": "h100-0", "labels": {"pool": "h100"}}}}
    aps = [{"metadata": {"name": "ap"}, "spec": {"nodeSelector": {"pool": "h100"}}}]
    assert _in_use_by_pool(pods, nodes, aps) == {"ap": expected}


def test_bad_quantities_are_reported_not_fatal() -> None:
    from inferpool.controller import planning

    nodes = [node("n", {"inferpool.dev/node-pool": "p"}, {"nvidia.com/gpu": "lots"})]
    bad = _our_pod("n", "1kk")
    inputs = planning.read_cluster({"nodes": nodes, "pods": [bad]})
    assert inputs.snapshot.nodes == ()  # no accelerator it can count: not an accelerator node
    assert inputs.problems == (
        "node n: status.allocatable[nvidia.com/gpu]='lots' is not a quantity; counted as 0",
        "node n: status.capacity[nvidia.com/gpu]='lots' is not a quantity; counted as 0",
        "pod ns/x: limits[nvidia.com/gpu]='1kk' is not a quantity; counted as 0",
        "pod ns/x: requests[nvidia.com/gpu]='1kk' is not a quantity; counted as 0",
    )
