"""Valid objects, a table of bad ones, and Hypothesis strategies: shared by the pydantic tests
here and the API server tests in tests/sandbox/test_api_server.py, so both sides are held to
the same cases."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from inferpool.api import AcceleratorPool, InferencePool
from inferpool.api.security import BASELINE_CAPABILITIES

Obj = dict[str, Any]
DELETE = object()


def base_pool(name: str = "llama") -> Obj:
    """A valid InferencePool with two families, so that family rules have room to fail."""
    def variant(name: str, accelerator: Obj) -> Obj:
        return {"name": name, "accelerator": accelerator, "capacity": 10,
                "template": {"spec": {"containers": [{"name": "server", "image": "vllm:1"}]}}}

    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "replicas": {"min": 1, "max": 8},
            "demand": {"fixed": 30},
            "variants": [
                variant("h100", {"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3",
                                 "count": 2}),
                variant("v6e", {"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4",
                                "count": 8}),
            ],
        },
    }


def base_apool(name: str = "h100") -> Obj:
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "AcceleratorPool",
        "metadata": {"name": name},
        "spec": {"family": "nvidia", "nodeSelector": {"inferpool.dev/node-pool": name},
                 "pricePerAcceleratorHour": 11.03},
    }


@dataclass(frozen=True)
class Bad:
    """A valid base object with `changes` applied ("a.0.b" paths; DELETE removes a key).
    `field` is the path the API server must name; `python` what pydantic's error must contain
    (defaults to `field` in pydantic's dotted form)."""

    id: str
    kind: str  # "InferencePool" or "AcceleratorPool"
    changes: dict[str, Any]
    field: str
    python: str | None = None

    def body(self, name: str | None = None) -> Obj:
        obj = base_pool() if self.kind == "InferencePool" else base_apool()
        for path, value in self.changes.items():
            _set(obj, path, value)
        if name is not None and "metadata.name" not in self.changes:
            obj["metadata"]["name"] = name
        return obj

    @property
    def python_text(self) -> str:
        return self.python or self.field.replace("[", ".").replace("]", "")


def _set(obj: Any, path: str, value: Any) -> None:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parents:
        obj = obj[part]
    if value is DELETE:
        del obj[last]
    elif isinstance(last, int) and last == len(obj):
        obj.append(value)
    else:
        obj[last] = value


_V0 = "spec.variants.0"
_C0 = f"{_V0}.template.spec.containers.0"
_T0 = "spec.variants[0].template.spec"
IP, AP = "InferencePool", "AcceleratorPool"

BAD: tuple[Bad, ...] = (
    Bad("max-wrong-type", IP, {"spec.replicas.max": "ten"}, "spec.replicas.max"),
    Bad("min-bool", IP, {"spec.replicas.min": True}, "spec.replicas.min"),
    Bad("missing-model", IP, {"spec.model": DELETE}, "spec.model"),
    Bad("missing-replicas", IP, {"spec.replicas": DELETE}, "spec.replicas"),
    Bad("missing-variants", IP, {"spec.variants": DELETE}, "spec.variants"),
    Bad("empty-variants", IP, {"spec.variants": []}, "spec.variants"),
    Bad("min-above-max", IP, {"spec.replicas.min": 9}, "spec.replicas.min", "replicas.min"),
    Bad("huge-max", IP, {"spec.replicas.max": 10**9}, "spec.replicas.max"),
    Bad("duplicate-variant", IP, {"spec.variants.1.name": "h100"}, "spec.variants[1]",
        "variants[1].name"),
    Bad("zero-capacity", IP, {f"{_V0}.capacity": 0}, "spec.variants[0].capacity"),
    Bad("negative-capacity", IP, {f"{_V0}.capacity": -5.5}, "spec.variants[0].capacity"),
    Bad("huge-capacity", IP, {f"{_V0}.capacity": 1e12}, "spec.variants[0].capacity"),
    Bad("missing-capacity", IP, {f"{_V0}.capacity": DELETE}, "spec.variants[0].capacity"),
    Bad("unknown-family", IP, {f"{_V0}.accelerator.family": "amd"},
        "spec.variants[0].accelerator.family"),
    Bad("zero-count", IP, {f"{_V0}.accelerator.count": 0}, "spec.variants[0].accelerator.count"),
    Bad("malformed-topology", IP, {"spec.variants.1.accelerator.topology": "2by4"},
        "spec.variants[1].accelerator.topology"),
    Bad("topology-on-nvidia", IP, {f"{_V0}.accelerator.topology": "2x4",
                                   f"{_V0}.accelerator.type": "a3-highgpu-8g"},
        "spec.variants[0].accelerator.topology", "topology is only valid for the tpu family"),
    Bad("topology-without-type", IP, {"spec.variants.1.accelerator.type": DELETE},
        "spec.variants[1].accelerator.topology", "topology requires type"),
    Bad("product-on-tpu", IP, {"spec.variants.1.accelerator.product": "TPU-v6e"},
        "spec.variants[1].accelerator.product", "product is not used for the tpu family"),
    Bad("variant-name-too-long", IP, {f"{_V0}.name": "v" * 33}, "spec.variants[0].name"),
    Bad("variant-name-upper-case", IP, {f"{_V0}.name": "H100"}, "spec.variants[0].name"),
    Bad("name-too-long", IP, {"metadata.name": "p" * 64}, "metadata.name"),
    Bad("negative-cost", IP, {f"{_V0}.costPerHour": -1}, "spec.variants[0].costPerHour"),
    Bad("preference-out-of-range", IP, {f"{_V0}.preference": 101}, "spec.variants[0].preference"),
    Bad("negative-priority", IP, {"spec.priority": -1}, "spec.priority"),
    Bad("unknown-field", IP, {"spec.replica": {"min": 1}}, "spec.replica"),
    Bad("two-demand-sources", IP, {"spec.demand.prometheus": {"query": "up"}}, "spec.demand",
        "demand.fixed"),
    Bad("no-demand-source", IP, {"spec.demand.fixed": DELETE}, "spec.demand", "demand.fixed"),
    Bad("negative-demand", IP, {"spec.demand.fixed": -1}, "spec.demand.fixed"),
    Bad("zero-utilization", IP, {"spec.demand.targetUtilization": 0},
        "spec.demand.targetUtilization"),
    Bad("utilization-above-one", IP, {"spec.demand.targetUtilization": 1.5},
        "spec.demand.targetUtilization"),
    Bad("prometheus-empty-query", IP, {"spec.demand.fixed": DELETE,
                                       "spec.demand.prometheus": {"query": ""}},
        "spec.demand.prometheus.query"),
    Bad("prometheus-url-scheme", IP, {"spec.demand.fixed": DELETE,
                                      "spec.demand.prometheus": {"query": "up",
                                                                 "url": "file:///etc/passwd"}},
        "spec.demand.prometheus.url"),
    *(Bad(f"prometheus-url-{what}", IP, {"spec.demand.fixed": DELETE,
                                         "spec.demand.prometheus": {"query": "up", "url": url}},
          "spec.demand.prometheus.url")
      for what, url in (("empty-host", "http:///api"), ("port-without-host", "http://:9090"),
                        ("port-out-of-range", "http://prom:99999"), ("port-zero", "http://prom:0"),
                        ("port-not-a-number", "http://prom:90a0"), ("port-sign", "http://prom:+80"),
                        ("port-padded", "http://prom:0000080"),
                        ("unclosed-ipv6", "http://[::1:9090/"),
                        ("scheme-only-prefix", "https://"))),
    Bad("stabilization-too-long", IP, {"spec.demand.scaleDown": {"stabilizationSeconds": 86400}},
        "spec.demand.scaleDown.stabilizationSeconds"),
    Bad("tolerance-whole", IP, {"spec.demand.scaleDown": {"tolerance": 1.0}},
        "spec.demand.scaleDown.tolerance"),
    Bad("tolerance-negative", IP, {"spec.demand.scaleUp": {"tolerance": -0.1}},
        "spec.demand.scaleUp.tolerance"),
    Bad("family-share-infeasible", IP, {"spec.resilience": {"maxFamilyShare": 0.4}},
        "spec.resilience.maxFamilyShare", "resilience.maxFamilyShare"),
    Bad("too-many-families", IP, {"spec.resilience": {"minFamilies": 3}},
        "spec.resilience.minFamilies", "resilience.minFamilies"),
    Bad("replicas-below-families", IP, {"spec.resilience": {"minFamilies": 2},
                                        "spec.replicas": {"min": 1, "max": 1}},
        "spec.replicas.max", "replicas.max"),
    Bad("surge-percent", IP, {"spec.rollout": {"maxSurge": "150%"}}, "spec.rollout.maxSurge"),
    Bad("surge-zero-make-before-break", IP, {"spec.rollout": {"maxSurge": 0}},
        "spec.rollout.maxSurge", "rollout.maxSurge"),
    Bad("no-containers", IP, {f"{_V0}.template.spec.containers": []},
        f"{_T0}.containers"),
    Bad("container-without-image", IP, {f"{_C0}.image": DELETE}, f"{_T0}.containers[0].image"),
    Bad("reserved-label", IP, {f"{_V0}.template.metadata": {"labels": {"inferpool.dev/pool": "x"}}},
        "spec.variants[0].template.metadata.labels"),
    Bad("privileged", IP, {f"{_C0}.securityContext": {"privileged": True}},
        f"{_T0}.containers[0].securityContext.privileged"),
    Bad("privileged-init", IP, {f"{_V0}.template.spec.initContainers": [
        {"name": "init", "image": "busybox", "securityContext": {"privileged": True}}]},
        f"{_T0}.initContainers[0].securityContext.privileged"),
    Bad("host-network", IP, {f"{_V0}.template.spec.hostNetwork": True}, f"{_T0}.hostNetwork"),
    Bad("host-pid", IP, {f"{_V0}.template.spec.hostPID": True}, f"{_T0}.hostPID"),
    Bad("host-ipc", IP, {f"{_V0}.template.spec.hostIPC": True}, f"{_T0}.hostIPC"),
    Bad("host-path", IP, {f"{_V0}.template.spec.volumes": [
        {"name": "root", "hostPath": {"path": "/"}}]}, f"{_T0}.volumes[0].hostPath"),
    Bad("host-port", IP, {f"{_C0}.ports": [{"containerPort": 80, "hostPort": 80}]},
        f"{_T0}.containers[0].ports[0].hostPort"),
    Bad("sys-admin", IP, {f"{_C0}.securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
        f"{_T0}.containers[0].securityContext.capabilities.add"),
    # every control of the baseline Pod Security Standard (docs/api.md, "Security of templates")
    Bad("selinux-type", IP, {f"{_C0}.securityContext": {"seLinuxOptions": {"type": "spc_t"}}},
        f"{_T0}.containers[0].securityContext.seLinuxOptions.type"),
    Bad("selinux-user", IP, {f"{_V0}.template.spec.securityContext": {
        "seLinuxOptions": {"user": "system_u"}}}, f"{_T0}.securityContext.seLinuxOptions.user"),
    Bad("proc-mount", IP, {f"{_C0}.securityContext": {"procMount": "Unmasked"}},
        f"{_T0}.containers[0].securityContext.procMount"),
    Bad("seccomp-unconfined", IP, {f"{_C0}.securityContext": {
        "seccompProfile": {"type": "Unconfined"}}},
        f"{_T0}.containers[0].securityContext.seccompProfile.type"),
    Bad("seccomp-unconfined-pod", IP, {f"{_V0}.template.spec.securityContext": {
        "seccompProfile": {"type": "Unconfined"}}}, f"{_T0}.securityContext.seccompProfile.type"),
    Bad("apparmor-unconfined", IP, {f"{_C0}.securityContext": {
        "appArmorProfile": {"type": "Unconfined"}}},
        f"{_T0}.containers[0].securityContext.appArmorProfile.type"),
    Bad("apparmor-annotation", IP, {f"{_V0}.template.metadata": {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/server": "unconfined"}}},
        "spec.variants[0].template.metadata.annotations"),
    Bad("unsafe-sysctl", IP, {f"{_V0}.template.spec.securityContext": {
        "sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
        f"{_T0}.securityContext.sysctls[0].name"),
    Bad("host-process", IP, {f"{_C0}.securityContext": {"windowsOptions": {"hostProcess": True}}},
        f"{_T0}.containers[0].securityContext.windowsOptions.hostProcess"),
    Bad("host-process-pod", IP, {f"{_V0}.template.spec.securityContext": {
        "windowsOptions": {"hostProcess": True}}},
        f"{_T0}.securityContext.windowsOptions.hostProcess"),
    Bad("node-name", IP, {f"{_V0}.template.spec.nodeName": "h100-0"}, f"{_T0}.nodeName"),
    # tolerates every taint, the not-ready/unreachable ones the operator times included
    Bad("keyless-toleration", IP, {f"{_V0}.template.spec.tolerations": [
        {"operator": "Exists"}]}, f"{_T0}.tolerations[0].key"),
    Bad("ephemeral-container", IP, {f"{_V0}.template.spec.ephemeralContainers": [
        {"name": "debug", "image": "busybox", "securityContext": {"privileged": True}}]},
        f"{_T0}.ephemeralContainers"),
    Bad("duplicate-container-names", IP, {f"{_V0}.template.spec.containers": [
        {"name": "server", "image": "a"}, {"name": "server", "image": "b"}]},
        f"{_T0}.containers[1]", "spec.variants.0.template.spec.containers"),
    Bad("template-label-key", IP, {f"{_V0}.template.metadata": {"labels": {"bad key!": "x"}}},
        "spec.variants[0].template.metadata.labels"),
    Bad("template-label-value", IP, {f"{_V0}.template.metadata": {"labels": {"app": "a b"}}},
        "spec.variants[0].template.metadata.labels"),
    Bad("apool-missing-family", AP, {"spec.family": DELETE}, "spec.family"),
    Bad("apool-unknown-family", AP, {"spec.family": "gaudi"}, "spec.family"),
    Bad("apool-capacity-type", AP, {"spec.capacityType": "preemptible"}, "spec.capacityType"),
    Bad("apool-negative-price", AP, {"spec.pricePerAcceleratorHour": -0.5},
        "spec.pricePerAcceleratorHour"),
    Bad("apool-price-string", AP, {"spec.pricePerAcceleratorHour": "11.03"},
        "spec.pricePerAcceleratorHour"),
    Bad("apool-huge-price", AP, {"spec.pricePerAcceleratorHour": 1e9},
        "spec.pricePerAcceleratorHour"),
    Bad("apool-empty-selector", AP, {"spec.nodeSelector": {}}, "spec.nodeSelector"),
    Bad("apool-selector-key", AP, {"spec.nodeSelector": {"bad key!": "x"}}, "spec.nodeSelector"),
    Bad("apool-selector-value", AP, {"spec.nodeSelector": {"pool": "bad value!"}},
        "spec.nodeSelector.pool"),
    Bad("apool-negative-max", AP, {"spec.maxAccelerators": -1}, "spec.maxAccelerators"),
    Bad("apool-name-too-long", AP, {"metadata.name": "a" * 64}, "metadata.name"),
)

MODELS: dict[str, type[BaseModel]] = {IP: InferencePool, AP: AcceleratorPool}


def test_base_objects_are_valid() -> None:
    InferencePool.model_validate(base_pool())
    AcceleratorPool.model_validate(base_apool())


def test_table_is_large_and_unique() -> None:
    assert len(BAD) >= 25
    assert len({b.id for b in BAD}) == len(BAD)


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_pydantic_refuses_and_names_the_field(bad: Bad) -> None:
    with pytest.raises(ValidationError) as caught:
        MODELS[bad.kind].model_validate(bad.body())
    assert bad.python_text in str(caught.value)


# --- Hypothesis strategies: valid objects and ways to break them ---------------------------

_dns = st.from_regex(r"[a-z]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
_label_value = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,14}[A-Za-z0-9])?", fullmatch=True)
_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)  # no lone surrogates
_rate = st.floats(min_value=0, max_value=1e6, exclude_min=True, allow_nan=False)


def _accelerator(family: str) -> st.SearchStrategy[Obj]:
    count = st.integers(1, 64)
    if family == "tpu":
        topology = st.from_regex(r"[1-9][0-9]{0,2}x[1-9][0-9]{0,2}(x[1-9][0-9]{0,2})?",
                                 fullmatch=True)
        typed = st.fixed_dictionaries({"family": st.just("tpu"), "type": _label_value},
                                      optional={"topology": topology, "count": count})
        return typed | st.fixed_dictionaries({"family": st.just("tpu")}, optional={"count": count})
    return st.fixed_dictionaries({"family": st.just(family)},
                                 optional={"product": _label_value, "type": _label_value,
                                           "count": count})


def _name(obj: Obj) -> str:
    return str(obj["name"])


_container: st.SearchStrategy[Obj] = st.fixed_dictionaries(
    {"name": _dns, "image": _text},
    optional={
        "args": st.lists(_text, max_size=3),
        "securityContext": st.fixed_dictionaries({}, optional={
            "privileged": st.just(False),
            "capabilities": st.fixed_dictionaries({"add": st.lists(
                st.sampled_from(BASELINE_CAPABILITIES), max_size=3)})}),
        "ports": st.lists(st.fixed_dictionaries({"containerPort": st.integers(1, 65535)}),
                          max_size=2),
    },
)
_template = st.fixed_dictionaries({"spec": st.fixed_dictionaries(
    {"containers": st.lists(_container, min_size=1, max_size=3, unique_by=_name)},
    optional={"hostNetwork": st.just(False),
              "volumes": st.lists(st.fixed_dictionaries({"name": _dns, "emptyDir": st.just({})}),
                                  max_size=2, unique_by=_name)})},
    optional={"metadata": st.fixed_dictionaries({}, optional={
        "labels": st.dictionaries(_dns, _label_value, max_size=3),
        "annotations": st.dictionaries(_dns, _text, max_size=3)})})


def _variant(name: str, family: str) -> st.SearchStrategy[Obj]:
    return st.fixed_dictionaries(
        {"name": st.just(name), "accelerator": _accelerator(family), "capacity": _rate,
         "template": _template},
        optional={"costPerHour": st.floats(0, 1e5, allow_nan=False),
                  "preference": st.integers(-100, 100)})


def _window() -> st.SearchStrategy[Obj]:
    return st.fixed_dictionaries({}, optional={
        "stabilizationSeconds": st.integers(0, 3600),
        "tolerance": st.floats(0, 1, exclude_max=True, allow_nan=False)})


_demand = st.fixed_dictionaries(
    {},
    optional={"targetUtilization": st.floats(0, 1, exclude_min=True, allow_nan=False),
              "scaleUp": _window(), "scaleDown": _window()},
)
_source = st.one_of(
    st.fixed_dictionaries({"fixed": st.floats(0, 1e7, allow_nan=False)}),
    st.fixed_dictionaries({"prometheus": st.fixed_dictionaries(
        {"query": _text},
        optional={"url": st.from_regex(r"https?://[a-z0-9.]{1,20}(:[1-9][0-9]{1,3})?(/[a-z]{0,8})?",
                                       fullmatch=True),
                  "timeoutSeconds": st.integers(1, 300),
                  "auth": st.fixed_dictionaries({"secretRef": st.fixed_dictionaries(
                      {"name": _dns}, optional={"key": _dns})})})}),
)
_rollout = st.fixed_dictionaries({}, optional={
    "makeBeforeBreak": st.just(False),
    "maxSurge": st.integers(1, 10_000) | st.integers(1, 100).map(lambda n: f"{n}%"),
    "readyTimeoutSeconds": st.integers(10, 7200),
})


@st.composite
def valid_pools(draw: st.DrawFn) -> Obj:
    """InferencePools that the API server and pydantic must both accept."""
    names = draw(st.lists(_dns, min_size=1, max_size=4, unique=True))
    families = [draw(st.sampled_from(["nvidia", "tpu", "neuron"])) for _ in names]
    variants = [draw(_variant(n, f)) for n, f in zip(names, families, strict=True)]
    distinct = len(set(families))
    min_families = draw(st.integers(1, distinct))
    low = draw(st.integers(0, 100))
    high = draw(st.integers(max(low, min_families, 1), 10_000))
    resilience = draw(st.fixed_dictionaries({}, optional={
        "maxFamilyShare": st.floats(1 / distinct, 1, allow_nan=False),
        "maxNodePoolShare": st.floats(0, 1, exclude_min=True, allow_nan=False),
    }))
    spec: Obj = {
        "model": draw(_text),
        "replicas": {"min": low, "max": high},
        "demand": draw(_demand) | draw(_source),
        "resilience": resilience | {"minFamilies": min_families},
        "variants": variants,
    }
    spec |= draw(st.fixed_dictionaries({}, optional={"priority": st.integers(0, 1000),
                                                     "rollout": _rollout}))
    name = draw(st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
    return {"apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
            "metadata": {"name": name}, "spec": spec}


def _break_replicas(pool: Obj, k: int) -> None:
    pool["spec"]["replicas"]["min"] = pool["spec"]["replicas"]["max"] + k


def _break_capacity(pool: Obj, value: float) -> None:
    pool["spec"]["variants"][-1]["capacity"] = value


def _break_family(pool: Obj, family: str) -> None:
    pool["spec"]["variants"][0]["accelerator"]["family"] = family


def _break_name(pool: Obj, capacity: float) -> None:
    pool["spec"]["variants"].append(copy.deepcopy(pool["spec"]["variants"][0]))
    pool["spec"]["variants"][-1]["capacity"] = capacity


def _break_privileged(pool: Obj, index: int) -> None:
    containers = pool["spec"]["variants"][0]["template"]["spec"]["containers"]
    containers[index % len(containers)]["securityContext"] = {"privileged": True}


def _break_utilization(pool: Obj, value: float) -> None:
    pool["spec"]["demand"]["targetUtilization"] = value


# (what, how to break, the value each breaking receives)
BREAKERS: tuple[tuple[str, Any, st.SearchStrategy[Any]], ...] = (
    ("min above max", _break_replicas, st.integers(1, 100)),
    ("capacity not positive", _break_capacity,
     st.floats(max_value=0, allow_nan=False, allow_infinity=False, min_value=-1e300)),
    ("unknown family", _break_family,
     _text.filter(lambda s: s not in ("nvidia", "tpu", "neuron"))),
    ("duplicate variant", _break_name, _rate),
    ("privileged", _break_privileged, st.integers(0, 10)),
    ("utilization out of range", _break_utilization,
     st.floats(1, 1e9, exclude_min=True, allow_nan=False)
     | st.floats(-1e9, 0, allow_nan=False)),
)


@st.composite
def invalid_pools(draw: st.DrawFn) -> tuple[str, Obj]:
    """A valid pool broken in one known way: (what was broken, the object)."""
    pool = copy.deepcopy(draw(valid_pools()))
    what, breaker, values = draw(st.sampled_from(BREAKERS))
    breaker(pool, draw(values))
    return what, pool


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=valid_pools())
def test_valid_pools_are_accepted_and_round_trip(pool: Obj) -> None:
    model = InferencePool.model_validate(pool)
    dumped = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert InferencePool.model_validate(dumped) == model
    assert _is_within(pool, dumped)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=invalid_pools())
def test_broken_pools_are_refused(case: tuple[str, Obj]) -> None:
    with pytest.raises(ValidationError):
        InferencePool.model_validate(case[1])


def _is_within(given_: Any, dumped: Any) -> bool:
    """Everything the user wrote survives the round trip (defaults may be added)."""
    if isinstance(given_, dict):
        return isinstance(dumped, dict) and all(
            k in dumped and _is_within(v, dumped[k]) for k, v in given_.items())
    if isinstance(given_, list):
        return (isinstance(dumped, list) and len(given_) == len(dumped)
                and all(_is_within(a, b) for a, b in zip(given_, dumped, strict=True)))
    return bool(given_ == dumped)
