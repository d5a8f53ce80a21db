"""`inferpool simulate SCENARIO.yaml`: replay a scenario through the real engine and compare
policies. Prints a table (or, with `-o json|yaml`, the summary), and with `--out DIR` writes
summary.json and the plots there."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inferpool.simulate.engine import POLICIES, simulate
from inferpool.simulate.report import summarize, table, write_report
from inferpool.simulate.scenario import ScenarioError, load_scenario

QUICK_SECONDS = 86400.0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario YAML (see docs/simulate.md)")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="write summary.json and the PNG plots into DIR")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"comma-separated, from {', '.join(POLICIES)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="simulate the first day only (events after it are dropped)")
    parser.add_argument("--no-plots", action="store_true", help="with --out: JSON only")
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table",
                        help="print the table, or the summary as JSON or YAML (default: table)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
        if args.quick:
            scenario = scenario.truncated(QUICK_SECONDS)
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        unknown = [p for p in policies if p not in POLICIES]
        if unknown or not policies:
            raise ScenarioError(f"--policies: unknown {', '.join(unknown) or '(none given)'}; "
                                f"choose from {', '.join(POLICIES)}")
        result = simulate(scenario, policies,
                          progress=lambda line: print(line, file=sys.stderr, flush=True))
    except ScenarioError as exc:
        print(f"inferpool simulate: {args.scenario}:\n{exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        summary = write_report(result, args.out, plots=not args.no_plots)
        print(f"wrote {', '.join(summary['files'])} to {args.out}", file=sys.stderr)
    else:
        summary = summarize(result)
    if args.output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(summary)), sort_keys=False))
    else:
        print(json.dumps(summary, indent=2) if args.output == "json" else table(summary))
    return 0
