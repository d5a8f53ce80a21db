"""`inferpool snapshot | plan | status`: look at what the operator sees and would do.

None of them writes to the cluster. `snapshot` saves the operator's inputs (the slim views of
nodes, accelerator pods, AcceleratorPools, InferencePools and the operator's Deployments) as
JSON; `plan` runs the placement engine on the live cluster or on such a file, through the same
code path as the operator (`controller.planning`); `status` prints InferencePools and node pools.

Imports are lazy: the CLI's table of contents must not pay for the Kubernetes client or the
solver when another subcommand runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferpool.controller.planning import ClusterInputs
    from inferpool.controller.settings import Settings

SNAPSHOT_KIND = "InferpoolClusterSnapshot"
SNAPSHOT_VERSION = 1


def register(parser: argparse.ArgumentParser) -> None:
    """One module for three subcommands: which one is being registered is the parser's name."""
    command = parser.prog.rsplit(" ", 1)[-1]
    registrars: dict[str, Callable[[argparse.ArgumentParser], None]] = {
        "snapshot": _register_snapshot, "plan": _register_plan, "status": _register_status}
    registrars[command](parser)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--kubeconfig", help="read the live cluster (default: $KUBECONFIG or "
                       "~/.kube/config, in-cluster config inside a pod)")
    group.add_argument("--snapshot", type=Path, metavar="FILE",
                       help="read a file saved with `inferpool snapshot` instead")


# The operator's settings that change what the engine decides: `plan` takes them (flags, then
# the same INFERPOOL_* variables as `inferpool run`) so it can match a running operator.
ENGINE_SETTINGS = ("solver", "solver_time_budget_seconds", "hysteresis", "max_moves_per_plan",
                   "stockout_seconds", "broken_seconds", "allow_privileged_namespaces")


