"""Collision-free Deployment names (pure).

A Deployment's name is the plain `<pool>-<variant>-<node pool>` (k8s/labels.py) unless that is
ambiguous: another placement wants the same plain name, or a Deployment already has it (another
placement's, or one that is not ours at all). Then it is the hashed name, which is distinct for
distinct parts. A placement that already has a Deployment keeps its name, so existing
installations and a name given once never change, whatever appears later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from inferpool.k8s import labels as lbl

PlacementKey = tuple[str, str, str]  # (namespace/pool, variant, node pool)


@dataclass(frozen=True)
class Names:
    names: dict[PlacementKey, str] = field(default_factory=dict)
    # placements whose plain name a Deployment that is not ours holds -> "namespace/name"
    avoided: dict[PlacementKey, str] = field(default_factory=dict)


def resolve(wanted: Iterable[PlacementKey], live: Mapping[PlacementKey, str],
            foreign: Iterable[str]) -> Names:
    """`wanted`: placements to write; `live`: placement -> name of its Deployment (ours);
    `foreign`: "namespace/name" of every Deployment that is not ours."""
    def ns(key: PlacementKey) -> str:
        return key[0].split("/", 1)[0]

    def plain(key: PlacementKey) -> str:
        return lbl.deployment_name(key[0].split("/", 1)[1], key[1], key[2])

    foreign_names = set(foreign)
    held = {f"{ns(k)}/{name}": k for k, name in live.items()}
    new = sorted(set(wanted) - set(live))
    claims: dict[str, int] = {}
    for key in new:
        claims[f"{ns(key)}/{plain(key)}"] = claims.get(f"{ns(key)}/{plain(key)}", 0) + 1
    out = Names()
    for key in sorted(set(wanted)):
        name = f"{ns(key)}/{plain(key)}"
        if name in foreign_names and live.get(key) != plain(key):
            out.avoided[key] = name  # told for as long as that Deployment holds the name
        if key in live:
            out.names[key] = live[key]
            continue
        if name in foreign_names or claims[name] > 1 or held.get(name, key) != key:
            out.names[key] = lbl.hashed_deployment_name(key[0].split("/", 1)[1], key[1],
                                                        key[2])
        else:
            out.names[key] = plain(key)
    return out
