"""The WebSocket layer fed arbitrary bytes in arbitrary reads, in both roles.

A server gets the bytes a client would send (request head, then masked
frames); a client gets what a server would send (response head, then
frames). Checked on every input:

* ``receive_data`` raises nothing;
* nothing is reported after ``Closed`` or ``Rejected``, and the state agrees;
* no message is larger than the limit, inflated ones included (both roles
  accept permessage-deflate, so compressed frames reach the inflater);
* the reads do not matter: the input fed whole and fed in pieces gives the
  same events and the same bytes out. Only a failed opening handshake may
  differ in its reason (a head can be refused for its size before it is
  seen to be malformed), but it must fail both ways.
"""

from __future__ import annotations

from collections.abc import Callable

from lfws_core.ws import (
    Closed,
    HttpRequest,
    PerMessageDeflate,
    Rejected,
    ServerConfig,
    TextMessage,
    UpgradeRequest,
    WsClient,
    WsConnection,
    WsEvent,
    WsServer,
    WsState,
)

from ._input import chunks

__all__ = ["MAX_HANDSHAKE_SIZE", "MAX_MESSAGE_SIZE", "fuzz_ws_client", "fuzz_ws_server", "zeros"]

# Small limits, so that short inputs can reach them.
MAX_MESSAGE_SIZE = 4096
MAX_HANDSHAKE_SIZE = 1024

SERVER_CONFIG = ServerConfig(
    path="/sync",
    allowed_origins=frozenset({"https://app.example"}),
    allow_missing_origin=True,
    max_handshake_size=MAX_HANDSHAKE_SIZE,
    max_message_size=MAX_MESSAGE_SIZE,
    compression=PerMessageDeflate(),
)


def zeros(size: int) -> bytes:
    """The "random" source of fuzzed clients: the nonce and every mask are zeros."""
    return bytes(size)


_Transcript = tuple[list[WsEvent], bytes, WsState]


def _answer_server(ws: WsConnection, event: WsEvent) -> list[WsEvent]:
    assert isinstance(ws, WsServer)
    if isinstance(event, UpgradeRequest):
        return ws.accept([("X-Fuzz", "1")])
    if isinstance(event, HttpRequest):
        ws.send_http_response(200, [("Content-Type", "text/plain")], b"ok")
    return []


def _answer_client(ws: WsConnection, event: WsEvent) -> list[WsEvent]:
    return []


def _run(
    ws: WsConnection, reads: list[bytes], answer: Callable[[WsConnection, WsEvent], list[WsEvent]]
) -> _Transcript:
    events: list[WsEvent] = []
    out = [ws.data_to_send()]
    for data in [*reads, b""]:
        pending = ws.receive_data(data)
        while pending:
            event = pending.pop(0)
            assert not events or not isinstance(events[-1], Closed | Rejected), (
                f"{event!r} after the end"
            )
            events.append(event)
            if isinstance(event, TextMessage):
                assert len(event.text.encode()) <= MAX_MESSAGE_SIZE, "message over the limit"
            pending[:0] = answer(ws, event)
        out.append(ws.data_to_send())
    if events and isinstance(events[-1], Closed):
        assert ws.state is WsState.CLOSED
    if events and isinstance(events[-1], Rejected):
        assert ws.state in (WsState.REJECTED, WsState.CLOSED)
    assert ws.transport_should_close, f"still {ws.state.name} after end of input"
    return events, b"".join(out), ws.state


def _handshake_failed(transcript: _Transcript) -> bool:
    events = transcript[0]
    return bool(events) and isinstance(events[0], Closed | Rejected)


def _same(whole: _Transcript, pieces: _Transcript) -> None:
    failed = [_handshake_failed(whole), _handshake_failed(pieces)]
    if any(failed):
        assert all(failed), f"the handshake failed only {'whole' if failed[0] else 'in pieces'}"
        return
    assert whole == pieces, f"reads changed the outcome:\n{whole}\n{pieces}"


def fuzz_ws_server(data: bytes) -> None:
    def run(reads: list[bytes]) -> _Transcript:
        return _run(WsServer(SERVER_CONFIG), reads, _answer_server)

    _same(run([data] if data else []), run(chunks(data)))


def fuzz_ws_client(data: bytes) -> None:
    def run(reads: list[bytes]) -> _Transcript:
        ws = WsClient(
            host="sync.example:8080",
            random_bytes=zeros,
            target="/sync?v=1",
            max_message_size=MAX_MESSAGE_SIZE,
            max_handshake_size=MAX_HANDSHAKE_SIZE,
            compression=PerMessageDeflate(),
        )
        return _run(ws, reads, _answer_client)

    _same(run([data] if data else []), run(chunks(data)))
