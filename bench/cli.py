"""``python -m bench``: run the scenarios, print medians and ratios, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lfws_core
from bench import codec
from bench.measure import Report, Scenario, format_value, run_interleaved
from bench.scenarios import catchup, core, fanout, memory, pipelined, roundtrip
from bench.settings import FULL, QUICK, Settings

SCENARIOS: dict[str, tuple[Callable[[Settings], Scenario], Callable[[Settings], int]]] = {
    # name: (the scenario, how many interleaved rounds it runs)
    "core": (core.scenario, lambda settings: settings.rounds),
    "roundtrip": (roundtrip.scenario, lambda settings: settings.heavy_rounds),
    "pipelined": (pipelined.scenario, lambda settings: settings.heavy_rounds),
    "fanout": (fanout.scenario, lambda settings: settings.rounds),
    "memory": (memory.scenario, lambda settings: settings.heavy_rounds),
    "catchup": (catchup.scenario, lambda settings: settings.heavy_rounds),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="lfws against a peer on the websockets library and the raw asyncio ceiling.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure and ratio")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run this scenario only (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds of every scenario")
    return parser


def _environment(settings: Settings, argv: Sequence[str]) -> dict[str, Any]:
    return {
        "command": " ".join(["python -m bench", *argv]),
        "quick": settings.quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "websockets": version("websockets"),
        "json": codec.LIBRARY,
        "lfws_source": str(Path(lfws_core.__file__).parent.parent),
    }


def _print_report(report: Report) -> None:
    scenario = report.scenario
    print(f"\n== {scenario.name}: {scenario.title}")
    print(f"   {scenario.note}")
    width = max(len(contender.label) for contender in scenario.contenders)
    for contender in scenario.contenders:
        median = format_value(report.median(contender.name))
        print(f"   {contender.label:<{width}}  {median:>10} {scenario.unit}")
    for spec in scenario.ratios:
        value = report.ratio(spec)
        verdict = ""
        if spec.target is not None:
            verdict = f"  target {spec.target}: {'met' if spec.target.met(value) else 'NOT MET'}"
        print(f"   {spec.numerator} / {spec.denominator} = {value:.2f}x ({spec.meaning}){verdict}")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = QUICK if args.quick else FULL
    names = args.only or list(SCENARIOS)
    results: dict[str, Any] = {
        "environment": _environment(settings, sys.argv[1:] if argv is None else argv),
        "scenarios": {},
    }
    started = time.perf_counter()
    for name in names:
        build, rounds = SCENARIOS[name]
        scenario = build(settings)
        report = run_interleaved(
            scenario,
            args.rounds or rounds(settings),
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        _print_report(report)
        results["scenarios"][name] = report.to_json()
    results["environment"]["seconds"] = round(time.perf_counter() - started, 1)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
