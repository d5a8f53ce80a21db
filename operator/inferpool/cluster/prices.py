"""Built-in list prices per accelerator-hour (see prices.yaml for figures and sources)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from inferpool.cluster.snapshot import CapacityType


@dataclass(frozen=True, slots=True)
class PriceEntry:
    family: str
    product: str
    price_per_accelerator_hour: float
    instance_type: str | None = None
    default: bool = False
    source: str = ""
    as_of: str = ""


@dataclass(frozen=True, slots=True)
class Price:
    per_accelerator_hour: float
    known: bool


@dataclass(frozen=True, slots=True)
class PriceTable:
    entries: tuple[PriceEntry, ...]
    spot_price_factor: float = 0.4
    fallback_price_per_accelerator_hour: float = 20.0

    def lookup(
        self,
        family: str,
        product: str | None,
        instance_type: str | None = None,
        capacity_type: CapacityType = "on-demand",
    ) -> Price:
        """Instance type first (prices differ by cloud), then the product's default entry."""
        entry = self._find(family, product, instance_type)
        if entry is None:
            return Price(self.fallback_price_per_accelerator_hour, known=False)
        price = entry.price_per_accelerator_hour
        if capacity_type == "spot":
            price *= self.spot_price_factor
        return Price(round(price, 6), known=True)

    def _find(
        self, family: str, product: str | None, instance_type: str | None
    ) -> PriceEntry | None:
        same_family = [e for e in self.entries if e.family == family]
        if instance_type:
            for e in same_family:
                if e.instance_type == instance_type and (product is None or e.product == product):
                    return e
        if product is None:
            return None
        candidates = [e for e in same_family if e.product == product]
        for e in candidates:
            if e.default:
                return e
        return candidates[0] if candidates else None


def parse_price_table(doc: Mapping[str, Any]) -> PriceTable:
    entries = []
    for raw in doc.get("entries") or ():
        entries.append(
            PriceEntry(
                family=str(raw["family"]),
                product=str(raw["product"]),
                price_per_accelerator_hour=float(raw["price_per_accelerator_hour"]),
                instance_type=raw.get("instance_type"),
                default=bool(raw.get("default", False)),
                source=str(raw.get("source", "")),
                as_of=str(raw.get("as_of", "")),
            )
        )
    return PriceTable(
        entries=tuple(entries),
        spot_price_factor=float(doc.get("spot_price_factor", 0.4)),
        fallback_price_per_accelerator_hour=float(
            doc.get("fallback_price_per_accelerator_hour", 20.0)
        ),
    )


@cache
def default_prices() -> PriceTable:
    text = resources.files("inferpool.cluster").joinpath("prices.yaml").read_text("utf-8")
    return parse_price_table(yaml.safe_load(text))
