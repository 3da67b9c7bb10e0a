"""Interleaved runs, medians and ratios: what every scenario reports."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Contender:
    """One side of a comparison: ``run()`` does the measured work once, returns one sample."""

    name: str
    label: str
    run: Callable[[], float]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for a ratio, from the issue: ``value >= threshold`` or ``<=``."""

    op: Literal[">=", "<="]
    threshold: float

    def met(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value <= self.threshold

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}x"


@dataclass(frozen=True, slots=True)
class RatioSpec:
    """``median(numerator) / median(denominator)``; contenders are named."""

    numerator: str
    denominator: str
    meaning: str
    target: Target | None = None
    better: Better = "higher"
    """Whether lfws gains as the ratio rises (time and rate ratios) or falls (memory)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named comparison: its contenders, the unit of their samples, its ratios."""

    name: str
    title: str
    unit: str
    better: Better
    params: dict[str, Any]
    contenders: Sequence[Contender]
    ratios: Sequence[RatioSpec]
    note: str = ""


@dataclass(slots=True)
class Report:
    """The samples of one scenario run, with medians and ratios."""

    scenario: Scenario
    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, spec: RatioSpec) -> float:
        return self.median(spec.numerator) / self.median(spec.denominator)

    def to_json(self) -> dict[str, Any]:
        scenario = self.scenario
        ratios = []
        for spec in scenario.ratios:
            value = self.ratio(spec)
            ratios.append(
                {
                    "name": f"{spec.numerator} / {spec.denominator}",
                    "numerator": spec.numerator,
                    "denominator": spec.denominator,
                    "meaning": spec.meaning,
                    "value": value,
                    "better": spec.better,
                    "target": None if spec.target is None else str(spec.target),
                    "met": None if spec.target is None else spec.target.met(value),
                }
            )
        return {
            "title": scenario.title,
            "unit": scenario.unit,
            "better": scenario.better,
            "params": scenario.params,
            "note": scenario.note,
            "figures": {
                contender.name: {
                    "label": contender.label,
                    "median": self.median(contender.name),
                    "samples": self.samples[contender.name],
                }
                for contender in scenario.contenders
            },
            "ratios": ratios,
        }


def run_interleaved(
    scenario: Scenario, rounds: int, progress: Callable[[str], None] = lambda line: None
) -> Report:
    """Run every contender once per round, in turn (A, B, A, B, ...), and collect samples.

    Interleaving spreads the machine's noise (other processes, CPU frequency)
    over every contender instead of letting it hit one of them.
    """
    report = Report(scenario, {contender.name: [] for contender in scenario.contenders})
    for round_number in range(1, rounds + 1):
        for contender in scenario.contenders:
            gc.collect()  # what the previous contender left is not this one's cost
            sample = contender.run()
            report.samples[contender.name].append(sample)
            progress(
                f"  [{scenario.name} {round_number}/{rounds}] {contender.name}: "
                f"{format_value(sample)} {scenario.unit}"
            )
    return report


def format_value(value: float) -> str:
    """Three significant figures, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
