"""Watched namespaces the operator may not read are left out and reported, never fatal
(inferpool.controller.namespaces); the sandbox twin is tests/sandbox/test_chart_namespaced.py."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes.client.exceptions import ApiException

from inferpool.controller import namespaces


def probe_refusing(refused: dict[tuple[str, str], int]) -> namespaces.Probe:
    def probe(resource: str, ns: str) -> None:
        status = refused.get((resource, ns)) or refused.get(("*", ns))
        if status:
            raise ApiException(status=status, reason="Forbidden" if status == 403 else "Error")

    return probe


def test_a_forbidden_namespace_is_left_out_with_the_reason() -> None:
    ok, refused = namespaces.readable(
        ("team-a", "team-b", "team-c"), probe_refusing({("deployments", "team-b"): 403}))
    assert ok == ("team-a", "team-c")
    assert refused == {"team-b": "deployments: 403 Forbidden"}


def test_every_watched_resource_is_checked() -> None:
    for resource in namespaces.WATCHED:
        ok, refused = namespaces.readable(("a",), probe_refusing({(resource, "a"): 403}))
        assert ok == ()
        assert resource in refused["a"]


def test_other_errors_are_no_verdict() -> None:
    with pytest.raises(ApiException):
        namespaces.readable(("a", "b"), probe_refusing({("*", "b"): 500}))


def test_wait_readable_asks_again_until_a_namespace_is_readable() -> None:
    calls: list[str] = []

    def probe(resource: str, ns: str) -> None:
        calls.append(ns)
        if len(calls) < 3:  # the first round: forbidden (RBAC not bound yet); then an error
            raise ApiException(status=403 if len(calls) == 1 else 503, reason="x")

    got = asyncio.run(namespaces.wait_readable(("a",), probe, asyncio.Event(), 0.01))
    assert got == ("a",)


def test_wait_readable_returns_nothing_once_stopped() -> None:
    async def run() -> tuple[str, ...]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await namespaces.wait_readable(
            ("a",), probe_refusing({("*", "a"): 403}), stop, 0.01)

    assert asyncio.run(run()) == ()
