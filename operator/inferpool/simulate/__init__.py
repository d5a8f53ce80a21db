"""Trace-driven simulation: replay demand, failures and stockouts through the real engine.

`simulate(load_scenario(path))` runs each policy on its own simulated cluster with a simulated
clock; the inferpool policy is the operator's own code (DemandTracker, HealthTracker,
`planning.engine_call`, `place()`, `make_before_break`). No Kubernetes client is imported.
See docs/simulate.md.
"""

from inferpool.simulate.engine import POLICIES, PolicyRun, SimulationResult, simulate
from inferpool.simulate.report import summarize, write_report
from inferpool.simulate.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "POLICIES",
    "PolicyRun",
    "Scenario",
    "ScenarioError",
    "SimulationResult",
    "load_scenario",
    "parse_scenario",
    "simulate",
    "summarize",
    "write_report",
]
