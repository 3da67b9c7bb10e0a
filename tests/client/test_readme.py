"""The README's usage snippets run as written, against a real server (the port substituted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from lfws_adapters import SqliteLocalFirstStorage

from .harness import Server

pytestmark = pytest.mark.anyio

README = Path(__file__).parents[2] / "README.md"
URL = "ws://localhost:8080/sync"


def usage_snippets() -> list[str]:
    """The Python blocks of the README's Usage section, in order."""
    text = README.read_text()
    usage = text[text.index("\n## Usage\n") :]
    usage = usage[: usage.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", usage, re.DOTALL)


def snippet(index: int, url: str) -> str:
    code = usage_snippets()[index]
    assert URL in code
    return code.replace(URL, url)


def test_the_usage_section_has_the_three_forms() -> None:
    seed, structured, blocking = usage_snippets()
    assert "await client.initialize()" in seed
    assert "async with LocalFirstClient(" in structured
    assert "with BlockingClient(" in blocking


async def outbox_ids(path: Path) -> set[str]:
    storage = SqliteLocalFirstStorage(path)
    await storage.open()
    try:
        return {event.event_id for _, event in await storage.outbox()}
    finally:
        await storage.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the asyncio REPL runs it
async def test_the_seed_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Server() as server:
        code = compile(snippet(0, server.url), "README.md", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        namespace: dict[str, Any] = {}
        await eval(code, namespace)  # what `python -m asyncio` does with pasted code
        assert namespace["item"] == {"id": "a1", "title": "buy milk"}
        assert namespace["items"] == []
        # Insert and delete: each one reached the server or waits in the outbox.
        waiting = await outbox_ids(tmp_path / "app.db")
        assert len(waiting | set(server.log.ids())) == 2


async def test_the_structured_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Server() as server:
        namespace: dict[str, Any] = {"__name__": "readme"}
        exec(snippet(1, server.url), namespace)
        await namespace["main"]()
        # Sent on the open connection, or kept in the outbox for the next start.
        waiting = await outbox_ids(tmp_path / "app.db")
        assert len(waiting | set(server.log.ids())) == 1
    out = capsys.readouterr().out
    assert "local a2 {'id': 'a2', 'title': 'call mum'}" in out
    assert "[{'id': 'a2', 'title': 'call mum'}]" in out


async def test_the_blocking_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Server() as server:
        code = snippet(2, server.url)
        await anyio.to_thread.run_sync(exec, code, {"__name__": "readme"})
    assert "{'id': 'a3', 'title': 'water the plants'}" in capsys.readouterr().out
