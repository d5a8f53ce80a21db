"""Run the operator as a separate process against a sandbox, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferpool.sandbox.processes import free_port
from tests.support import Sandbox, wait_for

REPO = Path(__file__).resolve().parents[1]


class OperatorProcess:
    def __init__(self, sandbox: Sandbox, log_dir: Path, identity: str, *extra: str) -> None:
        self.identity = identity
        self.log_path = log_dir / f"operator-{identity}.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.args = [
            sys.executable, "-m", "inferpool.cli", "run", f"--kubeconfig={sandbox.kubeconfig}",
            f"--identity={identity}", "--lease-namespace=default", "--tick-seconds=5",
            f"--metrics-port={self.metrics_port}", f"--health-port={self.health_port}",
            "--log-format=json", *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
        wait_for(lambda: self.said("became leader"), timeout=timeout,
                 what=f"operator {self.identity} to become leader")


def install_crds(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for crd in ("inferencepools.inferpool.dev", "acceleratorpools.inferpool.dev"):
        sandbox.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


def running_operator(sandbox: Sandbox, log_dir: Path, identity: str,
                     *extra: str) -> Iterator[OperatorProcess]:
    install_crds(sandbox)
    op = OperatorProcess(sandbox, log_dir, identity, *extra).start()
    try:
        op.wait_leader()
        yield op
    finally:
        op.stop()
