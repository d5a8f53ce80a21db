"""`inferpool demo`: the whole story on a local sandbox, in about three minutes.

Sandbox up → CRDs and RBAC via the Helm chart → a real Prometheus scraping a load exporter → the
operator, running as the chart's ServiceAccount → the example InferencePools → a load spike → a
whole TPU pool failure during the spike → recovery and calm. A timeline of Ready replicas per
family and node pool is printed as it happens, and drawn into a PNG at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inferpool.sandbox import binaries, control
from inferpool.sandbox.operator_process import OperatorProcess, install_crds
from inferpool.sandbox.prometheus import Exporter, PrometheusProcess

NAMESPACE = "serving"
RELEASE_NAMESPACE = "inferpool-system"
MODEL_70B = "meta-llama/Llama-3.1-70B-Instruct"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true",
                        help="leave the sandbox, Prometheus and the operator running at the end")
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="where the timeline (JSON) and chart (PNG) go")
    parser.add_argument("--repo", type=Path, default=Path.cwd(),
                        help="project checkout (for charts/ and examples/)")
    parser.set_defaults(func=run)


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Demo:
    kubectl_path: Path
    helm_path: Path
    kubeconfig: Path
    repo: Path
    started: float = field(default_factory=time.monotonic)
    samples: list[dict[str, Any]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    _last_line: str = ""

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None
                ) -> str:
        done = subprocess.run([str(self.kubectl_path),
                               f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
                              input=input, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, what: str) -> None:
        self.marks.append((self.now(), what))
        say(f"{self.now():6.1f}s  ── {what}")

    def sample(self) -> None:
        """Record Ready replicas per (InferencePool, family, node pool) and print changes."""
        deployments = json.loads(self.kubectl("get", "deployments", "-n", NAMESPACE, "-o",
                                              "json"))["items"]
        pools = json.loads(self.kubectl("get", "ipool", "-n", NAMESPACE, "-o", "json"))["items"]
        row: dict[str, Any] = {"t": round(self.now(), 1), "ready": {}, "status": {}}
        for d in deployments:
            labels = d["metadata"]["labels"]
            key = (f"{labels['inferpool.dev/pool']}/{labels['inferpool.dev/accelerator']}:"
                   f"{labels['inferpool.dev/node-pool']}")
            row["ready"][key] = d.get("status", {}).get("readyReplicas", 0)
        for p in pools:
            st = p.get("status", {})
            row["status"][p["metadata"]["name"]] = {
                "demand": st.get("demand"), "capacity": st.get("capacity"),
                "cost": st.get("costPerHour"),
                "true": sorted(c["type"] for c in st.get("conditions", [])
                               if c["status"] == "True" and c["type"] != "Ready")}
        self.samples.append(row)
        # Print when placement, capacity or conditions change (demand moves every sample).
        key = json.dumps([row["ready"], {n: {k: v for k, v in st.items() if k != "demand"}
                                         for n, st in row["status"].items()}], sort_keys=True)
        if key != self._last_line:
            say(f"{row['t']:6.1f}s  {self._format(row)}")
            self._last_line = key

    @staticmethod
    def _format(row: dict[str, Any]) -> str:
        parts = []
        for name, st in sorted(row["status"].items()):
            here = " ".join(f"{k.split('/', 1)[1]}={v}" for k, v in sorted(row["ready"].items())
                            if k.startswith(name + "/") and v)
            flags = f" [{','.join(st['true'])}]" if st["true"] else ""
            parts.append(f"{name}: {here or '-'} ({st['capacity'] or 0:.0f}/"
                         f"{st['demand'] or 0:.0f} req/s, ${st['cost'] or 0:.0f}/h){flags}")
        return " | ".join(parts)

    def watch(self, seconds: float, every: float = 2.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(every)


def run(args: argparse.Namespace) -> int:
    bins = binaries.ensure(say)
    say("== inferpool demo: sandbox up")
    state = control.up("demo", log=say)
    repo: Path = args.repo
    demo = Demo(bins["kubectl"], bins["helm"], Path(state.kubeconfig), repo)
    workdir = Path(tempfile.mkdtemp(prefix="inferpool-demo-"))
    exporter = Exporter()
    prometheus = PrometheusProcess([exporter.target])
    op: OperatorProcess | None = None
    try:
        kubeconfig, lease = _install_chart(demo, workdir)
        exporter.set_rate(30.0, model_name=MODEL_70B)
        prometheus.start()
        prometheus.wait_until_up()
        say(f"== Prometheus at {prometheus.url} scraping the load exporter")
        op = OperatorProcess(kubeconfig, workdir, "demo", f"--prometheus-url={prometheus.url}",
                             "--tick-seconds=3", f"--lease-namespace={RELEASE_NAMESPACE}",
                             f"--lease-name={lease}")
        op.start()
        op.wait_leader(timeout=60)
        say(f"== operator running (logs: {op.log_path})")
        _apply_examples(demo)
        _story(demo, exporter)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "timeline.json").write_text(json.dumps(
            {"samples": demo.samples, "marks": demo.marks}, indent=1))
        png = _plot(demo, args.out / "timeline.png")
        say(f"== timeline written to {args.out / 'timeline.json'}"
            + (f" and {png}" if png else ""))
    finally:
        if args.keep:
            say(f"== kept running: export KUBECONFIG={state.kubeconfig}; Prometheus "
                f"{prometheus.url}; stop with: inferpool sandbox down --name demo")
        else:
            if op is not None:
                op.stop()
            prometheus.close()
            exporter.close()
            control.down("demo", log=say)
    return 0


def _install_chart(demo: Demo, workdir: Path) -> tuple[Path, str]:
    """CRDs and RBAC from the chart (no in-cluster operator: the sandbox runs no containers),
    then a kubeconfig that authenticates as the chart's ServiceAccount."""
    chart = demo.repo / "charts" / "inferpool-operator"
    if not chart.is_dir():
        say("== charts/ not found: installing the CRDs directly, operator runs as admin")
        install_crds(demo.kubectl_path, demo.kubeconfig)
        return demo.kubeconfig, "inferpool-operator"
    subprocess.run([str(demo.helm_path), f"--kubeconfig={demo.kubeconfig}", "install",
                    "inferpool", str(chart), "--namespace", RELEASE_NAMESPACE,
                    "--create-namespace", "--set", "replicaCount=0", "--wait"],
                   check=True, capture_output=True)
    say("== helm install inferpool charts/inferpool-operator (CRDs, RBAC, ServiceAccount)")
    sa = demo.kubectl("get", "serviceaccount", "-n", RELEASE_NAMESPACE, "-l",
                      "app.kubernetes.io/name=inferpool-operator", "-o",
                      "jsonpath={.items[0].metadata.name}").strip()
    token = demo.kubectl("create", "token", sa, "-n", RELEASE_NAMESPACE,
                         "--duration=2h").strip()
    admin = yaml.safe_load(demo.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "sandbox", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "sandbox", "user": sa}}],
    }
    path = workdir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    say(f"== the operator authenticates as system:serviceaccount:{RELEASE_NAMESPACE}:{sa}")
    # The chart's Role lets the ServiceAccount renew one Lease only, named like the release.
    return path, sa


