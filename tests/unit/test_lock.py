"""One lock for the venv, CI and the image: uv.lock matches pyproject.toml, every range is
bounded, and every installer reads the lock (no second list of pins anywhere)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _locked() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def _requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("inferpool-operator")]
    return reqs


def test_the_lock_matches_pyproject() -> None:
    done = subprocess.run([str(UV), "lock", "--check", "--offline"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"uv.lock is out of date; run `make lock`\n{done.stderr}"


def test_every_range_has_a_tested_upper_bound_that_admits_the_locked_version() -> None:
    locked = _locked()
    for req in _requirements():
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name.startswith("types-"):
            continue  # stub packages follow the library they describe
        assert any(s.operator in ("<", "<=", "==") for s in req.specifier), \
            f"{req}: no upper bound (bound it by what has been tested)"
        assert req.specifier.contains(locked[name]), f"{req}: locked {locked[name]} is outside"


def test_the_makefile_installs_the_locked_uv_from_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M)
    assert pinned is not None
    assert pinned.group(1) == _locked()["uv"]
    assert "uv sync" in makefile
    assert "--locked" in makefile


def test_the_image_installs_from_the_lock_with_hashes() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"uv=={_locked()['uv']}" in dockerfile
    assert "uv export" in dockerfile
    assert "--require-hashes" in dockerfile
    # no hand-kept pins: the only `name==version` is uv's own
    pins = re.findall(r"\b([A-Za-z][\w.-]*)==\d", dockerfile)
    assert pins == ["uv"], pins
    assert "uv.lock" in (REPO / ".dockerignore").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make test ") for line in readme)
    assert "make test" in (REPO / ".ci" / "run").read_text()
