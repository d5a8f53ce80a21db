"""`make image`: the operator image, built from the repository's Dockerfile and checked.

Where the Dockerfile's base (`python:3.11-slim-bookworm` from Docker Hub) cannot be pulled, as on
a machine that reaches only package registries, a stand-in base is made from Debian's own
packages: `debootstrap` of bookworm with python3 and python3-venv (the same Python 3.11 the
official image is based on), imported with `docker import`, and passed as the Dockerfile's
`PYTHON_IMAGE` build argument. It carries this machine's CA bundle so that the build stage's
`pip`/`uv` reach PyPI through the same TLS trust as the host. A user with internet access builds
the same Dockerfile with the official base (`--base python:3.11.13-slim-bookworm`).

The checks are what the chart relies on: a numeric non-root user (`runAsNonRoot` verifies it),
a read-only root filesystem with no writable /tmp at all, the CLI and every module the operator
imports at start working there, and the image's size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from inferpool.sandbox import debian
from inferpool.sandbox.docker_engine import DockerEngine, Log
from inferpool.sandbox.errors import SandboxError

DEFAULT_TAG = "inferpool-operator:dev"
BASE_TAG = "inferpool-base:bookworm-python3.11"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Nothing at run time reads these; dropping them keeps the base near the official slim image.
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
        "usr/share/locale", "usr/share/info")
# What `inferpool run` imports before it talks to a cluster: kopf, the client, HiGHS.
START_IMPORTS = ("inferpool.controller.run", "inferpool.controller.handlers",
                 "inferpool.placement.linear")


@dataclass(frozen=True)
class ImageReport:
    tag: str
    base: str
    user: str
    size_mb: float
    build_seconds: float
    checks: dict[str, bool]


def has_image(engine: DockerEngine, tag: str) -> bool:
    return engine.docker("image", "inspect", tag, check=False).returncode == 0


def ensure_base(engine: DockerEngine, log: Log = print, tag: str = BASE_TAG) -> str:
    """The stand-in base image from Debian packages, made once and kept in our engine."""
    if has_image(engine, tag):
        return tag
    debian.ensure_commands({"debootstrap": "debootstrap"})
    with tempfile.TemporaryDirectory(dir=engine.root, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        log(f"debootstrap {SUITE} with {', '.join(BASE_PACKAGES)} (a few minutes, once)")
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(rootfs), MIRROR], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SandboxError(f"debootstrap failed:\n{(done.stdout + done.stderr)[-2000:]}")
        for relative in TRIM:
            for entry in (rootfs / relative).glob("*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        if HOST_CA_BUNDLE.is_file():
            shutil.copyfile(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"))
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True,
                             check=True)
        imported = subprocess.run(
            ["docker", "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
             "-", tag], input=tar.stdout, env=engine.env, capture_output=True, check=False)
        if imported.returncode != 0:
            raise SandboxError(f"docker import failed:\n{imported.stderr.decode()}")
    return tag


def build(engine: DockerEngine, context: Path, tag: str = DEFAULT_TAG, base: str | None = None,
          log: Log = print) -> ImageReport:
    """Build the Dockerfile in `context` and check the result; raises SandboxError if a check
    fails (the report names it)."""
    if base is None:
        base = ensure_base(engine, log)
    log(f"docker build {tag} (base {base})")
    started = time.monotonic()
    # The classic builder: the Dockerfile needs no BuildKit feature, and Debian's docker.io has
    # no buildx plugin.
    engine.docker("build", "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag, str(context),
                  timeout=1800)
    seconds = time.monotonic() - started
    inspected = json.loads(engine.docker("image", "inspect", tag).stdout)[0]
    user = inspected["Config"].get("User", "")
    checks = {
        "numeric non-root user": _numeric_non_root(user),
        "--help on a read-only root": _runs(engine, tag, ["--help"]),
        "start imports on a read-only root without /tmp": _runs(
            engine, tag, ["-c", "; ".join(f"import {m}" for m in START_IMPORTS)],
            entrypoint="python"),
    }
    report = ImageReport(tag=tag, base=base, user=user,
                         size_mb=round(inspected["Size"] / 1e6, 1),
                         build_seconds=round(seconds, 1), checks=checks)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise SandboxError(f"image {tag} fails: {', '.join(failed)}\n"
                           f"{json.dumps(asdict(report), indent=2)}")
    return report


def _numeric_non_root(user: str) -> bool:
    uid = user.split(":", 1)[0]
    return uid.isdigit() and int(uid) != 0


def _runs(engine: DockerEngine, tag: str, args: list[str], entrypoint: str | None = None) -> bool:
    # --read-only and no tmpfs: stricter than the chart, which mounts an emptyDir at /tmp.
    command = ["run", "--rm", "--read-only", "--network", "none"]
    if entrypoint:
        command += ["--entrypoint", entrypoint]
    return engine.docker(*command, tag, *args, check=False, timeout=120).returncode == 0