def _apply_examples(demo: Demo) -> None:
    examples = demo.repo / "examples"
    demo.kubectl("create", "namespace", NAMESPACE)
    demo.kubectl("apply", "-f", str(examples / "accelerator-pools.yaml"))
    for name in ("llama-70b.yaml", "llama-8b.yaml"):
        pool = yaml.safe_load((examples / name).read_text())
        # The example waits 5 minutes before scaling down and averages load over 2 minutes;
        # the demo has no 5 minutes.
        demand = pool["spec"]["demand"]
        demand["scaleDown"] = {"stabilizationSeconds": 20}
        if "prometheus" in demand:
            demand["prometheus"]["query"] = demand["prometheus"]["query"].replace("[2m]", "[10s]")
        demo.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(pool))
    say("== applied examples/accelerator-pools.yaml, llama-70b and llama-8b "
        f"(namespace {NAMESPACE}; for the demo: rate() over 10 s, 20 s scale-down window)")


def _story(demo: Demo, exporter: Exporter) -> None:
    say("\n   time  InferencePool: family:node-pool=Ready replicas (capacity/demand, cost) "
        "[conditions]")
    demo.mark("llama-70b at 30 req/s")
    demo.watch(25)
    demo.mark("load spike: llama-70b to 80 req/s")
    exporter.set_rate(80.0, model_name=MODEL_70B)
    demo.watch(30)
    demo.mark("the whole TPU v6e pool fails (4 nodes: kubelets stop)")
    _sandbox("fail", "--pool", "v6e")
    demo.watch(35)
    demo.mark("TPU v6e pool back; load calms to 30 req/s")
    _sandbox("recover", "--pool", "v6e")
    exporter.set_rate(30.0, model_name=MODEL_70B)
    demo.watch(60)


def _sandbox(action: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "inferpool.cli", "sandbox", action, "--name", "demo",
                    *args], check=True, capture_output=True)


def _plot(demo: Demo, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("(matplotlib is not installed: no PNG; pip install matplotlib)")
        return None
    pools = sorted({k.split("/", 1)[0] for s in demo.samples for k in s["ready"]})
    fig, axes = plt.subplots(len(pools), 1, figsize=(11, 3.2 * len(pools)), sharex=True,
                             squeeze=False)
    times = [s["t"] for s in demo.samples]
    for ax, pool in zip(axes[:, 0], pools, strict=True):
        keys = sorted({k for s in demo.samples for k in s["ready"] if k.startswith(pool + "/")})
        series = [[s["ready"].get(k, 0) for s in demo.samples] for k in keys]
        ax.stackplot(times, series, labels=[k.split("/", 1)[1] for k in keys], step="post")
        for t, what in demo.marks:
            ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
            ax.text(t, ax.get_ylim()[1] * 0.95, " " + _short(what), fontsize=7, va="top")
        ax.set_title(f"{pool}: Ready replicas by family:node pool")
        ax.set_ylabel("replicas")
        ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.0, 1.0))
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(text: str) -> str:
    return text.split(":")[0].split("(")[0].strip()[:28]

