"""Operator settings: one validated model, filled from flags, then INFERPOOL_<NAME> variables,
then defaults (flags win). pydantic-settings reads the environment; argparse only collects the
flags a user typed (every flag defaults to "not given"), so nothing is layered by hand.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "INFERPOOL_"
# A comma-separated list in one variable or flag value; flags may also be repeated.
Names = tuple[str, ...]


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kubeconfig: str | None = None
    namespaces: Names = ()  # empty: all namespaces
    tick_seconds: float = Field(15.0, gt=0)  # periodic re-plan even when nothing changed
    # longest a plan waits for demand reads in flight; slower ones are used by a later plan
    demand_wait_seconds: float = Field(0.5, ge=0)
    debounce_seconds: float = Field(0.1, ge=0)  # changes arriving together make one plan
    lease_name: str = "inferpool-operator"
    lease_namespace: str = "default"
    lease_seconds: int = Field(10, ge=1)
    identity: str = Field(default_factory=_default_identity)
    solver: Literal["auto", "milp", "fast"] = "auto"
    solver_time_budget_seconds: float = Field(1.0, gt=0)
    hysteresis: float = Field(0.05, ge=0, lt=1)
    prometheus_url: str | None = None
    # URL prefixes spec.demand.prometheus.url may use besides prometheus_url; "*": any URL
    prometheus_allowed_urls: Names = ()
    # tenancy mode: every query's selectors get <label>="<the InferencePool's namespace>"
    prometheus_tenancy: bool = False
    prometheus_tenancy_label: str = Field("namespace", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    secret_read_timeout_seconds: float = Field(5.0, gt=0)  # a token's Secret, before a query
    toleration_seconds: int = Field(30, ge=0)
    replace_pods_on_failed_nodes: bool = True
    read_autoscaler_events: bool = True  # list Events on pods waiting in elastic pools
    read_karpenter_limits: bool = True  # list Karpenter NodePools: their limits cap maxNodes
    # unhealthy share of a zone's nodes from which our pods there are neither replaced nor removed
    unhealthy_zone_threshold: float = Field(0.55, gt=0, le=1)
    stockout_seconds: float = Field(30.0, gt=0)  # Pending this long: node pool stocked out
    broken_seconds: float = Field(20.0, gt=0)  # crashing/ImagePullBackOff: variant broken
    max_moves_per_plan: int = Field(8, ge=1)  # bound on churn when moving back after recovery
    retry_backoff_seconds: float = Field(60.0, gt=0)  # first retry of a stocked-out/broken one
    allow_privileged_namespaces: Names = ()
    metrics_port: int = Field(8080, ge=0, le=65535)
    metrics_bind_address: str = "0.0.0.0"
    # /metrics only for bearer tokens allowed `get` on the non-resource URL /metrics
    metrics_auth: bool = False
    metrics_tls_cert_file: str | None = None  # with the key: the metrics port speaks HTTPS
    metrics_tls_key_file: str | None = None
    health_port: int = Field(8081, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    watch_server_timeout: int = Field(300, ge=1)  # kopf re-establishes watches this often
    # a leader that cannot renew its Lease this long stops writing (kept below lease_seconds)
    lease_renew_deadline_seconds: float = Field(6.0, gt=0)
    lease_retry_period_seconds: float = Field(2.0, gt=0)  # Lease renewed or tried this often
    api_request_timeout_seconds: float = Field(30.0, gt=0)  # every API call gives up after
    resync_seconds: float = Field(60.0, gt=0)  # caches checked against a listing this often
    # tests only: offsets the wall clock written into the Lease (it decides nothing)
    test_wall_clock_offset_seconds: float = 0.0

    @field_validator("namespaces", "allow_privileged_namespaces", "prometheus_allowed_urls",
                     mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return tuple(p.strip() for v in value for p in str(v).split(",") if p.strip())
        return value

    @field_validator("prometheus_allowed_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # imported here: inferpool.scaling loads aiohttp, too slow for `run --help`
        from inferpool.scaling.urls import parse_allowed_urls

        return parse_allowed_urls(",".join(value))

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.metrics_tls_cert_file is None) != (self.metrics_tls_key_file is None):
            raise ValueError("give both metrics_tls_cert_file and metrics_tls_key_file, or "
                             "neither")
        return self

    @field_validator("prometheus_url", "kubeconfig", "metrics_tls_cert_file",
                     "metrics_tls_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value


# Help for `inferpool run --help`; None hides a setting (tests and tuning only). A test checks
# that every setting is here, so a new one cannot arrive without a flag and a variable.
HELP: dict[str, str | None] = {
    "kubeconfig": "kubeconfig file (else in-cluster config inside a pod, else ~/.kube/config; "
                  "env: also KUBECONFIG)",
    "namespaces": "watch only these namespaces (comma-separated or repeated; default: all)",
    "tick_seconds": "re-plan at least this often, even when nothing changed (reads load "
                    "sources)",
    "demand_wait_seconds": "longest a plan waits for load-source reads in flight; a pool "
                           "whose read is slower is planned with its last known demand",
    "debounce_seconds": "changes arriving within this window make one plan",
    "lease_name": "coordination.k8s.io Lease that elects the one planning instance",
    "lease_namespace": "namespace of that Lease (env: also POD_NAMESPACE)",
    "lease_seconds": "a standby takes over this long after the leader stops renewing",
    "identity": "this instance's Lease holder name (default: HOSTNAME-PID)",
    "solver": "placement solver: exact MILP, the fast heuristic, or auto by instance size",
    "solver_time_budget_seconds": "time the exact solver may take before the fast path's "
                                  "plan is used",
    "hysteresis": "relative cost saving below which replicas are not moved",
    "prometheus_url": "default Prometheus for InferencePools whose demand query names no URL",
    "prometheus_allowed_urls": "URL prefixes (scheme://host[:port][/path]) an InferencePool's "
                               "spec.demand.prometheus.url may use; --prometheus-url is always "
                               "allowed; '*': any URL",
    "prometheus_tenancy": "tenancy mode: add <label>=\"<namespace of the InferencePool>\" to "
                          "every series selector of every query (as prom-label-proxy does) and "
                          "refuse queries that cannot be scoped so",
    "prometheus_tenancy_label": "the label that holds a series' namespace in tenancy mode",
    "secret_read_timeout_seconds": "longest wait for a query's bearer-token Secret (read "
                                   "before every query)",
    "toleration_seconds": "tolerationSeconds for not-ready/unreachable taints on our pods",
    "replace_pods_on_failed_nodes": "delete our pods on NotReady/unreachable nodes so they are "
                                    "replaced at once",
    "read_autoscaler_events": "read the Events an autoscaler (Karpenter, the cluster "
                              "autoscaler) posts on our pods waiting for nodes in elastic pools, "
                              "so a failed scale-up spills at once (needs list on events)",
    "read_karpenter_limits": "read the spec.limits of Karpenter NodePools whose nodes elastic "
                             "AcceleratorPools select: a pool grows to no more nodes than they "
                             "allow (needs list on nodepools.karpenter.sh)",
    "unhealthy_zone_threshold": "share of a zone's nodes unhealthy at once (and more than 2) "
                                "from which our pods there are neither replaced nor scaled down, "
                                "as the node lifecycle controller stops evicting",
    "stockout_seconds": "replicas unschedulable this long mark their node pool stocked out",
    "broken_seconds": "replicas crashing or failing to pull their image this long mark the "
                      "variant broken",
    "max_moves_per_plan": "most replicas moved away from where they run per plan (recovery "
                          "churn bound)",
    "retry_backoff_seconds": "a stocked-out pool or broken variant is retried after this long "
                             "(doubling, at most 15 min)",
    "allow_privileged_namespaces": "namespaces whose pod templates may be privileged or use "
                                   "host namespaces or hostPath (comma-separated or repeated)",
    "metrics_port": "/metrics, /readyz and /healthz (0: off)",
    "metrics_bind_address": "address the metrics port listens on (0.0.0.0: every IPv4 "
                            "interface; :: every interface; 127.0.0.1 behind a proxy)",
    "metrics_auth": "serve /metrics only to bearer tokens that a TokenReview authenticates and "
                    "a SubjectAccessReview allows get on the non-resource URL /metrics "
                    "(/readyz and /healthz stay open)",
    "metrics_tls_cert_file": "PEM certificate: the metrics port speaks HTTPS (with the key)",
    "metrics_tls_key_file": "PEM private key of that certificate",
    "health_port": "kopf's liveness endpoint /healthz",
    "log_level": "log level",
    "log_format": "log format",
    "watch_server_timeout": None,
    "lease_renew_deadline_seconds": "a leader that cannot renew the Lease for this long stops "
                                    "writing (kept below --lease-seconds)",
    "lease_retry_period_seconds": "how often the Lease is renewed, or tried for by a standby",
    "api_request_timeout_seconds": "every Kubernetes API call gives up after this long",
    "resync_seconds": "how often the caches are checked against a listing of the cluster "
                      "(deletions a watch missed)",
    "test_wall_clock_offset_seconds": None,
}
# Flags whose name is not the setting's (singular, as kubectl's --namespace).
FLAG_NAMES = {"namespaces": "--namespace"}


class SettingsError(Exception):
    """A setting that does not validate: the message names the flag or variable and the value."""

    def __init__(self, message: str, from_flag: bool) -> None:
        super().__init__(message)
        self.from_flag = from_flag


def flag_name(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def load(flags: Mapping[str, Any]) -> Settings:
    """Flags (only those given) over INFERPOOL_* variables over defaults. Raises SettingsError."""
    try:
        merged = _from_environment()(**flags)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        from_flag = name in flags
        where = flag_name(name) if from_flag else env_name(name)
        value = flags[name] if from_flag else os.environ.get(env_name(name), first.get("input"))
        shown = ",".join(value) if isinstance(value, list) else value
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{where}={shown!s}: {message}", from_flag) from None
    return Settings.model_validate(merged.model_dump())


def _from_environment() -> type[Settings]:
    """The same model with the environment as a source beneath the flags (init arguments).
    pydantic-settings is imported here, not at module level: `run --help` stays quick."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class FromEnvironment(BaseSettings, Settings):
        # enable_decoding off: a list variable is "a,b" (split by Settings), not JSON
        model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore",
                                          populate_by_name=True, enable_decoding=False)

        kubeconfig: str | None = Field(None, validation_alias=AliasChoices(
            "kubeconfig", f"{ENV_PREFIX}KUBECONFIG", "KUBECONFIG"))
        lease_namespace: str = Field("default", validation_alias=AliasChoices(
            "lease_namespace", f"{ENV_PREFIX}LEASE_NAMESPACE", "POD_NAMESPACE"))

    return FromEnvironment


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """One flag per setting (or per setting in `names`), each "not given" unless typed."""
    defaults = Settings()
    for name in names or Settings.model_fields:
        field = Settings.model_fields[name]
        help_text = HELP[name]
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        annotation = field.annotation
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is tuple:
            kwargs["action"] = "append"
            kwargs["metavar"] = "NAME[,NAME...]" if "url" not in name else "URL[,URL...]"
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = get_args(annotation)
        if help_text is None:
            kwargs["help"] = argparse.SUPPRESS
        else:
            default = getattr(defaults, name)
            shown = ("none" if default in (None, ()) else
                     "HOSTNAME-PID" if name == "identity" else str(default).lower()
                     if isinstance(default, bool) else default)
            help_text = help_text.replace("%", "%%")
            kwargs["help"] = f"{help_text} (default: {shown}; env: {env_name(name)})"
        parser.add_argument(flag_name(name), **kwargs)


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a user typed on the command line (add_flags leaves the others out)."""
    return {k: v for k, v in vars(args).items() if k in Settings.model_fields}
