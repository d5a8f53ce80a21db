"""The Prometheus bearer-token Secret read against the real API server: a rotated token is what
the next read returns, and every reason a Secret is not used is said in words."""

from __future__ import annotations

import asyncio
import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client, config

from inferpool.k8s import secrets
from inferpool.scaling.sources import Reading
from tests.support import Sandbox

pytestmark = pytest.mark.sandbox


def secret(name: str, token: str, labelled: bool = True) -> str:
    labels = {secrets.USAGE_LABEL: secrets.USAGE} if labelled else {}
    return json.dumps({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": name, "labels": labels},
                       "data": {"token": base64.b64encode(token.encode()).decode()}})


def test_a_rotated_token_is_read_at_once_and_unusable_secrets_are_named(
        sandbox: Sandbox, namespace: str) -> None:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(sandbox.kubeconfig)))
    executor = ThreadPoolExecutor(max_workers=2)

    def read(name: str, key: str = "token") -> str | Reading:
        return asyncio.run(secrets.read_token(core, executor, namespace, name, key, timeout=5))

    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=secret("prom", "first"))
    assert read("prom") == "first"
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=secret("prom", "rotated"))
    assert read("prom") == "rotated"  # nothing cached: the next read after the rotation

    sandbox.kubectl("apply", "-n", namespace, "-f", "-",
                    input=secret("unlabelled", "x", labelled=False))
    for name, key, words in (("missing", "token", "does not exist"),
                             ("unlabelled", "token", "lacks the label inferpool.dev/usage"),
                             ("prom", "other", "has no key 'other'")):
        reading = read(name, key)
        assert isinstance(reading, Reading)
        assert reading.reason == secrets.REASON
        assert words in (reading.message or ""), reading
