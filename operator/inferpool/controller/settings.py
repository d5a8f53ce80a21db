"""Operator settings: flags, with environment variables (INFERPOOL_<FLAG>) as defaults."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field

from inferpool.scaling.urls import parse_allowed_urls


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    tick_seconds: float = 15.0  # periodic re-plan even when nothing changed
    debounce_seconds: float = 0.1  # changes arriving together make one plan
    lease_name: str = "inferpool-operator"
    lease_namespace: str = "default"
    lease_seconds: int = 10
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    solver: str = "auto"
    solver_time_budget_seconds: float = 1.0
    hysteresis: float = 0.05
    prometheus_url: str | None = None
    # URL prefixes spec.demand.prometheus.url may use besides prometheus_url; "*": any URL
    prometheus_allowed_urls: tuple[str, ...] = ()
    toleration_seconds: int = 30
    replace_pods_on_failed_nodes: bool = True
    stockout_seconds: float = 30.0  # Pending-unschedulable this long marks a pool stocked out
    broken_seconds: float = 20.0  # crashing/ImagePullBackOff this long marks a variant broken
    max_moves_per_plan: int = 8  # bound on churn when moving back after a recovery
    retry_backoff_seconds: float = 60.0  # first retry of a stocked-out pool or broken variant
    allow_privileged_namespaces: tuple[str, ...] = ()
    metrics_port: int = 8080
    health_port: int = 8081
    log_level: str = "info"
    log_format: str = "json"
    watch_server_timeout: int = 300  # kopf watch streams are re-established at least this often


def _env(name: str, default: str) -> str:
    return os.environ.get(f"INFERPOOL_{name.upper().replace('-', '_')}", default)


def _allowed_urls(text: str) -> tuple[str, ...]:
    try:
        return parse_allowed_urls(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    d = Settings()
    a = parser.add_argument
    a("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (default: in-cluster"
      " config inside a pod, else $KUBECONFIG or ~/.kube/config)")
    a("--namespace", action="append", dest="namespaces",
      default=[n for n in _env("namespaces", "").split(",") if n],
      help="watch only this namespace (repeatable; default: all)")
    a("--tick-seconds", type=float, default=float(_env("tick-seconds", str(d.tick_seconds))),
      help="re-plan at least this often, even when nothing changed (reads load sources)")
    a("--debounce-seconds", type=float,
      default=float(_env("debounce-seconds", str(d.debounce_seconds))),
      help="changes arriving within this window make one plan")
    a("--lease-name", default=_env("lease-name", d.lease_name),
      help="coordination.k8s.io Lease that elects the one planning instance")
    a("--lease-namespace", default=_env("lease-namespace",
                                        os.environ.get("POD_NAMESPACE", d.lease_namespace)))
    a("--lease-seconds", type=int, default=int(_env("lease-seconds", str(d.lease_seconds))),
      help="a standby takes over this long after the leader stops renewing")
    a("--identity", default=_env("identity", d.identity), help="this instance's Lease holder name")
    a("--solver", choices=("auto", "milp", "fast"), default=_env("solver", d.solver),
      help="placement solver: exact MILP, the fast heuristic, or auto by instance size")
    a("--solver-time-budget-seconds", type=float,
      default=float(_env("solver-time-budget-seconds", str(d.solver_time_budget_seconds))),
      help="time the exact solver may take before the fast path's plan is used")
    a("--hysteresis", type=float, default=float(_env("hysteresis", str(d.hysteresis))),
      help="relative cost saving below which replicas are not moved")
    a("--prometheus-url", default=_env("prometheus-url", "") or None,
      help="default Prometheus for InferencePools whose demand query names no URL")
    a("--prometheus-allowed-urls", type=_allowed_urls,
      default=_env("prometheus-allowed-urls", ""), metavar="URL[,URL...]",
      help="URL prefixes (scheme://host[:port][/path]) an InferencePool's "
      "spec.demand.prometheus.url may use; --prometheus-url is always allowed; '*': any URL "
      "(default: %(default)r)")
    a("--toleration-seconds", type=int,
      default=int(_env("toleration-seconds", str(d.toleration_seconds))),
      help="tolerationSeconds for not-ready/unreachable taints on the pods we create")
    a("--replace-pods-on-failed-nodes", action=argparse.BooleanOptionalAction,
      default=_env("replace-pods-on-failed-nodes", "true").lower() in ("1", "true", "yes"),
      help="delete our pods on NotReady/unreachable nodes so they are replaced at once")
    a("--stockout-seconds", type=float,
      default=float(_env("stockout-seconds", str(d.stockout_seconds))),
      help="replicas unschedulable this long mark their node pool stocked out (backoff)")
    a("--broken-seconds", type=float, default=float(_env("broken-seconds", str(d.broken_seconds))),
      help="replicas crashing or failing to pull their image this long mark the variant broken")
    a("--retry-backoff-seconds", type=float,
      default=float(_env("retry-backoff-seconds", str(d.retry_backoff_seconds))),
      help="a stocked-out pool or broken variant is retried after this long (doubling, "
      "at most 15 min)")
    a("--max-moves-per-plan", type=int,
      default=int(_env("max-moves-per-plan", str(d.max_moves_per_plan))),
      help="most replicas moved away from where they run per plan (recovery churn bound)")
    a("--allow-privileged-namespace", action="append", dest="allow_privileged_namespaces",
      default=[n for n in _env("allow-privileged-namespaces", "").split(",") if n],
      help="namespace whose pod templates may be privileged/use host namespaces or hostPath")
    a("--metrics-port", type=int, default=int(_env("metrics-port", str(d.metrics_port))),
      help="/metrics, /readyz and /healthz (0: off)")
    a("--health-port", type=int, default=int(_env("health-port", str(d.health_port))),
      help="kopf's liveness endpoint /healthz")
    a("--log-level", choices=("debug", "info", "warning", "error"),
      default=_env("log-level", d.log_level))
    a("--log-format", choices=("json", "console"), default=_env("log-format", d.log_format))


def from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        kubeconfig=args.kubeconfig, namespaces=tuple(args.namespaces),
        tick_seconds=args.tick_seconds, debounce_seconds=args.debounce_seconds,
        lease_name=args.lease_name, lease_namespace=args.lease_namespace,
        lease_seconds=args.lease_seconds, identity=args.identity, solver=args.solver,
        solver_time_budget_seconds=args.solver_time_budget_seconds, hysteresis=args.hysteresis,
        prometheus_url=args.prometheus_url, prometheus_allowed_urls=args.prometheus_allowed_urls,
        toleration_seconds=args.toleration_seconds,
        allow_privileged_namespaces=tuple(args.allow_privileged_namespaces),
        replace_pods_on_failed_nodes=args.replace_pods_on_failed_nodes,
        stockout_seconds=args.stockout_seconds, broken_seconds=args.broken_seconds,
        max_moves_per_plan=args.max_moves_per_plan,
        retry_backoff_seconds=args.retry_backoff_seconds,
        metrics_port=args.metrics_port, health_port=args.health_port,
        log_level=args.log_level, log_format=args.log_format,
    )
