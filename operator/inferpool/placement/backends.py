"""MILP libraries behind one small interface, so the staged solve in milp.py names none.

HiGHS is the default (docs/placement.md has the measurements): it is already a dependency for
the fast path's LP, and it closed every stage of the benchmark instances, while SCIP (through
PySCIPOpt), although several times faster on some cost stages, stalled on a resilience stage
that HiGHS proved in seconds. SCIP stays selectable for measurement when PySCIPOpt is
installed. OR-Tools was measured too but cannot share a process with highspy (both bundle
HiGHS and their symbols clash), so it is not offered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import highspy

from inferpool.placement.linear import INF, LinearModel

BackendName = Literal["scip", "highs"]


@dataclass(frozen=True, slots=True)
class Outcome:
    values: list[float] | None  # None: no feasible solution found
    optimal: bool
    bound: float | None


class Backend(Protocol):
    def fix_to_zero(self, cols: Sequence[int]) -> None: ...
    def solve(self, objective: Mapping[int, float], time_limit: float, gap: float,
              start: Mapping[int, float] | None) -> Outcome: ...
    def hold(self, objective: Mapping[int, float], at_most: float) -> None: ...


def default_backend() -> BackendName:
    return "highs"



def make_backend(name: BackendName, model: LinearModel) -> Backend:
    return _Scip(model) if name == "scip" else _Highs(model)


class _Highs:
    def __init__(self, model: LinearModel) -> None:
        self.num_cols = model.num_cols
        self.is_mip = any(model.integer)
        self.h = model.to_highs()
        self.h.setOptionValue("mip_abs_gap", 1e-7)

    def fix_to_zero(self, cols: Sequence[int]) -> None:
        for col in cols:
            self.h.changeColBounds(col, 0.0, 0.0)

    def solve(self, objective: Mapping[int, float], time_limit: float, gap: float,
              start: Mapping[int, float] | None) -> Outcome:
        costs = [0.0] * self.num_cols
        for col, coef in objective.items():
            costs[col] = coef
        self.h.changeColsCost(self.num_cols, list(range(self.num_cols)), costs)
        self.h.setOptionValue("time_limit", max(time_limit, 0.01))
        self.h.setOptionValue("mip_rel_gap", gap)
        if start:
            cols = sorted(start)
            # sparse start: HiGHS completes the other columns itself
            self.h.setSolution(len(cols), cols, [start[c] for c in cols])
        self.h.run()
        if self.h.getInfo().primal_solution_status != 2:
            return Outcome(None, False, None)
        info = self.h.getInfo()
        return Outcome(
            values=list(self.h.getSolution().col_value),
            optimal=self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal,
            # an LP (no integer column left) has no MIP bound: its optimum is the bound
            bound=float(info.mip_dual_bound if self.is_mip else info.objective_function_value),
        )

    def hold(self, objective: Mapping[int, float], at_most: float) -> None:
        cols = sorted(objective)
        self.h.addRow(-INF, at_most, len(cols), cols, [objective[c] for c in cols])


class _Scip:
    def __init__(self, model: LinearModel) -> None:
        import pyscipopt

        self.scip = pyscipopt
        m = pyscipopt.Model()
        m.hideOutput()
        m.setParam("parallel/maxnthreads", 1)
        m.setParam("randomization/randomseedshift", 0)  # same input, same search
        inf = m.infinity()

        def finite(v: float) -> float:
            return inf if v == INF else -inf if v == -INF else v

        self.m = m
        self.vars = [
            m.addVar(vtype="I" if integer else "C", lb=finite(lo), ub=finite(hi))
            for lo, hi, integer in zip(model.lower, model.upper, model.integer, strict=True)
        ]
        for r in range(model.num_rows):
            span = range(model.row_start[r], model.row_start[r + 1])
            expr = pyscipopt.quicksum(model.row_value[k] * self.vars[model.row_index[k]]
                                      for k in span)
            lo, hi = model.row_lower[r], model.row_upper[r]
            if lo > -INF and hi < INF and lo == hi:
                m.addCons(expr == lo)
                continue
            if lo > -INF:
                m.addCons(expr >= lo)
            if hi < INF:
                m.addCons(expr <= hi)

    def _expr(self, objective: Mapping[int, float]) -> Any:
        return self.scip.quicksum(c * self.vars[i] for i, c in sorted(objective.items()))

    def fix_to_zero(self, cols: Sequence[int]) -> None:
        self.m.freeTransform()
        for col in cols:
            self.m.chgVarUb(self.vars[col], 0.0)
            self.m.chgVarLb(self.vars[col], 0.0)

    def solve(self, objective: Mapping[int, float], time_limit: float, gap: float,
              start: Mapping[int, float] | None) -> Outcome:
        m = self.m
        m.freeTransform()
        m.setObjective(self._expr(objective), "minimize")
        m.setParam("limits/time", max(time_limit, 0.01))
        m.setParam("limits/gap", gap)
        if start:
            sol = m.createPartialSol()
            for col, value in sorted(start.items()):
                m.setSolVal(sol, self.vars[col], value)
            m.addSol(sol)
        m.optimize()
        if m.getNSols() == 0:
            return Outcome(None, False, None)
        best = m.getBestSol()
        return Outcome(
            values=[m.getSolVal(best, v) for v in self.vars],
            optimal=m.getStatus() in ("optimal", "gaplimit"),
            bound=float(m.getDualbound()),
        )

    def hold(self, objective: Mapping[int, float], at_most: float) -> None:
        self.m.freeTransform()
        self.m.addCons(self._expr(objective) <= at_most)
