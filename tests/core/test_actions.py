"""Actions are plain facts; the one derived value is the Dart boolean."""

from __future__ import annotations

import pytest

from lfws_core.actions import ConnectionState, ConnectionStateChanged


@pytest.mark.parametrize("state", list(ConnectionState))
def test_connected_means_authenticated(state: ConnectionState) -> None:
    expected = state in (ConnectionState.SYNCING, ConnectionState.LIVE)
    assert state.connected is expected
    assert ConnectionStateChanged(state=state, reason="why").connected is expected


def test_the_server_builders_build_what_the_constructors_do() -> None:
    from lfws_core.actions import (
        EventsStored,
        SendMessage,
        StoreEvents,
        _events_stored,
        _send_message,
        _store_events,
    )

    assert _send_message("{}") == SendMessage(text="{}")
    assert _store_events(7, "todos", (), "alice") == StoreEvents(
        request_id=7, repository="todos", events=(), principal="alice"
    )
    assert _events_stored("todos", ()) == EventsStored(repository="todos", events=())
