"""``python -m bench.plot RESULTS.json``: draw every ratio of a run as a PNG.

One bar per ratio, growing from 1x (parity) on a log scale, coloured by its
target: met, not met, or no target. The issue's targets are
drawn as ticks on their bars. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "_static" / "performance.png"
COLOURS = {True: "#2a9d55", False: "#d1495b", None: "#8d99ae"}


def _rows(results: dict[str, Any]) -> list[tuple[str, float, str | None, bool | None]]:
    rows = []
    for name, scenario in results["scenarios"].items():
        for ratio in scenario["ratios"]:
            label = f"{name}: {ratio['numerator']} / {ratio['denominator']}"
            if ratio.get("better") == "lower":
                label += " (lower is better)"
            rows.append((label, ratio["value"], ratio["target"], ratio["met"]))
    return rows


def plot(results: dict[str, Any], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    rows = _rows(results)[::-1]  # the first ratio on top
    figure, axes = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    positions = range(len(rows))
    values = [value for _, value, _, _ in rows]
    # Bars grow from parity (1x): rightwards when the numerator is larger.
    widths = [value - 1.0 for value in values]
    axes.barh(positions, widths, left=1.0, color=[COLOURS[met] for *_, met in rows])
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    axes.axvline(1.0, color="black", linewidth=0.8)
    for position, (_, value, target, _) in zip(positions, rows, strict=True):
        threshold = None if target is None else float(target.split()[1].rstrip("x"))
        if threshold is not None:
            axes.plot([threshold], [position], marker="|", markersize=16, color="black")
        if value >= 1:  # the value beyond the bar's end (and beyond a target tick there)
            outside, align = max(value, threshold or 0) * 1.05, "left"
        else:
            outside, align = min(value, threshold or 1) / 1.05, "right"
        axes.text(outside, position, f"{value:.2f}x", va="center", ha=align, fontsize=8)
    axes.set_yticks(list(positions), [label for label, *_ in rows], fontsize=8)
    low, high = min([*values, 0.5]), max([*values, 4.5])
    axes.set_xlim(low / 2, high * 1.6)
    axes.set_xlabel("ratio (log scale; '|' marks a target; 1x = parity)")
    environment = results["environment"]
    axes.set_title(
        f"lfws vs the websockets peer and the raw ceiling "
        f"(Python {environment['python']}, {environment['cpus']} CPUs, {environment['json']})",
        fontsize=10,
    )
    handles = [Rectangle((0, 0), 1, 1, color=COLOURS[key]) for key in (True, False, None)]
    axes.legend(
        handles, ["target met", "target not met", "no target"], loc="lower right", fontsize=8
    )
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    parser.add_argument("results", type=Path, help="the JSON written by python -m bench --json")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the PNG to write")
    args = parser.parse_args()
    plot(json.loads(args.results.read_text()), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
