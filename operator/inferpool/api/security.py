"""Pod templates, and the rules that stop them from reaching the host.

A user allowed to create InferencePools must not obtain, through the operator, pods they could
not create directly. The CRD checks the template against the real PodSpec schema
(api/pod_schema.py); these models declare only the fields that give host access, each with a
CEL rule for the API server (laid over the real schema) and a validator twin here, and keep the
rest as written.
See docs/api.md, "Security".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from inferpool.api.cel import SECURITY_REASON, cel, rule
from inferpool.api.common import (
    DNS_LABEL_PATTERN,
    LABEL_KEY_PATTERN,
    ApiModel,
    StrictBool,
    StrictInt,
    StrictStr,
)

# Validation context key: `Model.model_validate(body, context={ALLOW_PRIVILEGED: True})` lets
# host access through (for namespaces the operator is configured to trust).
ALLOW_PRIVILEGED: Final = "allowPrivilegedTemplates"
# pydantic error type of every host-access refusal, so they can be told from other errors.
HOST_ACCESS: Final = "host_access"

RESERVED_LABEL_PREFIX: Final = "inferpool.dev/"

# Capabilities the Pod Security Standard "baseline" profile lets a container add.
BASELINE_CAPABILITIES: Final = (
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
)
_CAPS_CEL: Final = "[" + ", ".join(f"'{c}'" for c in BASELINE_CAPABILITIES) + "]"

# SELinux types the baseline profile allows (empty: the runtime's default).
BASELINE_SELINUX_TYPES: Final = ("container_t", "container_init_t", "container_kvm_t",
                                 "container_engine_t")
# Sysctls the baseline profile allows (the "safe" set, namespaced per pod).
BASELINE_SYSCTLS: Final = (
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
)
APPARMOR_ANNOTATION_PREFIX: Final = "container.apparmor.security.beta.kubernetes.io/"


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


_PRIVILEGED = "privileged containers are not allowed"
_CAPABILITIES = "only capabilities of the baseline Pod Security Standard may be added"
_HOST_PORT = "host ports are not allowed"
_HOST_PATH = "hostPath volumes are not allowed"
_HOST_PROCESS = "Windows HostProcess containers are not allowed"
_SELINUX_TYPE = ("only the SELinux types of the baseline Pod Security Standard may be set ("
                 + ", ".join(BASELINE_SELINUX_TYPES) + ")")
_SELINUX_USER_ROLE = "a custom SELinux user or role is not allowed"
_SECCOMP = "seccomp profile Unconfined is not allowed"
_APPARMOR = "AppArmor profile Unconfined is not allowed (RuntimeDefault or Localhost)"
_PROC_MOUNT = "procMount must be Default (Unmasked exposes the host's /proc)"
_SYSCTL = "only the safe sysctls of the baseline Pod Security Standard may be set"
_NODE_NAME = ("nodeName is not allowed: it bypasses the node pool the operator places the "
              "replica on")
_EPHEMERAL = "ephemeral containers cannot be part of a pod template"
# Fields the operator sets itself (docs/api.md, "Fields the operator sets").
ACCELERATOR_RESOURCES: Final = ("nvidia.com/gpu", "google.com/tpu", "aws.amazon.com/neuron")
_ACCELERATOR_ELSEWHERE = ("only the first container gets accelerators, set by the operator from "
                          "accelerator.count: other containers and init containers must not "
                          "request " + ", ".join(ACCELERATOR_RESOURCES))
_KEYLESS_TOLERATION = ("a toleration must name a taint key: one without tolerates every taint, "
                       "also the not-ready and unreachable taints whose tolerationSeconds the "
                       "operator sets")


def asks_accelerators(container: Mapping[str, Any]) -> list[str]:
    """The accelerator resources a container (as a dict) requests or limits."""
    resources = container.get("resources") or {}
    return sorted({r for kind in ("limits", "requests") for r in resources.get(kind) or {}
                   if r in ACCELERATOR_RESOURCES})


def _forbid(expression: str, message: str) -> dict[str, Any]:
    return cel(rule(expression, message, reason=SECURITY_REASON))


def _refuse(info: ValidationInfo, message: str) -> None:
    context = info.context
    if not (isinstance(context, Mapping) and context.get(ALLOW_PRIVILEGED)):
        raise PydanticCustomError(HOST_ACCESS, message)


class _Open(BaseModel):
    """Part of a Kubernetes type: the declared fields are checked, the rest is kept as is."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True,
                              extra="allow", use_attribute_docstrings=True)


