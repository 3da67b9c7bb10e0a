"""``lfws demo``: it runs, narrates what it measured, and exits 0 (or 1, saying why)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from lfws_adapters import _demo
from lfws_adapters.cli import main


def test_lfws_demo_runs_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lfws_adapters.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "1. A change on A reaches B",
        "ms later (A -> server -> B)",
        "2. B goes offline, both edit, B comes back",
        "converged in",
        "3. The server restarts; nothing is lost",
        "OK: A, B and the server's log agree: 3 documents, 27 events, each stored once.",
        "Total time",
    ):
        assert expected in out
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr


def test_a_step_that_does_not_converge_fails_with_exit_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def stuck(self: object, *replicas: object, expected_documents: int) -> float:
        raise _demo.DemoFailed("A, B and the server converge: not done within 10 s")

    monkeypatch.setattr(_demo._Demo, "converged", stuck)
    assert _demo.run(io.StringIO()) == 1
    assert "lfws demo: FAILED: A, B and the server converge" in capsys.readouterr().err


def test_lfws_demo_is_a_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(_demo, "run", lambda: ran.append("demo") or 0)
    assert main(["demo"]) == 0
    assert ran == ["demo"]
