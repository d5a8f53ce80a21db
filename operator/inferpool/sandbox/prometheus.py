"""A real Prometheus for tests and the demo: Debian's binary, our own process on loopback,
a driven exporter.

    binary = ensure_prometheus()
    with Exporter() as exporter, PrometheusProcess([exporter.target], binary=binary) as prom:
        exporter.set_rate(30.0, model_name="llama")   # vllm:request_success_total grows 30/s
        prom.query('sum(rate(vllm:request_success_total[5s]))')  # -> about 30

The system service is never started or touched: each PrometheusProcess is a child process with
its own config, data directory and port, removed on close.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from inferpool.sandbox import debian
from inferpool.sandbox.errors import SandboxError

VLLM_SUCCESS = "vllm:request_success_total"
VLLM_WAITING = "vllm:num_requests_waiting"


class PrometheusUnavailableError(RuntimeError):
    """No prometheus binary, and we may not install one (not root)."""


def ensure_prometheus() -> Path:
    """Path to a prometheus binary; as root, install Debian's package if there is none."""
    try:
        debian.ensure_commands({"prometheus": "prometheus"})
        return Path(debian.command_path("prometheus"))
    except SandboxError as exc:
        raise PrometheusUnavailableError(str(exc)) from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exporter:
    """`/metrics` in Prometheus text format on 127.0.0.1, with counters that grow at a set rate
    (so `rate()` returns exactly that rate) and plain gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (name, sorted labels) -> (value at `since`, rate per second, since)
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float, float]]
        self._counters = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per scrape would drown the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static_config target."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def set_rate(self, per_second: float, name: str = VLLM_SUCCESS, **labels: str) -> None:
        """From now on the counter grows by `per_second`; its value so far is kept (no reset)."""
        key = (name, tuple(sorted(labels.items())))
        now = time.monotonic()
        with self._lock:
            value = self._counter_value(key, now)
            self._counters[key] = (value, per_second, now)

    def set_gauge(self, value: float, name: str = VLLM_WAITING, **labels: str) -> None:
        with self._lock:
            self._gauges[(name, tuple(sorted(labels.items())))] = value

    def _counter_value(self, key: tuple[str, tuple[tuple[str, str], ...]], now: float) -> float:
        base, rate, since = self._counters.get(key, (0.0, 0.0, now))
        return base + rate * (now - since)

    def render(self) -> str:
        now = time.monotonic()
        lines: list[str] = []
        with self._lock:
            for kind, names in (("counter", self._counters), ("gauge", self._gauges)):
                for family in sorted({name for name, _ in names}):
                    lines.append(f"# TYPE {family} {kind}")
                    for key in sorted(k for k in names if k[0] == family):
                        value = (
                            self._counter_value(key, now)
                            if kind == "counter"
                            else self._gauges[key]
                        )
                        lines.append(f"{family}{_labels(dict(key[1]))} {value!r}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PrometheusProcess:
    """Our own Prometheus: temp config scraping `targets` every second, temp TSDB, loopback port.
    `stop()` and `start()` again (same port, same data) simulate an outage."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        binary: Path | None = None,
        scrape_interval_seconds: float = 1.0,
        port: int | None = None,
        rule_files: Sequence[Path] = (),
    ) -> None:
        self.binary = binary or ensure_prometheus()
        self.targets = list(targets)
        self.port = port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="inferpool-prometheus-"))
        self.log_path = self.workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None
        interval = f"{scrape_interval_seconds:g}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": "exporter", "static_configs": [{"targets": self.targets}]}
            ],
            # alerting rules are evaluated (ALERTS series) even with no Alertmanager
            "rule_files": [str(f) for f in rule_files],
        }
        # JSON is YAML: no YAML dependency needed for a config this small.
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        # Own loop rather than wait_for: an early exit must fail at once, with the log.
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running:
                raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"prometheus not ready after {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the `result` list (raises on an API error)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = json.load(resp)
        if doc.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {doc}")
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def wait_until_up(self, timeout: float = 30.0) -> None:
        """Until every target has been scraped successfully at least once."""

        def all_up() -> bool:
            try:
                up = {r["metric"]["instance"]: r["value"][1] for r in self.query("up")}
            except (OSError, ValueError, KeyError):
                return False  # not serving queries yet
            return all(up.get(t) == "1" for t in self.targets)

        deadline = time.monotonic() + timeout
        while not all_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"targets {self.targets} not up after {timeout:.0f} s")
            time.sleep(0.2)

    def __enter__(self) -> Self:
        """Started and answering (`wait_until_up`)."""
        try:
            self.start()
            self.wait_until_up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
