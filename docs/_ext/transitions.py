"""Render a state machine's transition table from the code, at build time.

Usage in MyST::

    ```{transition-table} lfws_core.client.TRANSITIONS
    :self-loops: mark
    ```

The argument names a mapping ``{(state, input): next_state}`` whose keys and
values are enum members. The table has one group of rows per source state,
in the order the state enum declares them: one row per input that changes the
state, then (with ``:self-loops: mark``, the default) one row listing the
inputs the state accepts without moving. ``:self-loops: omit`` leaves those
out. A pair that is absent from the mapping is not allowed in that state.
"""

from __future__ import annotations

import enum
import importlib
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

_Table = Mapping[tuple[enum.Enum, enum.Enum], enum.Enum]


def _load(path: str) -> tuple[_Table, str | None]:
    """Import ``package.module.NAME``; return the table and its source file."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{path!r} is not a dotted path to a module attribute")
    module = importlib.import_module(module_name)
    table = getattr(module, attribute)
    if not isinstance(table, Mapping) or not table:
        raise ValueError(f"{path} is not a non-empty mapping")
    for key, target in table.items():
        if not (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], enum.Enum)
            and isinstance(key[1], enum.Enum)
            and isinstance(target, enum.Enum)
        ):
            raise ValueError(f"{path} must map (state, input) enum pairs to states")
    return table, inspect.getsourcefile(module)


def _literal(member: enum.Enum) -> nodes.literal:
    return nodes.literal(text=member.name)


def _entry(*children: nodes.Node, morerows: int = 0) -> nodes.entry:
    entry = nodes.entry(morerows=morerows) if morerows else nodes.entry()
    entry += nodes.paragraph("", "", *children)
    return entry


def _row(*entries: nodes.entry) -> nodes.row:
    row = nodes.row()
    row.extend(entries)
    return row


def _listing(members: list[enum.Enum]) -> list[nodes.Node]:
    children: list[nodes.Node] = []
    for index, member in enumerate(members):
        if index:
            children.append(nodes.Text(", "))
        children.append(_literal(member))
    return children


def render(table: _Table, *, mark_self_loops: bool) -> nodes.table:
    """Build the docutils table for ``table``: source state, input, next state."""
    first_state, first_input = next(iter(table))
    state_order = {state: index for index, state in enumerate(type(first_state))}
    input_order = {event: index for index, event in enumerate(type(first_input))}

    moves: dict[enum.Enum, list[tuple[enum.Enum, enum.Enum]]] = {}
    stays: dict[enum.Enum, list[enum.Enum]] = {}
    for (state, event), target in sorted(
        table.items(), key=lambda item: (state_order[item[0][0]], input_order[item[0][1]])
    ):
        moves.setdefault(state, [])
        stays.setdefault(state, [])
        if target is state:
            stays[state].append(event)
        else:
            moves[state].append((event, target))

    tgroup = nodes.tgroup(cols=3)
    for width in (22, 56, 22):
        tgroup += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row(*(_entry(nodes.Text(title)) for title in ("state", "input", "next state")))
    tgroup += head
    body = nodes.tbody()
    for state, state_moves in moves.items():
        rows: list[tuple[list[nodes.Node], list[nodes.Node]]] = [
            ([_literal(event)], [_literal(target)]) for event, target in state_moves
        ]
        if mark_self_loops and stays[state]:
            rows.append((_listing(stays[state]), [nodes.emphasis(text="stays")]))
        if not rows:
            continue
        for index, (inputs, target_nodes) in enumerate(rows):
            entries = [_entry(*inputs), _entry(*target_nodes)]
            if index == 0:
                entries.insert(0, _entry(_literal(state), morerows=len(rows) - 1))
            body += _row(*entries)
    tgroup += body
    table_node = nodes.table(classes=["transition-table"])
    table_node += tgroup
    return table_node


class TransitionTable(SphinxDirective):
    """``transition-table``: render the table named by the argument."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {
        "self-loops": lambda value: directives.choice(value, ("mark", "omit")),
    }

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        try:
            table, source = _load(path)
        except (ImportError, AttributeError, ValueError) as exc:
            raise self.error(f"transition-table {path}: {exc}") from exc
        if source is not None:
            # Rebuild the page whenever the machine changes.
            self.env.note_dependency(source)
        mark = self.options.get("self-loops", "mark") == "mark"
        return [render(table, mark_self_loops=mark)]


def setup(app: Sphinx) -> ExtensionMetadata:
    """Register the ``transition-table`` directive."""
    app.add_directive("transition-table", TransitionTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
