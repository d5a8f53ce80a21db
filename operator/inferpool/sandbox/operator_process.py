"""Run `inferpool run` as a separate process against a sandbox (tests, benchmarks, the demo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferpool.sandbox.processes import free_port


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_dir: Path, identity: str, *extra: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.identity = identity
        self.env = dict(env or {})
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"operator-{identity}.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.args = [
            sys.executable, "-m", "inferpool.cli", "run", f"--kubeconfig={kubeconfig}",
            f"--identity={identity}", "--lease-namespace=default", "--tick-seconds=5",
            f"--metrics-port={self.metrics_port}", f"--health-port={self.health_port}",
            "--log-format=json", *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        return self

    def kill(self) -> None:
        """SIGKILL: as when the pod is OOM-killed or its node dies (no clean lease release)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"event": raw, "unparsed": True})
        return lines

    def said(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.log_lines())

    def wait_leader(self, timeout: float = 30) -> None:
        """Until this operator leads and plans: it holds the Lease and its caches are complete
        (`/readyz` answers "leader")."""
        deadline = time.monotonic() + timeout
        while not (self.said("became leader") and self.said("caches complete")):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"operator {self.identity} exited; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator {self.identity} not leader after {timeout:.0f} s")
            time.sleep(0.2)


def install_crds(kubectl: Path, kubeconfig: Path) -> None:
    """Install the CRDs generated from the models (the same as crds/ and the chart's)."""
    from inferpool.api.crd import generate_crds, render

    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    subprocess.run([*base, "apply", "--server-side", "--force-conflicts", "-f", "-"],
                   input=render(generate_crds()).encode(), check=True, capture_output=True)
    wait_established(kubectl, kubeconfig)


CRD_NAMES = ("inferencepools.inferpool.dev", "acceleratorpools.inferpool.dev")


def wait_established(kubectl: Path, kubeconfig: Path, names: tuple[str, ...] = CRD_NAMES,
                     timeout: float = 60) -> None:
    """`kubectl wait --for=condition=Established`, retried: until the API server has looked at
    a new CRD it has no conditions at all, and `kubectl wait` fails at once on that."""
    deadline = time.monotonic() + timeout
    for crd in names:
        while True:
            done = subprocess.run([str(kubectl), f"--kubeconfig={kubeconfig}", "wait",
                                   "--for=condition=Established", f"crd/{crd}", "--timeout=10s"],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {crd} not Established: {done.stderr.strip()}")
            time.sleep(0.5)
