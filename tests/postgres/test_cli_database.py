"""``lfws serve --database``: what it refuses, in one line with exit status 2 (no server needed)."""

from __future__ import annotations

import sys

import pytest

from lfws_adapters.cli import main


def serve(*args: str) -> int:
    return main(["serve", "--port", "0", *args])


def test_an_unreachable_database_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (the 'postgres' extra)")
    assert serve("--database", "postgresql://lfws:hunter2@127.0.0.1:1/nowhere") == 2
    [error] = capsys.readouterr().err.splitlines()
    assert error.startswith("lfws serve: error: cannot open PostgreSQL nowhere at 127.0.0.1:1")
    assert "hunter2" not in error


def test_without_psycopg_the_extra_to_install_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    for module in ("lfws_adapters._postgres", "lfws_adapters.postgres_event_log"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    assert serve("--database", "postgresql://localhost/lfws") == 2
    assert capsys.readouterr().err == (
        "lfws serve: error: --database: the PostgreSQL event log needs psycopg 3:"
        " pip install 'lfws[postgres]'\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--database", "lfws.db"), "expected a postgresql:// URL, got 'lfws.db'"),
        (("--db", "x.db", "--database", "postgresql://h/d"), "not allowed with argument"),
    ],
)
def test_what_is_not_a_database_url_is_a_usage_error(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        serve(*args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_help_tells_how_to_run_several_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--db PATH | --database URL" in help_text
    assert "several can run behind a load balancer" in help_text
