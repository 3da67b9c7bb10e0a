"""The benchmark suite runs end to end (``python -m bench --quick``) and reports everything.

A smoke test: it checks that every scenario produced figures and ratios,
never how fast anything was.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from bench.cli import SCENARIOS
from bench.markdown import render, render_change, render_targets
from bench.settings import QUICK

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(output.read_text())

    assert results["environment"]["quick"] is True
    assert list(results["scenarios"]) == list(SCENARIOS)
    for name, scenario in results["scenarios"].items():
        rounds = SCENARIOS[name][1](QUICK)
        assert scenario["figures"], name
        for contender, figure in scenario["figures"].items():
            assert len(figure["samples"]) == rounds, (name, contender)
            assert all(math.isfinite(s) and s > 0 for s in figure["samples"]), (name, contender)
            assert min(figure["samples"]) <= figure["median"] <= max(figure["samples"])
        assert scenario["ratios"], name
        for ratio in scenario["ratios"]:
            assert {ratio["numerator"], ratio["denominator"]} <= set(scenario["figures"])
            assert math.isfinite(ratio["value"]) and ratio["value"] > 0, (name, ratio)
            assert ratio["met"] in (None, True, False)
        # The summary printed for a person names every scenario too.
        assert scenario["title"] in run.stdout

    # The tables of docs/performance.md come from the same JSON: one row per
    # contender and per ratio, and one per target with its verdict.
    tables = render(results)
    targets = render_targets(results)
    for name, scenario in results["scenarios"].items():
        assert f"(`{name}`)" in tables
        for contender in scenario["figures"]:
            assert f"| `{contender}` |" in tables
        for ratio in scenario["ratios"]:
            row = f"| {ratio['meaning']} ({name}) |"
            assert (row in targets) == (ratio["target"] is not None), row
    # Against itself, every ratio's "before" is its "after".
    change = render_change(results, results).splitlines()[2:]
    assert len(change) == sum(len(s["ratios"]) for s in results["scenarios"].values())
    for row in change:
        before, after = row.split("|")[3:5]
        assert before == after != " - "
