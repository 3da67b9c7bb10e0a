"""A short fuzzing run of every target (see ``fuzz/``), so that CI keeps them working.

Always: every seed of the corpus, and inputs hypothesis draws (random bytes
and mutated seeds), through the same target functions atheris runs, each
input within a time budget. With atheris installed, also a few thousand
coverage-guided inputs per target through ``fuzz/run.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz.seeds import CORPUS, seeds
from fuzz.targets import TARGETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
ATHERIS_RUNS = 2000
INPUT_BUDGET = 1.0
"""Seconds one input may take here (libFuzzer's limit is 2 s, uninstrumented tests are faster)."""


def corpus(target: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((CORPUS / target).iterdir())]


def run_fast(target: str, data: bytes) -> None:
    started = time.perf_counter()
    TARGETS[target](data)
    elapsed = time.perf_counter() - started
    assert elapsed < INPUT_BUDGET, f"{target} took {elapsed:.2f} s on {data[:80]!r}"


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    """A seed of ``target`` with a few random edits, or random bytes."""
    pool = corpus(target)
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["flip", "insert", "delete", "splice", "truncate"]))
        if edit == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "splice":
            other = draw(st.sampled_from(pool))
            data[at:] = other[draw(st.integers(0, len(other))) :]
        else:
            del data[at:]
    return bytes(data)


def test_the_corpus_holds_every_generated_seed() -> None:
    for target, inputs in seeds().items():
        on_disk = set(corpus(target))
        assert set(inputs) <= on_disk, f"run python fuzz/seeds.py: {target} is out of date"
        assert 10 <= len(on_disk) <= 60, f"{target}: keep the corpus small"


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_passes(target: str) -> None:
    for data in corpus(target):
        run_fast(target, data)


@pytest.mark.parametrize("target", TARGETS)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hypothesis_inputs_pass(target: str, data: st.DataObject) -> None:
    run_fast(target, data.draw(mutated(target)))


@pytest.mark.skipif(
    not HAVE_ATHERIS,
    reason="atheris is not installed (pip install 'lfws[fuzz]'); the seed and hypothesis "
    "runs of every target above still ran",
)
@pytest.mark.parametrize("target", TARGETS)
def test_atheris_finds_nothing(target: str, tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "fuzz" / "run.py"), "--target", target]
    command += ["--runs", str(ATHERIS_RUNS), "--findings", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"runs {ATHERIS_RUNS:>9}" in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("findings: 0")
