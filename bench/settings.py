"""How big each scenario runs: the full suite (for the docs) or a quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes and round counts of every scenario."""

    quick: bool
    rounds: int
    """Interleaved rounds of the cheap scenarios (each contender runs once per round)."""
    heavy_rounds: int
    """Rounds of the scenarios whose runs take seconds each."""
    core_round_trips: int
    round_trips: int
    pipelined: int
    window: int
    """Pipelined clients keep at most this many pushes unacknowledged."""
    fanout_clients: int
    broadcasts: int
    idle_connections: int
    catchup_events: int


FULL = Settings(
    quick=False,
    rounds=5,
    heavy_rounds=3,
    core_round_trips=20_000,
    round_trips=20_000,
    pipelined=100_000,
    window=1_000,
    fanout_clients=100,
    broadcasts=2_000,
    idle_connections=1_000,
    catchup_events=100_000,
)

QUICK = Settings(
    quick=True,
    rounds=2,
    heavy_rounds=2,
    core_round_trips=300,
    round_trips=100,
    pipelined=1_000,
    window=200,
    fanout_clients=5,
    broadcasts=50,
    idle_connections=20,
    catchup_events=1_000,
)

PROFILE = Settings(
    quick=False,
    rounds=1,
    heavy_rounds=1,
    core_round_trips=2_000,
    round_trips=2_000,
    pipelined=10_000,
    window=1_000,
    fanout_clients=100,
    broadcasts=200,
    idle_connections=1_000,
    catchup_events=10_000,
)
"""A tenth of the full sizes: enough for a profile to show the steady state."""
