"""Run the deterministic simulation over many seeds and print a summary.

    python fuzz/simulate.py --seeds 10000 [--start 0] [--clients 3] [--duration 60]

Every seed is reproducible: a failing seed prints its failures, and
``--start SEED --seeds 1`` replays it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import replace

from lfws_core.testing.simulation import SimulationConfig, run_simulation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds (default 200)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    defaults = SimulationConfig()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    args = parser.parse_args(argv)
    config = replace(SimulationConfig(), clients=args.clients, duration=args.duration)

    started = time.perf_counter()
    faults: Counter[str] = Counter()
    events = stored = messages = redundant = 0
    failed: list[int] = []
    slowest = 0.0
    for seed in range(args.start, args.start + args.seeds):
        report = run_simulation(seed, config)
        faults.update(report.faults)
        events += report.events_created
        stored += report.events_stored
        messages += report.messages
        redundant += report.redundant_deliveries
        if report.converged_after is not None:
            slowest = max(slowest, report.converged_after)
        if not report.ok:
            failed.append(seed)
            print(f"seed {seed} FAILED:", *report.failures[:10], sep="\n  ")
    elapsed = time.perf_counter() - started
    print(
        f"seeds {args.seeds} (from {args.start}), clients {args.clients}, "
        f"{args.duration:g} virtual s each, {elapsed:.1f} s wall\n"
        f"events created {events}, stored {stored}, messages {messages}, "
        f"redundant deliveries {redundant}\n"
        f"faults {sum(faults.values())}: "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(faults.items()))
        + f"\nslowest convergence after faults stopped: {slowest:.1f} virtual s\n"
        f"failures {len(failed)}" + (f": seeds {failed[:20]}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
