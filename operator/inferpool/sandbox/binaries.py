"""Find or build the sandbox binaries (etcd, Kubernetes control plane, kubectl, kwok, helm).

Binaries come from, in order: our cache (`~/.cache/inferpool/bin/<pins>/`), `KUBEBUILDER_ASSETS`
and `PATH` when their version fits the pins, and otherwise a build from Go modules through the
module proxy with `GOTOOLCHAIN=local`. Nothing is fetched but Go modules.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

import yaml

from inferpool.sandbox import versions
from inferpool.sandbox.errors import SandboxError
from inferpool.sandbox.versions import Component

Log = Callable[[str], None]

MIN_GO = (1, 26)

ETCD_MAIN = """package main

// A thin main around etcd's own entry point, so etcd builds from its server module alone.

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def cache_root() -> Path:
    if env := os.environ.get("INFERPOOL_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "inferpool"


def bin_dir() -> Path:
    return cache_root() / "bin" / versions.cache_key()


def _version_output(path: Path, component: Component) -> str:
    try:
        done = subprocess.run(
            [str(path), *component.version_args],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def _fits(path: Path, component: Component) -> bool:
    return path.is_file() and component.accept_prefix in _version_output(path, component)


def find(component: Component) -> Path | None:
    """A usable binary for `component` without building, or None."""
    cached = bin_dir() / component.binary
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    candidates: list[Path] = []
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(assets) / component.binary)
    if on_path := shutil.which(component.binary):
        candidates.append(Path(on_path))
    return next((c for c in candidates if _fits(c, component)), None)


def ensure(log: Log = print, components: Iterable[Component] = versions.ALL_COMPONENTS
           ) -> dict[str, Path]:
    """Paths of all binaries, building the missing ones. Raises SandboxError on failure."""
    found: dict[str, Path] = {}
    missing: list[Component] = []
    for component in components:
        path = find(component)
        if path is None:
            missing.append(component)
        else:
            found[component.binary] = path
    if missing:
        started = time.monotonic()
        names = ", ".join(c.binary for c in missing)
        log(f"building {names} into {bin_dir()} (first time only; takes several minutes)")
        _check_go()
        for module in dict.fromkeys(c.module for c in missing):
            group = [c for c in missing if c.module == module]
            _build_group(group, log)
            for c in group:
                found[c.binary] = bin_dir() / c.binary
        size = sum(p.stat().st_size for p in bin_dir().iterdir()) / 2**20
        log(f"built {names} in {time.monotonic() - started:.0f} s; cache {bin_dir()} "
            f"holds {size:.0f} MiB")
    return found


# kwok's own default stages (fast node start, lease heartbeats, pods Ready at once), read from
# the kwok module at build time: the `kwok` binary, unlike kwokctl, ships none.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


SIMULATE_ANNOTATION = "sandbox.inferpool.dev/simulate"
STAGES_REVISION = 2  # bump when the stages we derive change


def kwok_stages(log: Log = print) -> Path:
    """A kwok config file with the default node and pod stages (made once, cached)."""
    path = bin_dir() / f"kwok-stages-{STAGES_REVISION}.yaml"
    if path.is_file():
        return path
    _check_go()
    module = versions.KWOK_COMPONENT
    info = json.loads(go(["mod", "download", "-json", f"{module.module}@{module.version}"],
                          _workdir("kwok-stages"), log))
    stages = [yaml.safe_load((Path(info["Dir"]) / rel).read_text()) for rel in KWOK_STAGES]
    for stage in stages:
        if stage["metadata"]["name"] == "pod-ready":
            # Pods that simulate a failure are left to our own stage.
            stage["spec"]["selector"]["matchExpressions"].append(
                {"key": f'.metadata.annotations["{SIMULATE_ANNOTATION}"]',
                 "operator": "DoesNotExist"})
    ours = resources.files("inferpool.sandbox").joinpath("simulated-failures.yaml").read_text()
    stages.append(yaml.safe_load(ours))
    bin_dir().mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump_all(stages, sort_keys=False))
    partial.replace(path)
    return path


