"""`inferpool simulate`: the command writes the JSON summary and the plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferpool.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_writes_summary_and_plots(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["simulate", str(EXAMPLES / "week-two-outages.yaml"), "--quick",
                 "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["steps"] == 1440  # --quick: the first day only
    assert summary["scenario"]["events"] == []  # the week's events all come later
    assert set(summary["policies"]) == {"inferpool", "static", "spill", "offline"}
    for name, entry in summary["policies"].items():
        assert 0 < entry["served_pct"] <= 100, name
        assert entry["cost_usd"] > 0, name
    assert summary["policies"]["offline"]["cost_vs_offline_pct"] == 0
    assert summary["targets"]["served_pct_min"] == 99.9
    files = ["demand-vs-capacity.png", "cost.png", "inferpool-families.png"]
    assert summary["files"] == ["summary.json", *files]
    for name in files:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["policy", "served", "%"]
    assert "inferpool" in table
    assert "targets:" in table


def test_policies_option_and_json_output(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", str(EXAMPLES / "day-spike.yaml"), "--policies", "static,offline",
                 "-o", "json", "--out", str(tmp_path), "--no-plots"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["policies"]) == {"static", "offline"}
    assert "targets" not in printed  # no inferpool run, nothing to judge
    assert printed["files"] == ["summary.json"]
    assert not list(tmp_path.glob("*.png"))


def test_bad_scenarios_and_options_exit_2_naming_the_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "day-spike.yaml").read_text().replace(
        "acceleratorsPerNode: 12", "acceleratorsPerNode: -1"))
    assert main(["simulate", str(bad)]) == 2
    assert "nodePools[3].acceleratorsPerNode: Input should be greater than or equal to 1" in (
        capsys.readouterr().err)
    assert main(["simulate", str(EXAMPLES / "day-spike.yaml"), "--policies", "magic"]) == 2
    assert "--policies: unknown magic" in capsys.readouterr().err
