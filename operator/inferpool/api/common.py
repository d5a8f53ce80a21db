"""Building blocks shared by both custom resources: base model, scalar types, conditions."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "inferpool.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "inferpool"

# Names of our objects end up as label values and inside Deployment names: at most 63
# characters, stricter than the API server's default for custom resources.
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX: Final = 63
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A label key: an optional DNS-subdomain prefix and "/", then a name.
LABEL_KEY_PATTERN: Final = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE_PATTERN: Final = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"

# Strict scalars: the API server refuses "3" for an integer and true for a number, so the
# models must too (pydantic's lax mode would coerce them). Strict floats still take ints,
# exactly like OpenAPI `type: number`.
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
StrictStr = Annotated[str, Strict()]
StrictBool = Annotated[bool, Strict()]
# Object names: what the API server allows (a DNS subdomain), but short enough for a label value.
ObjectName = Annotated[StrictStr, Field(min_length=1, max_length=DNS_LABEL_MAX,
                                        pattern=DNS_SUBDOMAIN_PATTERN)]
LabelValue = Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)]


class ApiModel(BaseModel):
    """Base of every spec model: frozen, camelCase on the wire, unknown fields refused.

    Unknown fields are refused because the API server prunes (or, with kubectl's default
    strict field validation, refuses) them too, so a typo in an offline manifest is caught.
    """

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


class StatusModel(ApiModel):
    """Base of status models: written by the operator, so a newer operator's extra fields
    must not break an older reader."""

    model_config = ConfigDict(extra="ignore")


class Family(enum.StrEnum):
    """Accelerator family: which device plugin resource, taint and labels apply."""

    NVIDIA = "nvidia"
    TPU = "tpu"
    NEURON = "neuron"


class CapacityType(enum.StrEnum):
    """How nodes of a pool are bought: spot nodes can be reclaimed at any time."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"
    RESERVED = "reserved"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(enum.StrEnum):
    """Condition types the operator sets. The CRD does not restrict types to these."""

    READY = "Ready"
    DEGRADED = "Degraded"
    CAPACITY_SHORTFALL = "CapacityShortfall"
    REBALANCING = "Rebalancing"
    SPEC_INVALID = "SpecInvalid"


_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


class Condition(StatusModel):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: Annotated[StrictStr, Field(min_length=1, max_length=316, pattern=(
        r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"))]
    """Type of condition in CamelCase, e.g. Ready."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[StrictStr, Field(min_length=1, max_length=1024, pattern=_REASON.pattern)]
    """Programmatic identifier of the last transition, in CamelCase."""
    message: Annotated[StrictStr, Field(max_length=32768)] = ""
    """Human-readable details about the last transition."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: Annotated[StrictInt, Field(ge=0)] | None = None
    """The .metadata.generation the condition was set for."""


def set_condition(conditions: Sequence[Condition], new: Condition) -> tuple[Condition, ...]:
    """Replace the condition of `new.type`, keeping its lastTransitionTime if the status did
    not change (the standard meaning of the field); other conditions keep their order."""
    out: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            out.append(old)
            continue
        replaced = True
        if old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        out.append(new)
    if not replaced:
        out.append(new)
    return tuple(out)


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; everything else is ignored."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True,
                              extra="ignore")

    name: ObjectName
    namespace: StrictStr | None = None
    uid: StrictStr | None = None
    generation: StrictInt | None = None
    resource_version: StrictStr | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value
