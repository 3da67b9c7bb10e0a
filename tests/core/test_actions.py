"""Actions are plain facts; the one derived value is the Dart boolean."""

from __future__ import annotations

import pytest

from lfws_core.actions import ConnectionState, ConnectionStateChanged


@pytest.mark.parametrize("state", list(ConnectionState))
def test_connected_means_authenticated(state: ConnectionState) -> None:
    expected = state in (ConnectionState.SYNCING, ConnectionState.LIVE)
    assert state.connected is expected
    assert ConnectionStateChanged(state=state, reason="why").connected is expected
