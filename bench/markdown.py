"""``python -m bench.markdown RESULTS.json``: the figures of a run as Markdown tables.

What ``docs/performance.md`` shows, printed from the JSON so that no figure
is copied by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.measure import format_value


def _verdict(ratio: dict[str, Any]) -> str:
    if ratio["target"] is None:
        return "-"
    return f"{ratio['target']}: **{'met' if ratio['met'] else 'not met'}**"


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, scenario in results["scenarios"].items():
        lines += [f"### {scenario['title']} (`{name}`)", "", scenario["note"], ""]
        params = ", ".join(
            f"{key}={value:,}" if isinstance(value, int) else f"{key}={value}"
            for key, value in scenario["params"].items()
        )
        lines += [f"Parameters: {params}.", ""]
        lines += [
            f"| contender | what | median ({scenario['unit']}) | samples |",
            "|---|---|--:|---|",
        ]
        for contender, figure in scenario["figures"].items():
            samples = ", ".join(format_value(sample) for sample in figure["samples"])
            lines.append(
                f"| `{contender}` | {figure['label']} | {format_value(figure['median'])} "
                f"| {samples} |"
            )
        lines += ["", "| ratio | meaning | value | target |", "|---|---|--:|---|"]
        for ratio in scenario["ratios"]:
            lines.append(
                f"| `{ratio['numerator']}` / `{ratio['denominator']}` | {ratio['meaning']} "
                f"| {ratio['value']:.2f}x | {_verdict(ratio)} |"
            )
        lines.append("")
    return "\n".join(lines)


def render_targets(results: dict[str, Any]) -> str:
    """The issue's targets of a run, one row each, with their verdicts."""
    lines = ["| target | ratio | measured | verdict |", "|---|---|--:|---|"]
    for name, scenario in results["scenarios"].items():
        for ratio in scenario["ratios"]:
            if ratio["target"] is not None:
                lines.append(
                    f"| {ratio['meaning']} ({name}) "
                    f"| `{ratio['numerator']}` / `{ratio['denominator']}` "
                    f"| {ratio['value']:.2f}x vs {ratio['target']} "
                    f"| **{'met' if ratio['met'] else 'not met'}** |"
                )
    return "\n".join(lines)


def render_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Every ratio of ``after`` beside the same ratio of ``before`` (runs of two commits)."""
    lines = ["| ratio | target | before | after |", "|---|---|--:|--:|"]
    for name, scenario in after["scenarios"].items():
        earlier = before["scenarios"].get(name, {}).get("ratios", [])
        old = {ratio["name"]: ratio for ratio in earlier}
        for ratio in scenario["ratios"]:
            previous = old.get(ratio["name"])
            was = f"{previous['value']:.2f}x" if previous else "-"
            lines.append(
                f"| {ratio['meaning']} ({name}) | {ratio['target'] or '-'} "
                f"| {was} | {ratio['value']:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.markdown", description=__doc__)
    parser.add_argument("results", type=Path, help="the JSON written by python -m bench --json")
    parser.add_argument(
        "--before", type=Path, help="an earlier run's JSON: print the ratios side by side"
    )
    arguments = parser.parse_args()
    results = json.loads(arguments.results.read_text())
    print(render(results))
    print("## Targets\n")
    print(render_targets(results))
    if arguments.before is not None:
        print("\n## Before and after\n")
        print(render_change(json.loads(arguments.before.read_text()), results))


if __name__ == "__main__":
    main()
