"""What one reconcile did: the planner fills it in, metrics and logs read it.

A module of its own so that `metrics` can name it without importing the planner, which imports
`metrics` (no circle in the import graph; tests/unit/test_import_graph.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferpool.placement import Plan


@dataclass
class Report:
    """What one reconcile did, for logs, metrics and tests."""

    phases: dict[str, float] = field(default_factory=dict)
    writes: int = 0
    plan: Plan | None = None
    invalid: int = 0