_CapabilityList = Annotated[list[Annotated[StrictStr, Field(max_length=64)]], Field(max_length=64)]


class Capabilities(_Open):
    add: _CapabilityList | None = Field(default=None, json_schema_extra=_forbid(
        f"self.all(c, c in {_CAPS_CEL})", _CAPABILITIES))
    """Capabilities to add; only those of the baseline Pod Security Standard are accepted."""

    @field_validator("add")
    @classmethod
    def _baseline(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        extra = sorted(set(value or ()) - set(BASELINE_CAPABILITIES))
        if extra:
            _refuse(info, f"{_CAPABILITIES} (not {', '.join(extra)})")
        return value


class SELinuxOptions(_Open):
    type: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        f"self == '' || self in {_cel_list(BASELINE_SELINUX_TYPES)}", _SELINUX_TYPE))
    """Empty or one of the baseline profile's container types."""
    user: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        "self == ''", _SELINUX_USER_ROLE))
    """Must be empty."""
    role: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        "self == ''", _SELINUX_USER_ROLE))
    """Must be empty."""

    @field_validator("type")
    @classmethod
    def _baseline_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and value not in BASELINE_SELINUX_TYPES:
            _refuse(info, f"{_SELINUX_TYPE} (not {value})")
        return value

    @field_validator("user", "role")
    @classmethod
    def _no_user_or_role(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value:
            _refuse(info, _SELINUX_USER_ROLE)
        return value


class SeccompProfile(_Open):
    type: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        "self != 'Unconfined'", _SECCOMP))
    """RuntimeDefault or Localhost; Unconfined is refused."""

    @field_validator("type")
    @classmethod
    def _confined(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "Unconfined":
            _refuse(info, _SECCOMP)
        return value


class AppArmorProfile(_Open):
    type: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        "self != 'Unconfined'", _APPARMOR))
    """RuntimeDefault or Localhost; Unconfined is refused."""

    @field_validator("type")
    @classmethod
    def _confined(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "Unconfined":
            _refuse(info, _APPARMOR)
        return value


class WindowsOptions(_Open):
    host_process: StrictBool | None = Field(default=None, json_schema_extra=_forbid(
        "!self", _HOST_PROCESS))
    """Must not be true."""

    @field_validator("host_process")
    @classmethod
    def _no_host_process(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value:
            _refuse(info, _HOST_PROCESS)
        return value


class _Confinement(_Open):
    """Security options a pod and its containers share."""

    se_linux_options: SELinuxOptions | None = Field(default=None, alias="seLinuxOptions")
    """SELinux labels: only the baseline profile's types, no user or role."""
    seccomp_profile: SeccompProfile | None = None
    """Seccomp profile; Unconfined is refused."""
    app_armor_profile: AppArmorProfile | None = None
    """AppArmor profile; Unconfined is refused."""
    windows_options: WindowsOptions | None = None
    """Windows options; HostProcess is refused."""


class SecurityContext(_Confinement):
    proc_mount: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        "self == 'Default'", _PROC_MOUNT))
    """Must be Default (Unmasked is refused)."""
    privileged: StrictBool | None = Field(default=None, json_schema_extra=_forbid(
        "!self", _PRIVILEGED))
    """Must not be true."""
    capabilities: Capabilities | None = None
    """Linux capabilities; only those of the baseline Pod Security Standard may be added."""

    @field_validator("privileged")
    @classmethod
    def _unprivileged(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value:
            _refuse(info, _PRIVILEGED)
        return value

    @field_validator("proc_mount")
    @classmethod
    def _default_proc_mount(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value != "Default":
            _refuse(info, _PROC_MOUNT)
        return value


class Sysctl(_Open):
    name: Annotated[StrictStr, Field(min_length=1, max_length=253)] = Field(
        json_schema_extra=_forbid(f"self in {_cel_list(BASELINE_SYSCTLS)}", _SYSCTL))
    """A sysctl of the baseline profile's safe set."""

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str, info: ValidationInfo) -> str:
        if value not in BASELINE_SYSCTLS:
            _refuse(info, f"{_SYSCTL} (not {value})")
        return value


class PodSecurityContext(_Confinement):
    sysctls: Annotated[list[Sysctl], Field(max_length=32)] | None = None
    """Namespaced sysctls; only the baseline profile's safe set."""


class ContainerPort(_Open):
    host_port: StrictInt | None = Field(default=None, json_schema_extra=_forbid(
        "self == 0", _HOST_PORT))
    """Must not be set."""

    @field_validator("host_port")
    @classmethod
    def _no_host_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value:
            _refuse(info, _HOST_PORT)
        return value


class Container(_Open):
    """A container (core/v1 Container); fields not listed here are passed through."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
    """Container name (a DNS label)."""
    image: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    """Container image; each accelerator family needs its own build."""
    security_context: SecurityContext | None = None
    """Security options; privileged is refused."""
    ports: Annotated[list[ContainerPort], Field(max_length=64)] | None = None
    """Ports the container listens on; hostPort is refused."""


class Volume(_Open):
    """A volume (core/v1 Volume); fields not listed here are passed through."""

    model_config = ConfigDict(json_schema_extra=cel(rule(
        "!has(self.hostPath)", _HOST_PATH, field_path=".hostPath", reason=SECURITY_REASON)))

    name: Annotated[StrictStr, Field(min_length=1, max_length=63)]
    """Volume name."""
    host_path: dict[str, Any] | None = None
    """Must not be set."""

    @field_validator("host_path")
    @classmethod
    def _no_host_path(cls, value: dict[str, Any] | None, info: ValidationInfo
                      ) -> dict[str, Any] | None:
        if value is not None:
            _refuse(info, _HOST_PATH)
        return value


_HOST_NAMESPACES: Final = {
    "host_network": "the host network namespace is not allowed",
    "host_pid": "the host PID namespace is not allowed",
    "host_ipc": "the host IPC namespace is not allowed",
}


def _host_flag(field: str, alias: str) -> Any:
    return Field(default=None, alias=alias,
                 json_schema_extra=_forbid("!self", _HOST_NAMESPACES[field]))


class Toleration(_Open):
    """A toleration (core/v1 Toleration); fields not listed here are passed through."""

    model_config = ConfigDict(json_schema_extra=cel(rule(
        "has(self.key) && self.key != ''", _KEYLESS_TOLERATION, field_path=".key")))

    key: StrictStr | None = Field(default=None, validate_default=True)
    """The taint key tolerated (required here)."""

    @field_validator("key")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if not value:
            raise ValueError(_KEYLESS_TOLERATION)
        return value


class PodSpec(_Open):
    """The pod spec (core/v1 PodSpec). The operator adds the node selector, tolerations and
    accelerator limits of the node pool it places replicas on; fields not listed here are
    passed through unchanged to the Deployment."""


    containers: Annotated[list[Container], Field(min_length=1, max_length=32)]
    """Containers of the pod; the first one is the model server and gets the accelerators."""
    init_containers: Annotated[list[Container], Field(max_length=32)] | None = None
    """Init containers, e.g. to download weights."""
    volumes: Annotated[list[Volume], Field(max_length=256)] | None = None
    """Volumes; hostPath is refused."""
    host_network: StrictBool | None = _host_flag("host_network", "hostNetwork")
    """Must not be true."""
    host_pid: StrictBool | None = _host_flag("host_pid", "hostPID")
    """Must not be true."""
    host_ipc: StrictBool | None = _host_flag("host_ipc", "hostIPC")
    """Must not be true."""
    security_context: PodSecurityContext | None = None
    """Pod-level security options: the baseline profile's SELinux, seccomp, AppArmor,
    HostProcess and sysctl rules."""
    node_name: StrictStr | None = Field(default=None, json_schema_extra=_forbid(
        "self == ''", _NODE_NAME))
    """Must not be set: the operator chooses the node pool."""
    ephemeral_containers: list[dict[str, Any]] | None = Field(
        default=None, max_length=0, json_schema_extra=_forbid("size(self) == 0", _EPHEMERAL))
    """Must not be set."""
    tolerations: Annotated[list[Toleration], Field(max_length=64)] | None = None
    """Tolerations, each naming its taint key; the operator adds its own (docs/api.md)."""

    # Checked here, not by CEL: the CRD keeps resource quantities as any scalar (as the API
    # server accepts them), a type CEL cannot read; the operator reports the pool SpecInvalid.
    @model_validator(mode="after")
    def _accelerators_in_first_container(self) -> PodSpec:
        others = [*self.containers[1:], *(self.init_containers or ())]
        for c in others:
            if asks := asks_accelerators(c.model_dump(by_alias=True)):
                raise ValueError(f"{_ACCELERATOR_ELSEWHERE} (container {c.name}: "
                                 f"{', '.join(asks)})")
        return self

    @field_validator("containers")
    @classmethod
    def _unique_names(cls, containers: list[Container]) -> list[Container]:
        names = [c.name for c in containers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"container names must be unique: {', '.join(twice)}")
        return containers

    @field_validator("node_name")
    @classmethod
    def _no_node_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value:
            _refuse(info, _NODE_NAME)
        return value

    @field_validator("host_network", "host_pid", "host_ipc")
    @classmethod
    def _no_host_namespaces(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value:
            _refuse(info, _HOST_NAMESPACES[str(info.field_name)])
        return value


# Label values as the API server accepts them (empty, or alphanumeric with -_. inside).
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LabelMap = Annotated[dict[str, Annotated[StrictStr, Field(max_length=63, pattern=_LABEL_VALUE)]],
                      Field(max_length=64)]
_LABEL_KEYS = "template labels must be label keys, such as app.kubernetes.io/name"
_RESERVED = f"labels with the prefix {RESERVED_LABEL_PREFIX} are set by the operator"


class TemplateMetadata(ApiModel):
    labels: _LabelMap | None = Field(default=None, json_schema_extra=cel(
        rule(f"self.all(k, !k.startsWith('{RESERVED_LABEL_PREFIX}'))", _RESERVED),
        rule(f"self.all(k, k.size() <= 317 && k.matches(r'{LABEL_KEY_PATTERN}'))", _LABEL_KEYS)))
    """Labels added to every pod; the operator adds inferpool.dev/pool, inferpool.dev/variant
    and inferpool.dev/accelerator."""
    annotations: Annotated[dict[str, StrictStr], Field(max_length=64)] | None = Field(
        default=None, json_schema_extra=_forbid(
            f"self.all(k, !k.startsWith('{APPARMOR_ANNOTATION_PREFIX}') || "
            "self[k] == 'runtime/default' || self[k].startsWith('localhost/'))", _APPARMOR))
    """Annotations added to every pod; an AppArmor annotation must name runtime/default or a
    localhost/ profile."""

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        bad = sorted(k for k in labels or {} if k.startswith(RESERVED_LABEL_PREFIX))
        if bad:
            raise ValueError(f"{_RESERVED}: {', '.join(bad)}")
        invalid = sorted(k for k in labels or {}
                         if len(k) > 317 or not re.fullmatch(LABEL_KEY_PATTERN, k))
        if invalid:
            raise ValueError(f"{_LABEL_KEYS}, not {', '.join(map(repr, invalid))}")
        return labels

    @field_validator("annotations")
    @classmethod
    def _apparmor(cls, annotations: dict[str, str] | None, info: ValidationInfo
                  ) -> dict[str, str] | None:
        for key, value in (annotations or {}).items():
            if key.startswith(APPARMOR_ANNOTATION_PREFIX) and not (
                    value == "runtime/default" or value.startswith("localhost/")):
                _refuse(info, _APPARMOR)
        return annotations


class PodTemplate(ApiModel):
    """Pod template of the variant's Deployments (core/v1 PodTemplateSpec)."""

    metadata: TemplateMetadata | None = None
    """Labels and annotations for the pods."""
    spec: PodSpec

    def to_dict(self) -> dict[str, Any]:
        """The template as the operator puts it into a Deployment."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def template_violations(template: PodTemplate | Mapping[str, Any]) -> list[str]:
    """Every way the pod template reaches the host, as `path: reason` (empty if none).

    The rules are the CRD's CEL rules; a template parsed with the ALLOW_PRIVILEGED context
    (or a raw PodTemplateSpec dict) can be checked again here, e.g. to warn about it."""
    raw = template.to_dict() if isinstance(template, PodTemplate) else template
    try:
        PodTemplate.model_validate(raw)
    except ValidationError as exc:
        return [f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors() if e["type"] == HOST_ACCESS]
    return []


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")
