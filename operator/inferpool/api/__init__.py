"""The custom resources of inferpool.dev/v1alpha1 as frozen pydantic models.

Parse a kopf body with `InferencePool.model_validate(body)`; dump with
`model_dump(by_alias=True, exclude_none=True)`. The CRDs in crds/ are generated from these
models (`inferpool crds`), so the API server and the operator enforce the same rules.
"""

from inferpool.api.accelerator_pool import (
    AcceleratorPool,
    AcceleratorPoolSpec,
    AcceleratorPoolStatus,
)
from inferpool.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    CapacityType,
    Condition,
    ConditionStatus,
    ConditionType,
    Family,
    ObjectMeta,
    set_condition,
)
from inferpool.api.inference_pool import (
    Accelerator,
    Demand,
    InferencePool,
    InferencePoolSpec,
    InferencePoolStatus,
    PlacementRow,
    PrometheusSource,
    Replicas,
    Resilience,
    Rollout,
    ScaleDown,
    ScaleUp,
    Variant,
)
from inferpool.api.security import ALLOW_PRIVILEGED, PodTemplate, template_violations

__all__ = [
    "ALLOW_PRIVILEGED",
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Accelerator",
    "AcceleratorPool",
    "AcceleratorPoolSpec",
    "AcceleratorPoolStatus",
    "CapacityType",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "Demand",
    "Family",
    "InferencePool",
    "InferencePoolSpec",
    "InferencePoolStatus",
    "ObjectMeta",
    "PlacementRow",
    "PodTemplate",
    "PrometheusSource",
    "Replicas",
    "Resilience",
    "Rollout",
    "ScaleDown",
    "ScaleUp",
    "Variant",
    "set_condition",
    "template_violations",
]
