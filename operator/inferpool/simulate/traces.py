"""Demand traces: one value in requests/s per model per step, generated or read from CSV.

A trace is computed once per run and shared by every policy, so all of them face exactly the
same demand, noise included.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
from collections.abc import Sequence
from pathlib import Path

from inferpool.simulate.scenario import CsvTrace, GeneratedTrace, Scenario, ScenarioError

DAY = 86400.0


def demand_traces(scenario: Scenario) -> dict[str, list[float]]:
    """Model name -> demand (rps) at the start of each step, held for the step."""
    times = [i * float(scenario.step_seconds) for i in range(scenario.steps)]
    out: dict[str, list[float]] = {}
    for index, model in enumerate(scenario.models):
        spec = model.demand
        if spec.generated is not None:
            seed = spec.generated.seed if spec.generated.seed is not None else (
                scenario.seed + index)
            out[model.name] = generated(spec.generated, times, scenario.start_weekday, seed)
        else:
            assert spec.csv is not None
            out[model.name] = from_csv(spec.csv, times, scenario.base_dir,
                                       f"models[{index}].demand.csv")
    return out


def generated(g: GeneratedTrace, times: Sequence[float], start_weekday: int, seed: int
              ) -> list[float]:
    rng = random.Random(seed)
    values = []
    for t in times:
        hour = (t % DAY) / 3600.0
        # cosine between the night trough and the peak at peak_hour
        shape = 0.5 + 0.5 * math.cos(2 * math.pi * (hour - g.peak_hour) / 24.0)
        value = g.base + (g.peak - g.base) * shape
        if (start_weekday + int(t // DAY)) % 7 >= 5:
            value *= g.weekend_factor
        for spike in g.spikes:
            if spike.at <= t < spike.at + spike.duration:
                value *= spike.factor
        # draw even when noise is 0, so adding noise to one model never shifts another's
        value *= max(0.0, 1.0 + rng.gauss(0.0, 1.0) * g.noise)
        values.append(value)
    return values


def from_csv(spec: CsvTrace, times: Sequence[float], base_dir: Path, where: str) -> list[float]:
    path = Path(spec.path)
    if not path.is_absolute():
        path = base_dir / path
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ScenarioError(f"{where}.path: cannot read {path}: {exc.strerror or exc}") from None
    points: list[tuple[float, float]] = []
    for line, row in enumerate(rows, start=2):
        try:
            t, v = float(row[spec.time_column]), float(row[spec.column])
        except KeyError as exc:
            raise ScenarioError(f"{where}: {path} has no column {exc.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: {path} line {line}: not a number") from None
        if not (math.isfinite(t) and math.isfinite(v)) or v < 0:
            raise ScenarioError(f"{where}: {path} line {line}: demand must be finite and >= 0")
        points.append((t, v * spec.scale))
    if not points:
        raise ScenarioError(f"{where}: {path} has no rows")
    points.sort()
    starts = [p[0] for p in points]
    if starts[0] > 0:
        raise ScenarioError(f"{where}: {path} starts at {starts[0]} s, not at 0")
    # the last row holds for one typical interval, which is also the period when repeating
    period = starts[-1] + (starts[-1] - starts[-2] if len(starts) > 1 else 1.0)
    if times and times[-1] >= period and not spec.repeat:
        raise ScenarioError(f"{where}: {path} covers {period:.0f} s, the scenario lasts "
                            f"{times[-1] + (times[1] - times[0] if len(times) > 1 else 0):.0f} s"
                            " (set repeat: true to replay it)")
    out = []
    for t in times:
        at = t % period if spec.repeat else t
        out.append(points[bisect.bisect_right(starts, at) - 1][1])
    return out
