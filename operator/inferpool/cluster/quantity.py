"""Kubernetes resource quantities ("8", "1k", "500m", "16Gi"), parsed the one way the operator
uses everywhere (pure: `inferpool.cluster` may not import the `kubernetes` package).

`parse_quantity` re-implements `kubernetes.utils.parse_quantity` exactly (same result, same
ValueError); a unit test compares the two over many inputs, invalid ones included. The helpers
below it turn a quantity into the whole numbers the operator counts with and never raise: a bad
value on one node or pod counts as nothing rather than failing a whole reconcile.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from decimal import Decimal, DecimalException, InvalidOperation
from typing import Any

# The client library's tables (kubernetes/utils/quantity.py), including its uppercase "K".
_EXPONENTS = {"n": -3, "u": -2, "m": -1, "K": 1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_BINARY_PREFIXES = "KMGTPE"


def parse_quantity(quantity: Any) -> Decimal:
    """The client library's parse_quantity: a Decimal, or ValueError for what it refuses."""
    if isinstance(quantity, int | float | Decimal):
        return Decimal(quantity)
    text = str(quantity)
    number, suffix = text, None
    if len(text) >= 2 and text[-1] == "i":
        if text[-2] in _EXPONENTS:
            number, suffix = text[:-2], text[-2:]
    elif len(text) >= 1 and text[-1] in _EXPONENTS:
        number, suffix = text[:-1], text[-1:]
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"Invalid number format: {number}") from None
    if suffix is None:
        return value
    if suffix.endswith("i"):
        if suffix[0] not in _BINARY_PREFIXES:  # "ki", "mi", "ni", "ui" are not binary suffixes
            raise ValueError(f"{text} has unknown suffix")
        base = 1024
    elif len(suffix) == 1:
        base = 1000
    else:
        raise ValueError(f"{text} has unknown suffix")
    if suffix[0] not in _EXPONENTS:
        raise ValueError(f"{text} has unknown suffix")
    try:
        return value * (base ** Decimal(_EXPONENTS[suffix[0]]))
    except DecimalException as exc:
        raise ValueError(f"Invalid quantity: {text}") from exc


def quantity(value: Any) -> Decimal | None:
    """A finite, non-negative quantity; None when absent, unparsable, negative, NaN or infinite
    (the library accepts "inf", "NaN" and "-1"; no resource can have them). Booleans are not
    quantities, although Python counts them as integers."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _checked_text(value)  # the same few strings recur across thousands of pods
    return _checked(value)


@functools.lru_cache(maxsize=4096)
def _checked_text(value: str) -> Decimal | None:
    return _checked(value)


def _checked(value: Any) -> Decimal | None:
    try:
        parsed = parse_quantity(value)
    except (ValueError, TypeError, ArithmeticError):
        return None
    return parsed if parsed.is_finite() and parsed >= 0 else None


def is_valid(value: Any) -> bool:
    """Whether a present value is a usable quantity (absent values are not errors)."""
    return value is None or quantity(value) is not None


def count(value: Any, *, round_up: bool = False) -> int:
    """Whole units (devices, bytes): what a node offers rounds down, what a pod asks rounds up
    (fractions of an extended resource are refused by the API server anyway). Bad: 0."""
    parsed = quantity(value)
    if parsed is None:
        return 0
    return _whole(parsed, round_up)


def milli(value: Any, *, round_up: bool = False) -> int:
    """Thousandths (millicores for CPU); rounding and bad values as in `count`."""
    parsed = quantity(value)
    if parsed is None:
        return 0
    return _whole(parsed * 1000, round_up)


def _whole(value: Decimal, round_up: bool) -> int:
    return math.ceil(value) if round_up else math.floor(value)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def container_request(container: Any, resource: str, *, scale: int = 1) -> int:
    """What one container asks of `resource`: max(requests, limits), rounded up; `scale` 1000
    gives millicores."""
    resources = _map(_map(container).get("resources"))
    parse = milli if scale == 1000 else count
    return max(parse(_map(resources.get(kind)).get(resource), round_up=True)
               for kind in ("requests", "limits"))


def pod_request(spec: Any, resource: str, *, scale: int = 1) -> int:
    """Kubernetes' effective request of a pod: max(sum over containers, largest init
    container). Restartable (sidecar) init containers are not treated specially."""
    spec = _map(spec)
    regular = sum(container_request(c, resource, scale=scale)
                  for c in spec.get("containers") or () if isinstance(c, Mapping))
    init = max((container_request(c, resource, scale=scale)
                for c in spec.get("initContainers") or () if isinstance(c, Mapping)),
               default=0)
    return max(regular, init)
