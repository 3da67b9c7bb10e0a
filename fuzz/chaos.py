"""Run chaos over real sockets (tests/chaos) for longer, and print the figures.

    python fuzz/chaos.py --clients 16 --seconds 600 --seed 1 [--runs 3] [--keep DIR]

Each run starts ``lfws serve`` (SIGKILLed and restarted every few seconds,
on the asyncio, trio and anyio runtimes in turn) and N local-first apps,
each behind a fault-injecting proxy, then checks that no acknowledged event
was lost, none duplicated, no cursor skipped one, and every replica equals
the server log within ``--converge`` seconds of the faults stopping. Run
``--runs K`` seeds from ``--seed``; a failing seed replays its schedule of
faults and edits with ``--seed N --runs 1``. Exit status 1 if a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.harness import ChaosConfig, ChaosReport, run_chaos
from tests.chaos.proxy import FaultPlan


def _run(config: ChaosConfig, keep: Path | None) -> ChaosReport:
    if keep is not None:
        workdir = keep / f"seed-{config.seed}"
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(run_chaos(config, workdir))
    with tempfile.TemporaryDirectory(prefix="lfws-chaos-") as scratch:
        return asyncio.run(run_chaos(config, Path(scratch)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="of chaos")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--runs", type=int, default=1, help="seeds to run (default 1)")
    parser.add_argument(
        "--converge", type=float, default=defaults.convergence_timeout, help="seconds allowed"
    )
    parser.add_argument(
        "--fault-interval",
        type=float,
        default=defaults.plan.fault_interval,
        help="mean seconds between faults on one link",
    )
    parser.add_argument(
        "--bug",
        choices=["dedupe-off", "ack-before-commit"],
        help="run a server with a planted bug instead of lfws serve (asyncio only)",
    )
    parser.add_argument(
        "--runtime",
        dest="runtimes",
        action="append",
        choices=["asyncio", "trio", "anyio"],
        help="server runtime, repeatable (default: all three in turn)",
    )
    parser.add_argument("--keep", type=Path, help="keep the databases and server logs here")
    args = parser.parse_args(argv)
    if args.bug and set(args.runtimes or ()) - {"asyncio"}:
        # The broken log commits on an asyncio timer (see tests/chaos/broken_server.py).
        parser.error("--bug needs the asyncio runtime")

    failed: list[int] = []
    totals = {"events": 0, "aborts": 0, "stalls": 0, "cuts": 0, "offline": 0, "kills": 0}
    slowest = 0.0
    for seed in range(args.seed, args.seed + args.runs):
        config = ChaosConfig(
            seed=seed,
            clients=args.clients,
            seconds=args.seconds,
            convergence_timeout=args.converge,
            plan=FaultPlan(fault_interval=args.fault_interval),
            bug=args.bug,
            runtimes=tuple(args.runtimes or (["asyncio"] if args.bug else defaults.runtimes)),
        )
        report = _run(config, args.keep)
        print(report.summary(), flush=True)
        if not report.ok:
            failed.append(seed)
        totals["events"] += report.server_events
        totals["aborts"] += report.faults.aborts
        totals["stalls"] += report.faults.stalls
        totals["cuts"] += report.faults.cuts
        totals["offline"] += report.faults.offline_periods
        totals["kills"] += report.kills
        if report.convergence is not None:
            slowest = max(slowest, report.convergence)
    if args.runs > 1:
        print(
            f"{args.runs} runs: "
            + ", ".join(f"{name} {count}" for name, count in totals.items())
            + f"; slowest convergence {slowest:.2f} s; "
            + f"failed {len(failed)}"
            + (f": seeds {failed}" if failed else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
