"""Load sources: where the demand in requests/s comes from.

A source never raises for an operational failure (down, slow, empty, NaN, HTTP error): it returns
a failed `Reading` with a CamelCase reason usable as a Kubernetes condition reason, so the tracker
can hold the last good value and the operator can say exactly why.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
from yarl import URL


class Reason(StrEnum):
    """Why a reading failed. Values are condition reasons (CamelCase, no spaces)."""

    UNREACHABLE = "SourceUnreachable"  # connection refused, DNS failure, reset
    TIMEOUT = "SourceTimeout"  # no complete answer within the timeout
    TLS_ERROR = "TLSError"  # handshake or certificate verification failed
    TLS_CONFIG_INVALID = "TLSConfigInvalid"  # CA or client certificate files unusable
    UNAUTHORIZED = "Unauthorized"  # HTTP 401/403: token or password wrong or missing
    QUERY_REJECTED = "QueryRejected"  # HTTP 400/422: the PromQL does not parse or evaluate
    HTTP_ERROR = "HTTPError"  # any other non-200 status
    BAD_RESPONSE = "BadResponse"  # not the JSON shape of the Prometheus HTTP API
    UNSUPPORTED_RESULT = "UnsupportedResultType"  # a range vector or string instead of a number
    EMPTY_RESULT = "EmptyResult"  # the query matched no series
    NOT_A_NUMBER = "NotANumber"  # NaN, e.g. 0/0 in a ratio query
    INFINITE = "InfiniteValue"
    NEGATIVE = "NegativeValue"  # demand cannot be negative: the query is wrong


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer from a load source: demand in requests/s, or why there is none."""

    value: float | None
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None

    @classmethod
    def good(cls, value: float, message: str = "") -> Reading:
        problem = _invalid_demand(value)
        if problem is not None:
            raise ValueError(f"not a valid demand: {problem[1]}")
        return cls(value=float(value), message=message)

    @classmethod
    def failed(cls, reason: str, message: str) -> Reading:
        return cls(value=None, reason=reason, message=message)


class LoadSource(Protocol):
    """Anything that can tell the current demand. `read` must not raise for source failures."""

    async def read(self) -> Reading: ...


def _invalid_demand(value: float) -> tuple[Reason, str] | None:
    if math.isnan(value):
        return Reason.NOT_A_NUMBER, "value is NaN"
    if math.isinf(value):
        return Reason.INFINITE, f"value is {value}"
    if value < 0:
        return Reason.NEGATIVE, f"value {value} is negative"
    return None


class FixedSource:
    """Demand set by hand (`spec.demand.fixed`)."""

    def __init__(self, rps: float) -> None:
        self._reading = Reading.good(rps, message="fixed demand")

    async def read(self) -> Reading:
        return self._reading


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """How to reach a Prometheus-compatible HTTP API. Secrets are plain values here: the k8s layer
    resolves Secret references, so this package stays free of Kubernetes I/O."""

    url: str  # base URL, path prefix allowed: http://prometheus.monitoring:9090, https://h/prom
    query: str  # must evaluate to demand in requests/s (see docs/scaling.md)
    timeout_seconds: float = 5.0
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: BasicAuth | None = None
    ca_file: str | None = None  # PEM bundle to verify the server instead of the system store
    cert_file: str | None = None  # client certificate for mutual TLS
    key_file: str | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        if URL(self.url).scheme not in ("http", "https"):
            raise ValueError(f"Prometheus URL must be http(s)://, got {self.url!r}")
        if not self.query.strip():
            raise ValueError("Prometheus query is empty")
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be > 0")
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("give a bearer token or basic auth, not both")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")