def _output_argument(parser: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    parser.add_argument("-o", "--output", choices=formats, default=formats[0],
                        help=f"output format (default: {formats[0]})")


def _register_snapshot(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    _output_argument(parser, ("json", "yaml"))
    parser.add_argument("-f", "--file", default="-", metavar="FILE",
                        help="where to write it (default: stdout)")
    parser.set_defaults(func=_snapshot)


def _register_plan(parser: argparse.ArgumentParser) -> None:
    from inferpool.controller.settings import add_flags

    _source_arguments(parser)
    _output_argument(parser, ("table", "wide", "json", "yaml"))
    parser.add_argument("-n", "--namespace", help="print only this namespace's InferencePools "
                        "(all are planned: they compete for the same accelerators)")
    add_flags(parser.add_argument_group(  # type: ignore[arg-type]  # groups take add_argument
        "engine settings (use the operator's, if it runs with non-default ones)"),
        ENGINE_SETTINGS)
    parser.set_defaults(func=_plan)


def _register_status(parser: argparse.ArgumentParser) -> None:
    _source_arguments(parser)
    _output_argument(parser, ("table", "wide", "json", "yaml"))
    parser.add_argument("-n", "--namespace", help="only this namespace's InferencePools")
    parser.set_defaults(func=_status)


def _print_data(report: Any, fmt: str) -> None:
    if fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(report, sort_keys=False))
    else:
        print(json.dumps(report, indent=2, default=str))


# -- reading the cluster -------------------------------------------------------------------


def capture(kubeconfig: str | None) -> dict[str, Any]:
    """List what the operator watches and keep the same slim views it keeps."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from inferpool.controller import views
    from inferpool.k8s import deployments
    from inferpool.k8s import labels as lbl
    from inferpool.k8s.client import api_client

    api = api_client(kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)

    def listed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page_args: dict[str, Any] = {"limit": 500, **kwargs}
            if token:
                page_args["_continue"] = token
            try:
                response = call(*args, _preload_content=False, **page_args)
            except ApiException as exc:
                if exc.status in (401, 403):
                    raise SystemExit(f"cannot list {args[-1] if args else call.__name__}: "
                                     f"{exc.status} {exc.reason}: {exc.body!s:.300}") from exc
                raise
            doc = json.loads(response.data)
            items.extend(doc.get("items") or [])
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items

    def custom_objects(plural: str) -> list[dict[str, Any]]:
        try:
            return listed(custom.list_cluster_custom_object, lbl.GROUP, lbl.VERSION, plural)
        except ApiException as exc:
            if exc.status != 404:
                raise
            print(f"warning: {plural}.{lbl.GROUP} not found (CRDs not installed?)",
                  file=sys.stderr)
            return []

    pods = [views.pod_view(p) for p in listed(core.list_pod_for_all_namespaces)
            if views.wants_accelerators(p.get("spec") or {})]
    return {
        "kind": SNAPSHOT_KIND,
        "version": SNAPSHOT_VERSION,
        "capturedAt": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "nodes": [views.node_view(n) for n in listed(core.list_node)],
        "pods": pods,
        "accelerator_pools": [views.custom_resource_view(a)
                              for a in custom_objects("acceleratorpools")],
        "inference_pools": [views.custom_resource_view(i)
                            for i in custom_objects("inferencepools")],
        "deployments": [views.deployment_view(d) for d in listed(
            apps.list_deployment_for_all_namespaces) if deployments.is_owned(d)],
    }


def load_snapshot(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())  # JSON is YAML: both formats of `snapshot -o`
    except yaml.YAMLError as exc:
        raise SystemExit(f"{path}: not a file written by `inferpool snapshot` ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != SNAPSHOT_KIND:
        raise SystemExit(f"{path}: not a file written by `inferpool snapshot`")
    if doc.get("version") != SNAPSHOT_VERSION:
        raise SystemExit(f"{path}: snapshot version {doc.get('version')} is not supported "
                         f"(this inferpool reads version {SNAPSHOT_VERSION})")
    return doc


def _read(args: argparse.Namespace) -> dict[str, Any]:
    return load_snapshot(args.snapshot) if args.snapshot else capture(args.kubeconfig)


def _captured_at(doc: Mapping[str, Any]) -> dt.datetime:
    raw = doc.get("capturedAt")
    if isinstance(raw, str):
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return dt.datetime.now(dt.UTC)


def _inputs(doc: Mapping[str, Any], allow_privileged: Iterable[str] = ()) -> ClusterInputs:
    from inferpool.controller.planning import VIEW_NAMES, read_cluster

    return read_cluster({n: doc.get(n) or [] for n in VIEW_NAMES}, allow_privileged)


# -- snapshot ------------------------------------------------------------------------------


def _snapshot(args: argparse.Namespace) -> int:
    doc = capture(args.kubeconfig)
    if args.output == "yaml":
        import yaml

        text = yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=True)
    else:
        text = json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n"
    if args.file == "-":
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text)
        counts = ", ".join(f"{len(doc[k])} {k.replace('_', ' ')}" for k in (
            "nodes", "pods", "accelerator_pools", "inference_pools", "deployments"))
        print(f"wrote {args.file}: {counts}", file=sys.stderr)
    return 0


# -- plan ----------------------------------------------------------------------------------


def plan_report(doc: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """What the engine chooses for the cluster in `doc` and why, as plain data."""
    from inferpool.controller import planning

    inputs = _inputs(doc, settings.allow_privileged_namespaces)
    health = planning.one_shot_health(inputs, settings, _captured_at(doc))
    demands = {p.key: planning.demand_from_status(p) for p in inputs.pools}
    call = planning.engine_call(inputs, {k: d.required_rps for k, d in demands.items()},
                                settings, health.stocked_out, health.broken)
    plan, _ = planning.bindable_plan(inputs, call, settings)

    pools_out = []
    for pool in inputs.pools:
        family = {v.name: v.accelerator.family.value for v in pool.model.spec.variants}
        keys = sorted({k for k in plan.replicas if k[0] == pool.key}
                      | {k for k, d in inputs.live.items() if k[0] == pool.key and d.replicas})
        outcome = plan.outcomes.get(pool.key)
        demand = demands[pool.key]
        pools_out.append({
            "namespace": pool.namespace, "name": pool.name,
            "requiredRps": round(demand.required_rps, 3), "demandSource": demand.source,
            "demandKnown": demand.known,
            "placement": [{"variant": k[1], "nodePool": k[2], "family": family.get(k[1], "?"),
                           "now": inputs.live[k].replicas if k in inputs.live else 0,
                           "planned": plan.replicas.get(k, 0)} for k in keys],
            "capacityRps": outcome.capacity_rps if outcome else 0.0,
            "costPerHour": outcome.cost_per_hour if outcome else 0.0,
            "shortfallRps": outcome.shortfall_rps if outcome else 0.0,
            "shortfallCause": outcome.shortfall_cause if outcome else None,
            "families": list(outcome.families) if outcome else [],
            "reasons": list(outcome.reasons) if outcome else [],
        })
    return {
        "capturedAt": _captured_at(doc).isoformat(),
        "solver": plan.solver, "optimal": plan.optimal,
        "solveSeconds": round(plan.solve_seconds, 4),
        "costPerHour": round(plan.cost_per_hour, 4),
        "shortfallRps": round(plan.shortfall_rps, 3),
        "health": {"stockedOut": health.stocked_out,
                   "brokenVariants": sorted(f"{p}/{v}" for p, v in health.broken),
                   "why": health.why},
        "pools": pools_out,
        "invalid": [{"namespace": b.key.split("/", 1)[0], "name": b.key.split("/", 1)[1],
                     "message": b.message} for b in inputs.invalid],
    }


def _plan(args: argparse.Namespace) -> int:
    from inferpool.controller.settings import Settings, given_flags, load

    engine = load(given_flags(args))
    settings = Settings(**{name: getattr(engine, name) for name in ENGINE_SETTINGS})
    report = plan_report(_read(args), settings)
    if args.namespace:
        report["pools"] = [p for p in report["pools"] if p["namespace"] == args.namespace]
        report["invalid"] = [p for p in report["invalid"] if p["namespace"] == args.namespace]
    if args.output in ("json", "yaml"):
        _print_data(report, args.output)
        return 0
    out = _Output()
    optimal = "optimal" if report["optimal"] else "not proven optimal"
    out.line(f"Plan at {report['capturedAt']}: solver {report['solver']} ({optimal}, "
             f"{report['solveSeconds'] * 1000:.0f} ms), total ${report['costPerHour']:.2f}/h, "
             f"shortfall {report['shortfallRps']:.1f} req/s. Nothing is written.")
    health = report["health"]
    for pool in health["stockedOut"]:
        out.line(f"node pool {pool} treated as stocked out: {health['why'].get(pool, '')}")
    for variant in health["brokenVariants"]:
        out.line(f"variant {variant} treated as broken: {health['why'].get(variant, '')}")
    for pool in report["pools"]:
        out.line("")
        out.line(f"{pool['namespace']}/{pool['name']}: {pool['requiredRps']:.1f} req/s "
                 f"required ({pool['demandSource']})")
        rows = [[r["variant"], r["nodePool"], r["family"], str(r["now"]), str(r["planned"]),
                 _change(r["now"], r["planned"])] for r in pool["placement"]]
        out.table(["VARIANT", "NODE POOL", "FAMILY", "NOW", "PLANNED", ""], rows)
        short = (f", short {pool['shortfallRps']:.1f} req/s: {pool['shortfallCause']}"
                 if pool["shortfallRps"] > 0 else "")
        out.line(f"  capacity {pool['capacityRps']:.1f} req/s, ${pool['costPerHour']:.2f}/h, "
                 f"families {','.join(pool['families']) or '-'}{short}")
        for reason in pool["reasons"]:
            out.line(f"  - {reason}")
    for bad in report["invalid"]:
        out.line("")
        out.line(f"{bad['namespace']}/{bad['name']}: invalid, not planned: {bad['message']}")
    if not report["pools"] and not report["invalid"]:
        out.line("no InferencePools")
    return 0


def _change(now: int, planned: int) -> str:
    if planned > now:
        return f"+{planned - now}"
    if planned < now:
        return f"-{now - planned}"
    return ""


# -- status --------------------------------------------------------------------------------


def status_report(doc: Mapping[str, Any]) -> dict[str, Any]:
    from inferpool.cluster import build_snapshot
    from inferpool.controller.planning import pods_for_snapshot

    inputs = _inputs(doc)
    pools = []
    for body in sorted(doc.get("inference_pools") or [], key=lambda b: (
            b["metadata"].get("namespace", ""), b["metadata"]["name"])):
        status = body.get("status") or {}
        pools.append({
            "namespace": body["metadata"].get("namespace", ""),
            "name": body["metadata"]["name"],
            "readyReplicas": status.get("readyReplicas", 0),
            "desiredReplicas": status.get("desiredReplicas", 0),
            "demand": status.get("demand"), "requiredCapacity": status.get("requiredCapacity"),
            "capacity": status.get("capacity"), "costPerHour": status.get("costPerHour"),
            "families": status.get("families") or "",
            "conditions": sorted(c["type"] for c in status.get("conditions") or []
                                 if c.get("status") == "True"),
        })
    # every pod counts as "somebody's": what is left is free for anyone
    everything = build_snapshot(inputs.nodes.values(), pods_for_snapshot(inputs.pods, set()),
                                inputs.accelerator_pools)
    node_pools = []
    for pool in everything.pools:
        nodes = everything.nodes_of(pool.name)
        node_pools.append({
            "name": pool.name, "family": pool.family, "product": pool.product,
            "capacityType": pool.capacity_type,
            "nodesReady": sum(1 for n in nodes if n.ready and n.schedulable),
            "nodes": len(nodes),
            "acceleratorsFree": everything.free_accelerators(pool.name),
            "accelerators": everything.allocatable_accelerators(pool.name),
            "pricePerAcceleratorHour": pool.price_per_accelerator_hour,
            "priceKnown": pool.price_known,
        })
    return {"inferencePools": pools, "nodePools": node_pools}


def _status(args: argparse.Namespace) -> int:
    report = status_report(_read(args))
    if args.namespace:
        report["inferencePools"] = [p for p in report["inferencePools"]
                                    if p["namespace"] == args.namespace]
    if args.output in ("json", "yaml"):
        _print_data(report, args.output)
        return 0
    wide = args.output == "wide"
    out = _Output()

    def num(value: Any, fmt: str = "{:.1f}") -> str:
        return "-" if value is None else fmt.format(value)

    # kubectl's way: the default table fits 80 columns; -o wide adds the long ones
    pool_columns = ["NAMESPACE", "INFERENCEPOOL", "READY", "DEMAND", "CAPACITY", "$/H",
                    "FAMILIES"] + (["REQUIRED", "CONDITIONS"] if wide else [])
    out.table(pool_columns,
              [[p["namespace"], p["name"], f"{p['readyReplicas']}/{p['desiredReplicas']}",
                num(p["demand"]), num(p["capacity"]), num(p["costPerHour"], "{:.2f}"),
                p["families"] or "-"]
               + ([num(p["requiredCapacity"]), ",".join(p["conditions"]) or "-"] if wide else [])
               for p in report["inferencePools"]],
              title="InferencePools (req/s)", empty="no InferencePools")
    out.line("")
    out.table(["NODE POOL", "FAMILY", "NODES READY", "ACC FREE", "$/ACC-H"]
              + (["PRODUCT", "TYPE"] if wide else []),
              [[p["name"], p["family"], f"{p['nodesReady']}/{p['nodes']}",
                f"{p['acceleratorsFree']}/{p['accelerators']}",
                f"{p['pricePerAcceleratorHour']:.2f}" + ("" if p["priceKnown"] else "?")]
               + ([p["product"] or "-", p["capacityType"]] if wide else [])
               for p in report["nodePools"]],
              title="Node pools (ACC: accelerators)", empty="no accelerator node pools")
    if any(not p["priceKnown"] for p in report["nodePools"]):
        out.line("?: no known price for this product; an AcceleratorPool can set one")
    return 0


# -- output: rich in a terminal, plain text otherwise -----------------------


class _Output:
    def __init__(self, console: Any = None) -> None:
        self._console: Any = console
        if console is None and sys.stdout.isatty():
            from rich.console import Console

            self._console = Console()

    def line(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            print(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
              empty: str = "") -> None:
        if not rows and empty:
            self.line(f"{title}: {empty}" if title else empty)
            return
        if self._console is not None:
            from rich.table import Table

            table = Table(title=title or None, title_justify="left", box=None,
                          padding=(0, 2, 0, 0), pad_edge=False, show_edge=False)
            for header in headers:
                # a cell is never folded into a narrow column: too wide a table is cut short
                table.add_column(header, overflow="ellipsis", no_wrap=True)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        if title:
            print(title)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in [list(headers), *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                  .rstrip())