def _check_go() -> None:
    go = shutil.which("go")
    if go is None:
        raise SandboxError(
            "Go is not installed: the sandbox builds its binaries from Go modules. Install Go "
            f"{MIN_GO[0]}.{MIN_GO[1]} or newer (https://go.dev/doc/install) and run again."
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if match is None or (int(match[1]), int(match[2])) < MIN_GO:
        raise SandboxError(
            f"Go {out.stdout.strip() or '?'} is too old to build Kubernetes "
            f"v{versions.KUBERNETES}: install Go {MIN_GO[0]}.{MIN_GO[1]} or newer."
        )


def go(args: list[str], cwd: Path, log: Log, toolchain: str = "local") -> str:
    """Run the go command; `toolchain` other than "local" is fetched by go itself (a module)."""
    env = {**os.environ, "GOTOOLCHAIN": toolchain, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    log("  $ go " + " ".join(args))
    done = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-25:])
        raise SandboxError(f"build failed: `go {' '.join(args)}` in {cwd} exited "
                           f"{done.returncode}:\n{tail}")
    return done.stdout


def _workdir(name: str) -> Path:
    path = cache_root() / "build" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build_group(group: list[Component], log: Log) -> None:
    first = group[0]
    work = _workdir(f"{first.binary if first.module != 'k8s.io/kubernetes' else 'kubernetes'}"
                    f"-{first.version}")
    ldflags = ["-s", "-w"]
    if first.module == "k8s.io/kubernetes":
        _write_kubernetes_gomod(work, log)
        minor = versions.KUBERNETES.split(".")[1]
        for var, value in (("gitVersion", first.version), ("gitMajor", "1"),
                           ("gitMinor", minor)):
            ldflags += [f"-X=k8s.io/component-base/version.{var}={value}",
                        f"-X=k8s.io/client-go/pkg/version.{var}={value}"]
    else:
        (work / "go.mod").write_text(f"module inferpool.dev/sandbox/{first.binary}\n\ngo 1.26\n")
        if first is versions.ETCD_COMPONENT:
            (work / "main.go").write_text(ETCD_MAIN)
        elif first is versions.KWOK_COMPONENT:
            ldflags.append(f"-X=sigs.k8s.io/kwok/pkg/consts.Version={first.version}")
        elif first is versions.HELM_COMPONENT:
            ldflags.append(f"-X=helm.sh/helm/v3/internal/version.version={first.version}")
    go(["get", *(f"{c.package or c.module}@{c.version}" for c in group)], work, log)
    packages = [c.package for c in group if c.package] or ["."]
    staging = bin_dir().with_name(bin_dir().name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    out = str(staging / first.binary) if packages == ["."] else str(staging) + "/"
    go(["build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", out, *packages], work, log)
    bin_dir().mkdir(parents=True, exist_ok=True)
    for c in group:
        (staging / c.binary).replace(bin_dir() / c.binary)
    staging.rmdir()


def _write_kubernetes_gomod(work: Path, log: Log) -> None:
    """A wrapper module that pins every staging module `k8s.io/X` to `v0.<minor>.<patch>`.

    k8s.io/kubernetes points its staging modules at `./staging/...`, which does not exist in the
    module zip; the list is read from its own go.mod so staging modules added later are covered.
    """
    version = "v" + versions.KUBERNETES
    info = json.loads(go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work, log))
    upstream = Path(info["GoMod"]).read_text()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", upstream,
                                    re.MULTILINE)))
    if not staging:
        raise SandboxError(f"no staging replacements found in k8s.io/kubernetes@{version} go.mod")
    lib_version = "v0." + versions.KUBERNETES.split(".", 1)[1]
    lines = [
        "module inferpool.dev/sandbox/kubernetes", "", "go 1.26", "",
        f"require k8s.io/kubernetes {version}", "", "replace (",
        *(f"\t{module} => {module} {lib_version}" for module in staging), ")", "",
    ]
    (work / "go.mod").write_text("\n".join(lines))
    (work / "go.sum").unlink(missing_ok=True)
