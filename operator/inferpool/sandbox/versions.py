"""Pinned versions of everything the sandbox builds. Change them here only."""

from __future__ import annotations

from dataclasses import dataclass

KUBERNETES = "1.36.3"
ETCD = "3.6.16"
KWOK = "0.8.0"
HELM = "3.22.0"
# Karpenter with its KWOK provider (`--autoscaler karpenter` only; cached apart from the rest).
# Its go.mod asks for Go 1.26.9: that toolchain comes from the Go module proxy like any module.
KARPENTER = "1.15.0"
KARPENTER_GO = "go1.26.9"


@dataclass(frozen=True)
class Component:
    """One binary: where it comes from and how to recognise a fitting one on PATH."""

    binary: str
    module: str  # Go module providing it
    version: str  # module version, with the leading "v"
    package: str  # main package to build
    version_args: tuple[str, ...]  # how to ask the binary its version
    accept_prefix: str  # a found binary fits when its version output contains this


_KUBE_MINOR = "v" + KUBERNETES.rsplit(".", 1)[0] + "."

KUBE_COMPONENTS = tuple(
    Component(
        binary=name,
        module="k8s.io/kubernetes",
        version="v" + KUBERNETES,
        package=f"k8s.io/kubernetes/cmd/{name}",
        version_args=("version", "--client") if name == "kubectl" else ("--version",),
        accept_prefix=_KUBE_MINOR,
    )
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
)

ETCD_COMPONENT = Component(
    binary="etcd",
    module="go.etcd.io/etcd/server/v3",
    version="v" + ETCD,
    package="",  # built from a generated main package (see binaries.py)
    version_args=("--version",),
    accept_prefix="etcd Version: 3.6.",
)

KWOK_COMPONENT = Component(
    binary="kwok",
    module="sigs.k8s.io/kwok",
    version="v" + KWOK,
    package="sigs.k8s.io/kwok/cmd/kwok",
    version_args=("--version",),
    accept_prefix="v" + KWOK.rsplit(".", 1)[0] + ".",
)

HELM_COMPONENT = Component(
    binary="helm",
    module="helm.sh/helm/v3",
    version="v" + HELM,
    package="helm.sh/helm/v3/cmd/helm",
    version_args=("version", "--short"),
    accept_prefix="v3.",
)

ALL_COMPONENTS = (*KUBE_COMPONENTS, ETCD_COMPONENT, KWOK_COMPONENT, HELM_COMPONENT)


def cache_key() -> str:
    """Folder name under the binary cache: changes whenever a pin changes."""
    return f"k8s-v{KUBERNETES}_etcd-v{ETCD}_kwok-v{KWOK}_helm-v{HELM}"
