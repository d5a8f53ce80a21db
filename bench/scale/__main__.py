"""`make bench-scale`: the operator at scale on the sandbox.

    .venv/bin/python -m bench.scale [--nodes 2000] [--node-pools 32] [--pools 500]
                                    [--soak-minutes 30]

Generates `--node-pools` simulated node pools of the three families (H100, A100 and L4 GPUs; TPU
v6e and v5e slices; Trainium, Trainium2 and Inferentia2) with the vendors' real labels and taints,
`--nodes` nodes in all, and `--pools` InferencePools of 1-3 variants with fixed demand sized to
use ~65% of the accelerators. All InferencePools exist before the operator starts. Measures:

- time from operator start to every InferencePool placed (status.readyReplicas ==
  desiredReplicas at the current generation), with the operator's resident memory over time;
- failover at that scale: single nodes hosting replicas fail one after another; from the node's
  NotReady to its InferencePools' replicas Ready elsewhere, p50/p99;
- the operator's API writes (its `reconciled` log lines and `inferpool_api_writes_total`) and
  Events, as requests/s, next to the usual client-side QPS limits;
- the planner's reconcile phases (`phases_ms`) p50/p99;
- a soak: one demand bump every `--soak-interval` seconds; each must show in the status within
  `--stall-seconds` (else a watch has stalled), and the memory trend over the soak (MB/min).

Prints one JSON summary on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from bench.scale.drive import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--node-pools", type=int, default=32)
    parser.add_argument("--pools", type=int, default=500, help="InferencePools")
    parser.add_argument("--failures", type=int, default=20, help="single-node failures")
    parser.add_argument("--failure-spacing", type=float, default=15.0,
                        help="seconds between two node failures")
    parser.add_argument("--soak-minutes", type=float, default=30.0, help="0 skips the soak")
    parser.add_argument("--soak-interval", type=float, default=30.0)
    parser.add_argument("--stall-seconds", type=float, default=10.0,
                        help="a soak change not in the status within this long is a stall")
    parser.add_argument("--tick-seconds", type=float, default=15.0)
    parser.add_argument("--name", default="scale", help="sandbox name")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    parser.add_argument("--out", type=Path, help="keep the operator log and pools file here")
    args = parser.parse_args()
    # stop cleanly (operator stopped, sandbox down) on SIGTERM, and on SIGINT even when started
    # in the background by a shell that ignores it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        summary = run(args, out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
