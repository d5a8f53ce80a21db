"""Fixtures the tests that run operator instances of their own share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.operator_process import OperatorProcess, install_crds
from tests.support import Sandbox


@pytest.fixture
def ops(sandbox: Sandbox) -> Iterator[list[OperatorProcess]]:
    """Operator instances a test starts (appends); each is stopped at the end."""
    install_crds(sandbox)
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.stop()


@pytest.fixture
def ns(sandbox: Sandbox, namespace: str) -> Iterator[str]:
    """The test's namespace; its InferencePools are deleted (and waited for) at the end."""
    yield namespace
    sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
