"""`inferpool sandbox ...` subcommands. Output for scripts: `up` prints the kubeconfig path last."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from inferpool.sandbox.errors import SandboxError


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], int]
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--name", default="default", help="sandbox name (default: %(default)s)")
        p.set_defaults(func=_guarded(func))
        return p

    p = add("up", "start a sandbox and create its simulated node pools", _up)
    p.add_argument("--pools", type=Path, help="pool description YAML (default: the built-in one)")
    p.add_argument("--autoscaler", choices=["karpenter"],
                   help="also run Karpenter (its KWOK provider), which launches nodes for the "
                   "pools marked elastic; the built-in description for it starts at zero nodes")
    add("down", "stop a sandbox's processes and remove its data", _down)
    add("status", "show whether a sandbox runs (JSON)", _status)
    add("kubeconfig", "print the path of a running sandbox's admin kubeconfig", _kubeconfig)
    p = add("restart-apiserver", "stop and start kube-apiserver (every watch ends; resumed "
            "watches get 410 Gone); optionally delete objects in etcd while it is down",
            _restart_apiserver)
    p.add_argument("--down-seconds", type=float, default=0.0,
                   help="keep it down this long (default: %(default)s)")
    p.add_argument("--delete", action="append", default=[], metavar="KIND/[NAMESPACE/]NAME",
                   help="delete this object in etcd while the API server is down, unseen by "
                   "any watch (deployment/NS/NAME, pod/NS/NAME, node/NAME; repeatable)")
    p.add_argument("--apiserver-arg", action="append", default=[], metavar="FLAG",
                   help="extra kube-apiserver flag for this run of it, e.g. "
                   "--apiserver-arg=--watch-cache-sizes=nodes#0 (repeatable)")
    add("compact-etcd", "compact etcd's history: watches resumed from older resourceVersions "
        "(not served from the watch cache) get 410 Gone", _compact_etcd)
    p = add("offering", "make an elastic pool's offering unavailable (an insufficient-capacity "
            "stockout: Karpenter launches no node for it) or available again", _offering)
    p.add_argument("state", choices=["unavailable", "available"])
    p.add_argument("pool", help="an elastic pool of the sandbox")
    p = sub.add_parser("build", help="build (or find) the sandbox binaries and print their paths")
    p.add_argument("--autoscaler", choices=["karpenter"],
                   help="also build the autoscaler (Karpenter's KWOK provider)")
    p.set_defaults(func=_guarded(_build))
    p = sub.add_parser("image", help="build the operator image from the Dockerfile with our own "
                       "dockerd and check it (non-root, read-only root); prints a JSON report",
                       description="build the operator image from the Dockerfile with our own "
                       "dockerd and check it (non-root, read-only root); prints a JSON report")
    p.add_argument("--tag", default="inferpool-operator:dev", help="default: %(default)s")
    p.add_argument("--base", help="the Dockerfile's PYTHON_IMAGE (default: a Debian-built "
                   "stand-in for python:3.11-slim-bookworm, made once with debootstrap)")
    p.add_argument("--context", type=Path, default=Path("."),
                   help="directory with the Dockerfile (default: the current one)")
    p.set_defaults(func=_guarded(_image))
    for action, help_text in (
        ("fail", "stop the simulated kubelet of nodes (they go NotReady, as when it dies)"),
        ("cordon", "mark nodes unschedulable"),
        ("delete", "delete nodes (as when spot capacity is reclaimed)"),
        ("stockout", "make nodes refuse new pods while looking healthy (capacity not there)"),
        ("recover", "undo fail/cordon/stockout/delete"),
    ):
        p = add(action, help_text, _fault(action))
        p.add_argument("nodes", nargs="*", metavar="NODE")
        p.add_argument("--pool", help="act on every node of this pool")


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except SandboxError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return run


def _up(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control

    try:
        state = control.up(args.name, args.pools, log=_log, autoscaler=args.autoscaler)
    except control.AlreadyRunningError as exc:
        _log(str(exc))
        state = exc.state
    print(state.kubeconfig)
    return 0


def _down(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control

    control.down(args.name, log=_log)
    return 0


def _status(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control

    print(json.dumps(control.status(args.name), indent=2))
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control

    print(control.require(args.name).kubeconfig)
    return 0


def _restart_apiserver(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control

    control.restart_apiserver(control.require(args.name), args.down_seconds,
                              tuple(args.delete), tuple(args.apiserver_arg), log=_log)
    return 0


def _compact_etcd(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control

    print(control.compact_etcd(control.require(args.name)))
    return 0


def _build(args: argparse.Namespace) -> int:
    from inferpool.sandbox import binaries

    found = binaries.ensure(_log)
    if args.autoscaler == "karpenter":
        from inferpool.sandbox import karpenter

        found[karpenter.BINARY] = karpenter.binary(_log)
    for name, path in found.items():
        print(f"{name}\t{path}")
    return 0


def _offering(args: argparse.Namespace) -> int:
    from inferpool.sandbox import control, karpenter

    karpenter.set_available(control.require(args.name), args.pool, args.state == "available",
                            log=_log)
    return 0


def _image(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from inferpool.sandbox import image
    from inferpool.sandbox.docker_engine import DockerEngine

    engine = DockerEngine.ensure(_log)
    try:
        report = image.build(engine, args.context, args.tag, args.base, log=_log)
    finally:
        engine.stop()  # only if started here; images stay in its data root
    print(json.dumps(asdict(report), indent=2))
    return 0


def _fault(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from inferpool.sandbox import control, nodes

        state = control.require(args.name)
        names = nodes.resolve(state, args.nodes, args.pool)
        getattr(nodes, action)(state, names)
        _log(f"{action}: {', '.join(names)}")
        return 0
    return run
