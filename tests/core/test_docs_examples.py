"""The documentation cannot drift from the code.

* Every JSON example in ``docs/protocol.md`` is a message (it has ``type``)
  or an event, and decodes with the codec; unless marked otherwise, lfws
  writes it back exactly as shown. An example marked ``% lfws-docs: invalid``
  must be refused, one marked ``% lfws-docs: input-only`` only read.
* The defaults in the "Timeouts and limits" tables are the code's.
* Every Python example in ``docs/architecture.md`` runs (in order, in one
  namespace; one marked ``% lfws-docs: skip`` only compiles), and its
  actions table lists every action class.
* The example in the ``lfws_core`` module docstring runs.
"""

from __future__ import annotations

import ast
import dataclasses
import doctest
import enum
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import lfws_core
from lfws_core import actions, client, codec, connection, server, ws
from lfws_core.codec import decode_message, encode_message
from lfws_core.errors import InvalidMessage
from lfws_core.events import event_from_json, event_to_json

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROTOCOL = DOCS / "protocol.md"
ARCHITECTURE = DOCS / "architecture.md"

_MARK = re.compile(r"^\s*% lfws-docs: ([a-z-]+)\s*$")
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    mark: str | None
    body: str


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with the marker line right above it (if any)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, language = opening.groups()
        previous = [line for line in lines[:index] if line.strip()]
        marked = _MARK.match(previous[-1]) if previous else None
        end = index + 1
        while lines[end].strip() != "```":
            end += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end])
        blocks.append(Block(index + 1, language, marked and marked.group(1), body))
        index = end + 1
    return blocks


JSON_BLOCKS = [block for block in code_blocks(PROTOCOL) if block.language == "json"]
MESSAGES = [block for block in JSON_BLOCKS if "type" in json.loads(block.body)]
EVENTS = [block for block in JSON_BLOCKS if "type" not in json.loads(block.body)]


def _ids(blocks: list[Block]) -> list[str]:
    return [f"protocol.md:{block.line}" for block in blocks]


def test_the_docs_have_examples_and_known_marks() -> None:
    assert len(MESSAGES) >= 20 and len(EVENTS) >= 2
    assert {block.mark for block in JSON_BLOCKS} <= {None, "invalid", "input-only"}


@pytest.mark.parametrize("block", MESSAGES, ids=_ids(MESSAGES))
def test_message_examples_decode(block: Block) -> None:
    if block.mark == "invalid":
        with pytest.raises(InvalidMessage):
            decode_message(block.body)
        return
    message = decode_message(block.body)
    if block.mark is None:
        assert json.loads(encode_message(message)) == json.loads(block.body)


@pytest.mark.parametrize("block", EVENTS, ids=_ids(EVENTS))
def test_event_examples_decode(block: Block) -> None:
    obj = json.loads(block.body)
    event = event_from_json(obj)
    if block.mark is None:
        assert event_to_json(event) == obj


def test_the_legacy_event_example_reads_as_the_current_one() -> None:
    current, legacy = (
        event_from_json(json.loads(next(b.body for b in EVENTS if b.mark == mark)))
        for mark in (None, "input-only")
    )
    assert legacy == current


# --- timeouts and limits -------------------------------------------------------

_OWNERS: dict[str, object] = {
    "ClientConfig": client.ClientConfig,
    "ClientConnection": connection.ClientConnection,
    "WsClient": ws.WsClient,
    "ServerConfig": server.ServerConfig,
    "ServerConnection": connection.ServerConnection,
    "ws.ServerConfig": ws.ServerConfig,
    "connection": connection,
    "codec": codec,
}
_DEFAULT_ROW = re.compile(r"^\| `(?P<name>[\w.]+)` \| `(?P<value>[^`]+)` \|", re.MULTILINE)


def _default(owner: object, attribute: str) -> object:
    if dataclasses.is_dataclass(owner):
        field = {f.name: f for f in dataclasses.fields(owner)}[attribute]
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return field.default
    if inspect.isclass(owner):
        return inspect.signature(owner).parameters[attribute].default
    return getattr(owner, attribute)


def _matches(value: object, documented: str) -> bool:
    if isinstance(value, enum.Enum):
        return documented == f"{type(value).__name__}.{value.name}"
    documented_value = ast.literal_eval(documented)
    return type(documented_value) is type(value) and documented_value == value


def documented_defaults() -> list[tuple[str, str]]:
    text = PROTOCOL.read_text(encoding="utf-8")
    section = text[text.index("## Timeouts and limits") :]
    return [(m["name"], m["value"]) for m in _DEFAULT_ROW.finditer(section)]


def test_the_limit_tables_cover_every_config_field() -> None:
    names = {name for name, _ in documented_defaults()}
    for prefix in ("ClientConfig", "ServerConfig", "ws.ServerConfig"):
        owner = _OWNERS[prefix]
        assert dataclasses.is_dataclass(owner)
        fields = {f"{prefix}.{f.name}" for f in dataclasses.fields(owner)}
        # The URL, credentials and repositories have no default worth a row.
        missing = fields - names - {f"ClientConfig.{n}" for n in ("url", "token", "headers")}
        assert missing <= {"ClientConfig.repositories"}, missing


@pytest.mark.parametrize(("name", "documented"), documented_defaults())
def test_documented_defaults_are_the_code_defaults(name: str, documented: str) -> None:
    owner_name, _, attribute = name.rpartition(".")
    value = _default(_OWNERS[owner_name], attribute)
    assert _matches(value, documented), f"{name} is {value!r} in the code"


# --- architecture.md and the package docstring ------------------------------------


def test_the_architecture_examples_run() -> None:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    blocks = [b for b in code_blocks(ARCHITECTURE) if b.language == "python"]
    assert blocks
    for block in blocks:
        code = compile(block.body, f"architecture.md:{block.line}", "exec")
        if block.mark != "skip":  # a sketch of an adapter: it must at least parse
            exec(code, namespace)


def test_the_actions_table_lists_every_action() -> None:
    classes = {name for name in actions.__all__ if dataclasses.is_dataclass(getattr(actions, name))}
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text[text.index("## Actions") :]
    section = section[: section.index("\n## ", 1)]
    listed = set(re.findall(r"^\| \{class\}`~lfws_core\.actions\.(\w+)`", section, re.MULTILINE))
    assert listed == classes


def test_the_package_docstring_example_runs() -> None:
    result = doctest.testmod(lfws_core, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
