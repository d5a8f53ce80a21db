"""PrometheusSource against an aiohttp server that emulates the Prometheus HTTP API."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from inferpool.scaling import (
    BasicAuth,
    FixedSource,
    PrometheusConfig,
    PrometheusSource,
    Reading,
    Reason,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"pod": f"p{i}"}, "value": [1.7e9, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@dataclass
class FakePrometheus:
    """Answers /api/v1/query with whatever the test sets; records what it was sent."""

    status: int = 200
    body: Any = field(default_factory=lambda: vector("1"))
    stall: bool = False
    requests: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.stall:
            await self.release.wait()  # set at teardown: slow, not hung forever
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return web.Response(status=self.status, text=text, content_type="application/json",
                            headers=self.headers)


@asynccontextmanager
async def fake_prometheus(
    prefix: str = "", tls: ssl.SSLContext | None = None
) -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus()
    app = web.Application()
    app.router.add_get(f"{prefix}/api/v1/query", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{prefix}"
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


async def read_once(fake: FakePrometheus, query: str = "up", **cfg: Any) -> Reading:
    async with PrometheusSource(PrometheusConfig(url=fake.url, query=query, **cfg)) as source:
        return await source.read()


async def scenario(
    body: Any = None, status: int = 200, **cfg: Any
) -> tuple[Reading, FakePrometheus]:
    """One read against a fake answering `status` with `body`."""
    async with fake_prometheus() as fake:
        fake.status = status
        if body is not None:
            fake.body = body
        return await read_once(fake, **cfg), fake


# --- good answers ---------------------------------------------------------------------------


def test_scalar_result() -> None:
    body = {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "42.5"]}}
    reading, _ = run(scenario(body))
    assert reading.ok
    assert reading.value == 42.5


def test_vector_samples_are_summed() -> None:
    reading, _ = run(scenario(vector("10.5", "20", "0.25")))
    assert reading.value == pytest.approx(30.75)
    assert "3 sample(s)" in reading.message


def test_query_is_sent_verbatim_with_server_side_timeout() -> None:
    query = 'sum(rate(vllm:request_success_total{model_name="llama-70b"}[1m])) + 2 * sum(x)'
    _, fake = run(scenario(query=query, timeout_seconds=2.5))
    (request,) = fake.requests
    assert request.query["query"] == query  # '+', quotes and braces survive the encoding
    assert request.query["timeout"] == "2.5s"


def test_bearer_token_is_sent() -> None:
    _, fake = run(scenario(bearer_token="s3cr3t"))
    assert fake.requests[0].headers["Authorization"] == "Bearer s3cr3t"


def test_basic_auth_is_sent() -> None:
    _, fake = run(scenario(basic_auth=BasicAuth("reader", "pw")))
    assert fake.requests[0].headers["Authorization"] == "Basic cmVhZGVyOnB3"  # reader:pw


def test_url_path_prefix_is_kept() -> None:
    async def go() -> Reading:
        async with fake_prometheus(prefix="/prometheus") as fake:
            return await read_once(fake)

    assert run(go()).ok


def test_redirects_are_not_followed() -> None:
    """The operator's URL allow-list checks the configured URL: a redirect must not move the
    query and its token elsewhere."""

    async def go() -> tuple[Reading, list[web.Request]]:
        async with fake_prometheus() as target, fake_prometheus() as fake:
            fake.status = 302
            fake.headers = {"Location": f"{target.url}/api/v1/query"}
            return await read_once(fake, bearer_token="s3cr3t"), target.requests

    reading, followed = run(go())
    assert reading.reason == Reason.HTTP_ERROR
    assert "HTTP 302" in reading.message
    assert "not followed" in reading.message
    assert followed == []


def test_secrets_stay_out_of_repr() -> None:
    cfg = PrometheusConfig(url="http://p:9090", query="up", bearer_token="s3cr3t")
    auth = PrometheusConfig(url="http://p:9090", query="up", basic_auth=BasicAuth("u", "pw"))
    assert "s3cr3t" not in repr(cfg)
    assert "pw" not in repr(auth)


def test_fixed_source() -> None:
    assert run(FixedSource(120.0).read()) == Reading.good(120.0, message="fixed demand")
    with pytest.raises(ValueError, match="negative"):
        FixedSource(-1.0)


# --- failures: each with a precise reason ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        (vector(), Reason.EMPTY_RESULT, "or vector(0)"),
        (vector("1", "NaN"), Reason.NOT_A_NUMBER, "NaN"),
        (vector("+Inf"), Reason.INFINITE, "inf"),
        (vector("+Inf", "-Inf"), Reason.INFINITE, "inf"),
        (vector("-3"), Reason.NEGATIVE, "negative"),
        ("<html>not json</html>", Reason.BAD_RESPONSE, "not a Prometheus API response"),
        ({"status": "success", "data": {}}, Reason.BAD_RESPONSE, "malformed"),
        (vector("twelve"), Reason.BAD_RESPONSE, "malformed"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            Reason.UNSUPPORTED_RESULT,
            "matrix",
        ),
    ],
)
def test_bad_results(body: Any, reason: Reason, says: str) -> None:
    reading, _ = run(scenario(body))
    assert not reading.ok
    assert reading.value is None
    assert reading.reason == reason
    assert says in reading.message


def test_http_500() -> None:
    reading, _ = run(scenario("upstream exploded", status=500))
    assert reading.reason == Reason.HTTP_ERROR
    assert "HTTP 500: upstream exploded" in reading.message


def test_bad_promql_is_rejected_with_prometheus_error_text() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    reading, _ = run(scenario(body, status=400))
    assert reading.reason == Reason.QUERY_REJECTED
    assert 'bad_data: parse error: unexpected "}"' in reading.message


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure(status: int) -> None:
    reading, _ = run(scenario("denied", status=status))
    assert reading.reason == Reason.UNAUTHORIZED


def test_slow_server_times_out() -> None:
    async def go() -> Reading:
        async with fake_prometheus() as fake:
            fake.stall = True
            return await read_once(fake, timeout_seconds=0.2)

    reading = run(go())
    assert reading.reason == Reason.TIMEOUT
    assert "no answer within 0.2s" in reading.message


def test_server_down() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = PrometheusConfig(url=f"http://user:pw@127.0.0.1:{port}", query="up")

    async def go() -> Reading:
        async with PrometheusSource(cfg) as source:
            return await source.read()

    reading = run(go())
    assert reading.reason == Reason.UNREACHABLE
    assert f"127.0.0.1:{port}/api/v1/query" in reading.message
    assert "pw" not in reading.message


def test_a_shared_session_is_not_closed() -> None:
    async def go() -> bool:
        async with fake_prometheus() as fake, aiohttp.ClientSession() as session:
            cfg = PrometheusConfig(url=fake.url, query="up")
            source = PrometheusSource(cfg, session=session)
            assert (await source.read()).ok
            await source.aclose()
            return session.closed

    assert run(go()) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://p", "query": "up"},
        {"url": "http://p", "query": " "},
        {"url": "http://p", "query": "up", "timeout_seconds": 0},
        {"url": "http://p", "query": "up", "bearer_token": "t", "basic_auth": BasicAuth("u", "p")},
        {"url": "http://p", "query": "up", "key_file": "k.pem"},
    ],
)
def test_invalid_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        PrometheusConfig(**kwargs)


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_read(cert: Path, key: Path, **cfg: Any) -> Reading:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def go() -> Reading:
        async with fake_prometheus(tls=server_ctx) as fake:
            return await read_once(fake, **cfg)

    return run(go())


def test_tls_with_ca_file(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    assert tls_read(cert, key, ca_file=str(cert)).ok


def test_tls_unknown_ca_fails(self_signed: tuple[Path, Path]) -> None:
    reading = tls_read(*self_signed)
    assert reading.reason == Reason.TLS_ERROR
    assert "certificate" in reading.message.lower()


def test_tls_insecure_skip_verify(self_signed: tuple[Path, Path]) -> None:
    assert tls_read(*self_signed, insecure_skip_verify=True).ok


def test_tls_missing_ca_file(self_signed: tuple[Path, Path], tmp_path: Path) -> None:
    reading = tls_read(*self_signed, ca_file=str(tmp_path / "nope.pem"))
    assert reading.reason == Reason.TLS_CONFIG_INVALID


def test_scaling_package_does_no_kubernetes_io() -> None:
    # The import-linter contract says the same; this also holds where lint-imports is not run.
    code = (
        "import sys, inferpool.scaling; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
