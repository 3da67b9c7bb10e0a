"""Fuzz lfws with atheris (libFuzzer), one target or all of them.

    python fuzz/run.py --target NAME|all [--runs N] [--max-time SECONDS] [--jobs N]

Each target runs in its own process, instrumented (lfws_core, h11,
wsproto), starting from its seeds in ``fuzz/corpus/<target>/``. New inputs
libFuzzer finds go to a scratch corpus (``--work DIR`` keeps it), never into
the seeds. An input that raises, takes longer than ``--timeout`` seconds or
passes the memory limit is a finding: libFuzzer stops and saves it as
``fuzz/findings/<target>-crash-*`` (or ``-timeout-*``, ``-oom-*``, with the
log next to it); replay it
with ``python fuzz/run.py --target NAME --replay FILE``. The summary line per
target gives the runs, the time, the coverage reached and the findings;
the exit status is 1 if any target had a finding.

Needs atheris (``pip install lfws[fuzz]``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

CORPUS = FUZZ / "corpus"
# The packages whose branches libFuzzer sees (coverage guides the mutations).
INSTRUMENTED = ["lfws_core", "h11", "wsproto", "fuzz.targets"]
MAX_LEN = 16384

_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.MULTILINE)


def _target_names() -> list[str]:
    from fuzz.targets import TARGETS

    return list(TARGETS)


@dataclass
class Result:
    target: str
    runs: int
    seconds: float
    coverage: int
    features: int
    corpus: int
    slowest: int
    findings: list[Path]
    status: int

    def line(self) -> str:
        found = ", ".join(p.name for p in self.findings) or "0"
        return (
            f"{self.target:<18} runs {self.runs:>9}  {self.seconds:7.1f} s  "
            f"{self.runs / max(self.seconds, 1e-9):8.0f}/s  cov {self.coverage:>5}  "
            f"ft {self.features:>6}  corpus {self.corpus:>5}  slowest {self.slowest} s  "
            f"findings {found}"
        )


def run_target(
    target: str,
    *,
    runs: int,
    max_time: int,
    timeout: int,
    seed: int,
    work: Path | None,
    findings_dir: Path,
) -> Result:
    """Fuzz ``target`` in a child process and summarise what libFuzzer reported."""
    findings_dir.mkdir(parents=True, exist_ok=True)
    before = set(findings_dir.iterdir())
    with tempfile.TemporaryDirectory(prefix=f"lfws-fuzz-{target}-") as scratch:
        scratch_corpus = work / target if work else Path(scratch)
        scratch_corpus.mkdir(parents=True, exist_ok=True)
        libfuzzer = [
            str(scratch_corpus),  # new inputs go to the first directory only
            str(CORPUS / target),
            f"-runs={runs}",
            f"-timeout={timeout}",
            f"-max_len={MAX_LEN}",
            f"-seed={seed}",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={findings_dir}/{target}-",
        ]
        if max_time:
            libfuzzer.append(f"-max_total_time={max_time}")
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--worker", target, "--", *libfuzzer],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        seconds = time.perf_counter() - started
    output = child.stdout + child.stderr
    stats = {name: int(value) for name, value in _STAT.findall(output)}
    done = _DONE.search(output)
    findings = sorted(set(findings_dir.iterdir()) - before)
    if child.returncode or findings:
        log = findings_dir / f"{target}-log-{int(time.time())}.txt"
        log.write_text(output)
        sys.stderr.write(f"{target}: libFuzzer stopped (status {child.returncode}); log in {log}\n")
    return Result(
        target=target,
        runs=stats.get("number_of_executed_units", 0),
        seconds=seconds,
        coverage=int(done.group(2)) if done else 0,
        features=int(done.group(3)) if done else 0,
        corpus=int(done.group(4)) if done else 0,
        slowest=stats.get("slowest_unit_time_sec", 0),
        findings=findings,
        status=child.returncode,
    )


def worker(target: str, libfuzzer: list[str]) -> None:
    """Run libFuzzer on one target in this process (never returns)."""
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import TARGETS

    atheris.Setup([sys.argv[0], *libfuzzer], TARGETS[target])
    atheris.Fuzz()


def replay(target: str, path: Path) -> int:
    """Run ``target`` on one saved input, showing the traceback if it fails."""
    from fuzz.targets import TARGETS

    started = time.perf_counter()
    try:
        TARGETS[target](path.read_bytes())
    except Exception:
        traceback.print_exc()
        return 1
    print(f"{path}: passed in {time.perf_counter() - started:.3f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--target", required=True, help="a target name, or 'all'")
    parser.add_argument("--runs", type=int, default=10_000, help="inputs per target (-1: no limit)")
    parser.add_argument("--max-time", type=int, default=0, help="seconds per target (0: no limit)")
    parser.add_argument("--timeout", type=int, default=2, help="seconds one input may take")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (0: random)")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--work", type=Path, help="keep the scratch corpora here")
    parser.add_argument(
        "--findings", type=Path, default=FUZZ / "findings", help="where findings are saved"
    )
    parser.add_argument("--replay", type=Path, help="run the target on this one input")
    args = parser.parse_args(argv)
    names = _target_names()
    targets = names if args.target == "all" else [args.target]
    unknown = set(targets) - set(names)
    if unknown:
        parser.error(f"unknown target {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    if args.replay:
        return replay(targets[0], args.replay)
    try:
        import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        parser.error("atheris is not installed: pip install 'lfws[fuzz]'")

    def one(target: str) -> Result:
        return run_target(
            target,
            runs=args.runs,
            max_time=args.max_time,
            timeout=args.timeout,
            seed=args.seed,
            work=args.work,
            findings_dir=args.findings,
        )

    if args.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one, targets))
    else:
        results = []
        for target in targets:
            results.append(one(target))
            print(results[-1].line(), flush=True)
    if args.jobs > 1:
        for result in results:
            print(result.line())
    total = sum(len(r.findings) + (1 if r.status and not r.findings else 0) for r in results)
    print(f"findings: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