class PrometheusSource:
    """Demand from a Prometheus instant query (`GET {url}/api/v1/query`).

    The result must be a scalar or an instant vector. A vector's samples are summed: demand is
    additive across replicas, and a query that forgets `sum(...)` returns one series per pod, so
    refusing several series would break exactly when the pool scales out. Write `sum(...)` anyway
    to keep the answer small.
    """

    def __init__(
        self, config: PrometheusConfig, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.config = config
        self._session = session
        self._owns_session = session is None
        # Where messages point: never the credentials in the URL.
        self._endpoint = URL(config.url) / "api/v1/query"
        self._where = str(self._endpoint.with_user(None).with_password(None))
        self._ssl: ssl.SSLContext | None = None
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if config.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {config.bearer_token}"
        if config.basic_auth is not None:
            # Encoded here: aiohttp's BasicAuth helper is deprecated and due to go in 4.0.
            pair = f"{config.basic_auth.username}:{config.basic_auth.password}".encode()
            self._headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session if this source created it (a passed-in one is the caller's)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_option(self) -> ssl.SSLContext | bool:
        # Built on first use, so a bad CA file is a failed reading, not a crash in __init__.
        if self._ssl is None:
            cfg = self.config
            if cfg.insecure_skip_verify:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=cfg.ca_file)
            if cfg.cert_file is not None:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
            self._ssl = ctx
        return self._ssl

    async def read(self, *, bearer_token: str | None = None) -> Reading:
        """`bearer_token`: sent instead of the configured one (a token read just before)."""
        cfg = self.config
        headers = self._headers
        if bearer_token is not None:
            headers = {**headers, "Authorization": f"Bearer {bearer_token}"}
        try:
            tls = self._ssl_option() if self._endpoint.scheme == "https" else True
        except (OSError, ssl.SSLError) as err:
            return Reading.failed(Reason.TLS_CONFIG_INVALID, f"TLS files for {self._where}: {err}")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        params = {"query": cfg.query, "timeout": f"{cfg.timeout_seconds:g}s"}
        try:
            async with self._session.get(
                self._endpoint,
                params=params,
                headers=headers,
                ssl=tls,
                timeout=aiohttp.ClientTimeout(total=cfg.timeout_seconds),
                # The URL allow-list checks the configured URL: a redirect must not lead the
                # query (and its credentials) anywhere else.
                allow_redirects=False,
            ) as resp:
                status = resp.status
                body = await resp.read()
                location = resp.headers.get("Location", "")
        # Order matters: aiohttp's timeout and TLS errors subclass the broader ones below.
        except TimeoutError:
            return Reading.failed(
                Reason.TIMEOUT, f"GET {self._where}: no answer within {cfg.timeout_seconds:g}s"
            )
        except (aiohttp.ClientSSLError, ssl.SSLError) as err:
            return Reading.failed(Reason.TLS_ERROR, f"GET {self._where}: {err}")
        except aiohttp.ClientError as err:
            return Reading.failed(
                Reason.UNREACHABLE, f"GET {self._where}: {type(err).__name__}: {err}"
            )
        if 300 <= status < 400:
            return Reading.failed(Reason.HTTP_ERROR, f"GET {self._where}: HTTP {status}: "
                                  f"redirect to {location!r} not followed (give the final URL)")
        return self._parse(status, body)

    def _parse(self, status: int, body: bytes) -> Reading:
        where = f"GET {self._where}"
        try:
            doc: Any = json.loads(body)
        except ValueError:
            doc = None
        if status != 200:
            detail = _error_text(doc) or body[:200].decode("utf-8", "replace").strip()
            if status in (401, 403):
                return Reading.failed(Reason.UNAUTHORIZED, f"{where}: HTTP {status}: {detail}")
            if status in (400, 422):
                return Reading.failed(Reason.QUERY_REJECTED, f"{where}: HTTP {status}: {detail}")
            return Reading.failed(Reason.HTTP_ERROR, f"{where}: HTTP {status}: {detail}")
        if not isinstance(doc, dict) or doc.get("status") != "success":
            detail = _error_text(doc) or "not a Prometheus API response"
            return Reading.failed(Reason.BAD_RESPONSE, f"{where}: {detail}")
        try:
            return self._value(doc["data"])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            return Reading.failed(Reason.BAD_RESPONSE, f"{where}: malformed data: {err!r}")

    def _value(self, data: dict[str, Any]) -> Reading:
        kind = data["resultType"]
        result = data["result"]
        if kind == "scalar":
            samples = [float(result[1])]
        elif kind == "vector":
            if not result:
                return Reading.failed(
                    Reason.EMPTY_RESULT,
                    f"query matched no series: {self.config.query} "
                    "(append `or vector(0)` if no series means no demand)",
                )
            samples = [float(item["value"][1]) for item in result]
        else:
            return Reading.failed(
                Reason.UNSUPPORTED_RESULT,
                f"query returned a {kind}, need a scalar or instant vector: {self.config.query}",
            )
        # Check samples one by one: inf + -inf would otherwise surface as a bare fsum error.
        bad = next((s for s in samples if not math.isfinite(s)), None)
        total = math.fsum(samples) if bad is None else bad
        problem = _invalid_demand(total)
        if problem is not None:
            reason, text = problem
            return Reading.failed(reason, f"{text} for query: {self.config.query}")
        return Reading.good(total, message=f"{len(samples)} sample(s) from {self._where}")


def _error_text(doc: Any) -> str:
    """The `error` field of a Prometheus error response, if there is one."""
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        kind = doc.get("errorType")
        return f"{kind}: {doc['error']}" if isinstance(kind, str) else str(doc["error"])
    return ""
