"""``python -m bench.profile SCENARIO CONTENDER``: where one contender's time goes.

Runs the contender once under cProfile (everything happens on one thread:
client, server and event loop) and prints the functions that cost the most
time of their own, then the heaviest by cumulative time. Profiling slows
Python code several times over; read the shares, not the totals. For the
``memory`` scenario it shows instead the allocation sites (tracemalloc, in
the server process) that grew with the idle connections.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from bench.cli import SCENARIOS
from bench.scenarios import memory
from bench.settings import FULL, PROFILE, QUICK


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("contender")
    parser.add_argument(
        "--size",
        choices=("quick", "profile", "full"),
        default="profile",
        help="the --quick sizes, a tenth of the full ones (the default), or the full ones",
    )
    parser.add_argument("--top", type=int, default=25, help="functions to show per table")
    args = parser.parse_args()
    sizes = {"quick": QUICK, "profile": PROFILE, "full": FULL}[args.size]
    scenario = SCENARIOS[args.scenario][0](sizes)
    contenders = {contender.name: contender for contender in scenario.contenders}
    if args.contender not in contenders:
        parser.error(f"contenders of {args.scenario}: {', '.join(contenders)}")
    if args.scenario == "memory":  # memory has no hot path: show what each connection holds
        kind = args.contender
        connections = scenario.params["connections"]
        print(f"memory / {kind}: {connections} idle connections, tracemalloc in the server")
        print("\n".join(memory.allocations(kind, connections, args.top)))
        return
    profiler = cProfile.Profile()
    sample = profiler.runcall(contenders[args.contender].run)
    print(f"{args.scenario} / {args.contender}: {sample:,.4g} {scenario.unit} (under cProfile)")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(args.top)
        print(f"\n-- by {order}")
        print(out.getvalue().split("\n\n", 1)[-1].strip())


if __name__ == "__main__":
    main()
