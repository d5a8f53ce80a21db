"""The metrics port's security: bearer-token authorization of /metrics (the probes stay open),
HTTPS with a given certificate, and the bind address."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferpool.controller.metrics import MetricsServer, OperatorMetrics, tls_context
from inferpool.k8s.metrics_auth import Decision
from tests.unit.test_scaling_sources import self_signed  # noqa: F401  (a fixture)

TOKENS = {"reader": Decision(200, "allowed"), "nobody": Decision(403, "nobody may not get"),
          "broken": Decision(503, "cannot check")}


def authorize(token: str) -> Decision:
    return TOKENS.get(token, Decision(401, "the token is not valid"))


def fetch(url: str, token: str | None = None, context: ssl.SSLContext | None = None
          ) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5,
                                    context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def guarded() -> Iterator[int]:
    srv = MetricsServer(OperatorMetrics().registry, lambda: (True, "leader"), port=0,
                        host="127.0.0.1", authorize=authorize).start()
    try:
        yield srv.port
    finally:
        srv.stop()


def test_metrics_need_an_allowed_token_and_the_probes_do_not(guarded: int) -> None:
    base = f"http://127.0.0.1:{guarded}"
    assert fetch(f"{base}/metrics")[0] == 401
    assert fetch(f"{base}/metrics", "forged")[0] == 401
    assert fetch(f"{base}/metrics", "nobody") == (403, "nobody may not get\n")
    assert fetch(f"{base}/", "nobody")[0] == 403  # the same page under another path
    assert fetch(f"{base}/metrics", "broken")[0] == 503
    status, body = fetch(f"{base}/metrics", "reader")
    assert status == 200
    assert "inferpool_build_info" in body
    assert fetch(f"{base}/readyz") == (200, "leader\n")
    assert fetch(f"{base}/healthz")[0] == 200


def test_https_with_the_given_certificate(self_signed: tuple[Path, Path]) -> None:  # noqa: F811
    cert, key = self_signed
    srv = MetricsServer(OperatorMetrics().registry, lambda: (True, "leader"), port=0,
                        host="127.0.0.1", tls=tls_context(str(cert), str(key))).start()
    try:
        # a client that opens a connection and never starts TLS holds up no one else
        with socket.create_connection(("127.0.0.1", srv.port)):
            trusted = ssl.create_default_context(cafile=str(cert))
            status, body = fetch(f"https://127.0.0.1:{srv.port}/metrics", context=trusted)
            assert status == 200
            assert "inferpool_build_info" in body
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no answer
            fetch(f"http://127.0.0.1:{srv.port}/metrics")
    finally:
        srv.stop()


def test_bind_address_is_the_one_listened_on() -> None:
    srv = MetricsServer(OperatorMetrics().registry, lambda: (True, ""), port=0,
                        host="127.0.0.2").start()
    try:
        assert fetch(f"http://127.0.0.2:{srv.port}/healthz")[0] == 200
        with pytest.raises(urllib.error.URLError):
            fetch(f"http://127.0.0.1:{srv.port}/healthz")
    finally:
        srv.stop()
