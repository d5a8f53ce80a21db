"""`make image` on this machine: our own dockerd, a Debian-built base, the repository's
Dockerfile, and the checks the chart relies on. The second test shows the checks can fail: an
image that runs as root is refused with the failed check named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inferpool.sandbox import image
from inferpool.sandbox.docker_engine import DockerEngine
from inferpool.sandbox.errors import SandboxError

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    engine = DockerEngine.ensure(log=lambda message: None)
    yield engine
    engine.stop()


@pytest.mark.timeout(1500)  # a fresh machine debootstraps the base first (about 5 min)
def test_the_operator_image_builds_from_the_dockerfile_and_passes_its_checks(
        engine: DockerEngine) -> None:
    report = image.build(engine, ROOT, "inferpool-operator:test", log=lambda message: None)

    assert report.user == "65532:65532"
    assert all(report.checks.values()), report.checks
    assert 100 < report.size_mb < 1000


@pytest.mark.timeout(600)
def test_an_image_running_as_root_fails_the_checks(engine: DockerEngine, tmp_path: Path) -> None:
    base = image.ensure_base(engine)
    (tmp_path / "Dockerfile").write_text(
        "ARG PYTHON_IMAGE\nFROM ${PYTHON_IMAGE}\nENTRYPOINT [\"python\"]\n")

    with pytest.raises(SandboxError, match="numeric non-root user"):
        image.build(engine, tmp_path, "inferpool-root:test", base=base, log=lambda message: None)
