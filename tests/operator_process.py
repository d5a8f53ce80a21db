"""Operator-process helpers for tests (the runner itself lives in the package)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from inferpool.sandbox import operator_process
from inferpool.sandbox.operator_process import OperatorProcess as _Process
from tests.support import Sandbox


class OperatorProcess(_Process):
    def __init__(self, sandbox: Sandbox, log_dir: Path, identity: str, *extra: str,
                 env: Mapping[str, str] | None = None, kubeconfig: Path | None = None) -> None:
        super().__init__(kubeconfig or sandbox.kubeconfig, log_dir, identity, *extra, env=env)


def install_crds(sandbox: Sandbox) -> None:
    operator_process.install_crds(sandbox.kubectl_path, sandbox.kubeconfig)


def running_operator(sandbox: Sandbox, log_dir: Path, identity: str,
                     *extra: str) -> Iterator[OperatorProcess]:
    install_crds(sandbox)
    op = OperatorProcess(sandbox, log_dir, identity, *extra).start()
    try:
        op.wait_leader()
        yield op
    finally:
        op.stop()
