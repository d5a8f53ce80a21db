"""The CLI behaves like kubectl/helm, checked on the real command run as a subprocess: data on
stdout parses (no library writes there), user errors are one line and an exit code (never a
traceback), flags win over INFERPOOL_* variables, and help is quick and shows real defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from inferpool.controller.settings import HELP, Settings, SettingsError, env_name, load
from tests.unit.fake_cluster import H100, V6E, ipool, snapshot_doc

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "scenarios"


def inferpool(*args: str, env: dict[str, str] | None = None, timeout: float = 120
              ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("INFERPOOL_") and k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "inferpool.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**clean, **(env or {})}, check=False)


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "error:" in last
    return last


# -- data on stdout parses -----------------------------------------------------------------


def test_plan_json_on_stdout_parses_with_the_solver_loaded(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(snapshot_doc([ipool("chat", 30, [H100, V6E])])))
    done = inferpool("plan", "--snapshot", str(path), "--output", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # a HiGHS banner (>= 1.16) here would break this
    assert report["pools"][0]["name"] == "chat"
    assert yaml.safe_load(inferpool("plan", "--snapshot", str(path), "-o", "yaml").stdout)[
        "pools"][0]["name"] == "chat"


@pytest.mark.slow
def test_simulate_json_on_stdout_parses() -> None:
    done = inferpool("simulate", str(EXAMPLES / "day-spike.yaml"), "--quick", "--policies",
                     "inferpool,offline", "-o", "json", timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["policies"]) == {"inferpool", "offline"}


# -- errors: one line, exit 1 (2 for usage) ------------------------------------------------


def test_a_bad_variable_breaks_only_the_command_that_reads_it() -> None:
    env = {"INFERPOOL_TICK_SECONDS": "15s"}
    assert inferpool("sandbox", "--help", env=env).returncode == 0
    assert inferpool("--help", env=env).returncode == 0
    line = one_line_error(inferpool("run", env=env), 1)
    assert "INFERPOOL_TICK_SECONDS=15s" in line


def test_a_bad_flag_value_is_a_usage_error_of_that_subcommand() -> None:
    done = inferpool("run", "--tick-seconds", "15s")
    line = one_line_error(done, 2)
    assert "--tick-seconds=15s" in line
    assert done.stderr.startswith("usage: inferpool run")
    done = inferpool("sandbox", "up", "--bogus")
    one_line_error(done, 2)
    assert done.stderr.startswith("usage: inferpool sandbox up")
    assert "--prometheus-allowed-urls=user:pw@x" in one_line_error(
        inferpool("run", "--prometheus-allowed-urls", "user:pw@x"), 2)


def test_no_kubeconfig_is_one_line(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing")}
    line = one_line_error(inferpool("status", env=env), 1)
    assert "Kubernetes configuration" in line
    assert "--kubeconfig" in line


def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1",
                                               "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}]}))
    line = one_line_error(inferpool("status", "--kubeconfig", str(kubeconfig)), 1)
    assert "cannot reach the Kubernetes API server" in line


def test_a_missing_snapshot_file_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(inferpool("plan", "--snapshot", str(tmp_path / "nope.json")), 1)
    assert "nope.json" in line


# -- settings: flags over variables over defaults, in one place ----------------------------


def test_flags_override_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPOOL_NAMESPACES", "a")
    monkeypatch.setenv("INFERPOOL_TICK_SECONDS", "5")
    assert load({}).namespaces == ("a",)
    assert load({"namespaces": ["b"]}).namespaces == ("b",)  # replaces, does not append
    assert load({"tick_seconds": "7"}).tick_seconds == 7.0
    assert load({}).tick_seconds == 5.0


def test_lists_split_on_commas_and_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load({"allow_privileged_namespaces": ["ns1,ns2", "ns3"]}
                ).allow_privileged_namespaces == ("ns1", "ns2", "ns3")
    monkeypatch.setenv("INFERPOOL_ALLOW_PRIVILEGED_NAMESPACES", "ns1, ns2")
    assert load({}).allow_privileged_namespaces == ("ns1", "ns2")


def test_the_documented_flag_spelling_works() -> None:
    from inferpool.cli import build_parser
    from inferpool.controller.settings import given_flags

    args = build_parser(["run"]).parse_args(["run", "--allow-privileged-namespaces=ns1,ns2"])
    assert load(given_flags(args)).allow_privileged_namespaces == ("ns1", "ns2")


def test_kubernetes_variables_are_read_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/k")
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    assert (load({}).kubeconfig, load({}).lease_namespace) == ("/k", "ops")
    assert load({"kubeconfig": "/mine"}).kubeconfig == "/mine"


def test_bad_values_name_where_they_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPOOL_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError, match="INFERPOOL_LOG_LEVEL=loud") as raised:
        load({})
    assert not raised.value.from_flag
    with pytest.raises(SettingsError, match="--hysteresis=2") as raised:
        load({"hysteresis": "2"})
    assert raised.value.from_flag


def test_every_setting_has_help_a_flag_and_a_variable() -> None:
    assert set(HELP) == set(Settings.model_fields)
    assert env_name("tick_seconds") == "INFERPOOL_TICK_SECONDS"


# -- help ----------------------------------------------------------------------------------


def test_top_level_help_is_quick_and_imports_no_subcommand() -> None:
    code = ("import sys, time; t = time.perf_counter(); from inferpool import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('kopf', 'kubernetes', 'pydantic', 'highspy', 'aiohttp')"
            " if m in sys.modules]\n"
            "print(heavy, time.perf_counter() - t, file=sys.stderr)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - started
    heavy, seconds = done.stderr.rsplit("]", 1)
    print(f"inferpool --help: {float(seconds) * 1000:.0f} ms in-process, {wall:.2f} s wall")
    assert heavy == "["  # nothing heavy imported
    assert "COMMAND" in done.stdout


def test_run_help_shows_real_defaults() -> None:
    done = inferpool("run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "(default: None)" not in text
    assert "(default: 15.0; env: INFERPOOL_TICK_SECONDS)" in text
    assert "--allow-privileged-namespaces" in text
