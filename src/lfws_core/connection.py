"""Byte-level connections: a protocol session over a WebSocket byte stream.

:class:`ClientConnection` composes a :class:`~lfws_core.client.ClientSession`
with a :class:`~lfws_core.ws.WsClient`, and :class:`ServerConnection` a
:class:`~lfws_core.server.ServerSession` with a :class:`~lfws_core.ws.WsServer`.
An adapter over raw sockets feeds them bytes and drains one ordered list of
actions: the session's own actions, except that every ``SendMessage`` and
``CloseConnection`` has become WebSocket bytes (``SendBytes``, consecutive
writes coalesced into one) and ``CloseTransport`` once the transport should go.

They also keep the session safe from stale news: once a session gave a
connection up, nothing more from that WebSocket reaches it, so a late close
of an old connection can never be mistaken for the loss of a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from ._builders import slot_builder
from .actions import (
    Action,
    ClientAction,
    CloseConnection,
    CloseTransport,
    HandshakeRejected,
    HttpRequestReceived,
    OpenConnection,
    SendBytes,
    SendMessage,
)
from .client import ClientConfig, ClientSession
from .errors import LocalProtocolError
from .events import SyncEvent
from .server import ServerConfig, ServerSession
from .ws import (
    Closed,
    HttpRequest,
    Opened,
    PerMessageDeflate,
    Rejected,
    TextMessage,
    UpgradeRequest,
    WsClient,
    WsConnection,
    WsEvent,
    WsServer,
    WsState,
)
from .ws import ServerConfig as WsServerConfig

__all__ = ["CLOSE_TIMEOUT", "HANDSHAKE_TIMEOUT", "ClientConnection", "ServerConnection"]

CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the peer's close frame before dropping the transport."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a server waits for a complete opening handshake (slowloris guard)."""

# RFC 6455 §5.5: a close payload is at most 125 bytes, 2 of them the code.
_MAX_CLOSE_REASON_BYTES = 123

_WS_OPEN = WsState.OPEN  # a global lookup, not an attribute one, on every message


_send_bytes: Callable[[bytes], SendBytes] = slot_builder(SendBytes, "data")


def _close_reason(reason: str) -> str:
    """Fit ``reason`` into a close frame (123 bytes of UTF-8, RFC 6455 §5.5).

    A client's reasons can quote the server (``catch-up failed: <error>``):
    a long one must not make the close itself fail.
    """
    encoded = reason.encode("utf-8", "replace")[:_MAX_CLOSE_REASON_BYTES]
    return encoded.decode("utf-8", "ignore")  # a character cut in half is dropped


class _Output:
    """The ordered actions of one connection, with adjacent writes coalesced."""

    __slots__ = ("_chunks", "actions")

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self._chunks: list[bytes] = []  # writes since the last other action

    def write(self, data: bytes) -> None:
        # Never empty: the callers write frames, or test what they drained.
        self._chunks.append(data)

    def append(self, action: Action) -> None:
        if self._chunks:
            self._flush()
        self.actions.append(action)

    def _flush(self) -> None:
        chunks = self._chunks
        # Joined once: a large queue flush stays linear, and it is one write.
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.actions.append(_send_bytes(data))

    def drain(self) -> list[Action]:
        if self._chunks:
            self._flush()
        actions = self.actions
        if not actions:
            return []  # most drains find nothing: a fresh list costs less than a swap
        self.actions = []
        return actions


class ClientConnection:
    """A :class:`ClientSession` driven by bytes.

    ``random`` feeds the reconnect jitter, ``random_bytes`` the handshake
    nonce and the frame masks; both come from the adapter, keeping this pure.
    ``CloseTransport`` also means "give up the transport still being opened"
    (the session gave the attempt up first, e.g. on its connect timeout);
    after it, nothing more is reported about that transport.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        random: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        cursors: Mapping[str, int] | None = None,
        max_message_size: int = 1 << 20,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.session = ClientSession(config, random=random, cursors=cursors or {})
        """The message-level session; commands go to it directly."""
        self._random_bytes = random_bytes
        self._max_message_size = max_message_size
        self._compression = PerMessageDeflate() if config.compression else None
        self._close_timeout = close_timeout
        self._target: OpenConnection | None = None
        self._ws: WsClient | None = None
        self._attached = False  # whether the session still owns self._ws
        self._close_deadline: float | None = None
        self._out = _Output()

    # --- the adapter's side -------------------------------------------------

    def transport_made(self, now: float) -> None:
        """Report the transport (TCP, TLS) to the last ``OpenConnection`` up."""
        target = self._target
        if target is None:
            raise LocalProtocolError("no connection was requested")
        self._target = None
        default_port = 443 if target.secure else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        if target.port != default_port:
            host = f"{host}:{target.port}"
        self._ws = WsClient(
            host=host,
            random_bytes=self._random_bytes,
            target=target.resource,
            headers=target.headers,
            max_message_size=self._max_message_size,
            compression=self._compression,
        )
        self._attached = True
        self._close_deadline = None
        self._out.write(self._ws.data_to_send())

    def transport_failed(self, now: float, reason: str) -> None:
        """Report that the transport could not be opened."""
        self._target = None
        self.session.connection_failed(now, reason)

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the transport; ``b""`` means end of input."""
        ws = self._ws
        if ws is None:
            return
        session = self.session
        for event in ws.receive_data(data):
            if not self._attached:
                continue
            if type(event) is TextMessage:
                session.receive_text(event.text, now)
            else:
                self._forward(event, now)
        self._flush(ws)

    def transport_lost(self, now: float, reason: str) -> None:
        """Report the transport gone (reset, EOF after close, ...)."""
        ws = self._ws
        self._ws = None
        self._close_deadline = None
        if ws is not None and self._attached:
            self._attached = False
            self.session.connection_lost(now, reason)

    def next_deadline(self) -> float | None:
        """Return the earliest instant :meth:`handle_timer` must be called, if any."""
        deadline = self.session.next_deadline()
        close = self._close_deadline
        if close is not None and (deadline is None or close < deadline):
            return close
        return deadline

    def handle_timer(self, now: float) -> None:
        """Fire what is due: the session's timers and the close timeout."""
        if self._close_deadline is not None and self._close_deadline <= now:
            self._close_deadline = None
            self._ws = None
            self._out.append(CloseTransport())
        self.session.handle_timer(now)

    def drain_actions(self, now: float) -> list[Action]:
        """Return the actions to carry out, in order (bytes already framed).

        ``now`` dates the close timeout of a close the session asked for.
        """
        actions = self.session.drain_actions()
        if actions:
            out = self._out
            for action in actions:
                if type(action) is SendMessage:  # the usual action, in line
                    ws = self._ws
                    if ws is not None and self._attached and ws.state is _WS_OPEN:
                        ws.send_text(action.text)
                        out.write(ws.data_to_send())
                else:
                    self._translate(action, now)
        return self._out.drain()

    # --- internals ------------------------------------------------------------

    def _forward(self, event: WsEvent, now: float) -> None:
        """Pass on what is not a text message (those go straight to the session)."""
        session = self.session
        if isinstance(event, Opened):
            session.connection_made(now)
        elif isinstance(event, Rejected):
            self._attached = False
            session.connection_failed(now, f"handshake refused: HTTP {event.status} {event.reason}")
        elif isinstance(event, Closed):
            self._attached = False
            session.connection_lost(now, event.reason or "closed", event.code)

    def _flush(self, ws: WsConnection) -> None:
        data = ws.data_to_send()
        if data:
            self._out.write(data)
        if ws.transport_should_close and self._ws is ws:
            self._ws = None
            self._close_deadline = None
            self._out.append(CloseTransport())

    def _translate(self, action: ClientAction, now: float) -> None:
        """Carry out an action that is not a ``SendMessage`` (see :meth:`drain_actions`)."""
        ws = self._ws
        if isinstance(action, CloseConnection):
            # The close handshake runs on with the old WebSocket; its end (or
            # the timeout) closes the transport, and the session never hears.
            self._attached = False
            if ws is not None and ws.state is _WS_OPEN:
                ws.close(action.code, _close_reason(action.reason))
                self._out.write(ws.data_to_send())
                self._close_deadline = now + self._close_timeout
            elif ws is not None or self._target is not None:
                # A handshake or a transport still opening is abandoned.
                self._ws = self._target = None
                self._out.append(CloseTransport())
        elif isinstance(action, OpenConnection):
            if ws is not None:  # an old close handshake is cut short
                self._ws = None
                self._close_deadline = None
                self._out.append(CloseTransport())
            self._target = action
            self._out.append(action)
        else:
            self._out.append(action)


class ServerConnection:
    """A :class:`ServerSession` driven by bytes, from the first request byte.

    The opening handshake must complete within ``handshake_timeout`` seconds
    of :meth:`transport_made`; a valid upgrade is accepted and the session
    starts. Plain HTTP requests surface as ``HttpRequestReceived`` for the
    adapter to answer with :meth:`send_http_response`.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        ws_config: WsServerConfig | None = None,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self._config = config or ServerConfig()
        self._ws: WsServer | None = WsServer(ws_config)
        self.session: ServerSession | None = None
        """The message-level session, once the upgrade was accepted."""
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout
        self._deadline: float | None = None  # handshake or close timeout
        self._out = _Output()
        self._frames: dict[int, bytes] = {}

    def transport_made(self, now: float) -> None:
        """Report the transport accepted: the handshake timeout starts."""
        self._deadline = now + self._handshake_timeout

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the transport; ``b""`` means end of input."""
        ws = self._ws
        if ws is None:
            return
        self._handle(ws, ws.receive_data(data), now)

    def transport_lost(self, now: float) -> None:
        """Report the transport gone."""
        self._ws = None
        self._deadline = None
        if self.session is not None:
            self.session.connection_lost(now)

    def send_http_response(
        self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        """Answer an ``HttpRequestReceived``; the transport closes after it."""
        ws = self._ws
        if ws is None:
            raise LocalProtocolError("the connection is gone")
        ws.send_http_response(status, headers, body)
        self._flush(ws)

    def deliver(
        self,
        repository: str,
        events: Sequence[SyncEvent],
        now: float,
        *,
        text: str,
        frame: bytes,
    ) -> bool:
        """Send a broadcast ``events`` message, framed once for every connection.

        ``text`` is the encoded message and ``frame`` its WebSocket frame from
        :func:`~lfws_core.ws.encode_server_text_frame` (server frames are not
        masked, so one frame serves every connection). Returns whether the
        session sent it (only authenticated sessions receive broadcasts).
        """
        session = self.session
        if session is None or not session.deliver(repository, events, now, text=text):
            return False
        # The pending SendMessage holds ``text`` alive, so its id is unique
        # until that action is translated.
        self._frames[id(text)] = frame
        return True

    def next_deadline(self) -> float | None:
        """Return the earliest instant :meth:`handle_timer` must be called, if any."""
        deadline = self.session.next_deadline() if self.session is not None else None
        own = self._deadline
        if own is not None and (deadline is None or own < deadline):
            return own
        return deadline

    def handle_timer(self, now: float) -> None:
        """Fire what is due: the handshake or close timeout, the session's timers."""
        if self._deadline is not None and self._deadline <= now:
            self._deadline = None
            self._ws = None
            self._out.append(CloseTransport())
            if self.session is not None:
                self.session.connection_lost(now)
        if self.session is not None:
            self.session.handle_timer(now)

    def drain_actions(self, now: float) -> list[Action]:
        """Return the actions to carry out, in order (bytes already framed)."""
        session = self.session
        if session is not None:
            actions = session.drain_actions()
            if actions:
                out = self._out
                for action in actions:
                    if type(action) is SendMessage:
                        self._send(action.text)
                    elif isinstance(action, CloseConnection):
                        self._close(action, now)
                    else:
                        out.append(action)
        return self._out.drain()

    def _handle(self, ws: WsServer, events: list[WsEvent], now: float) -> None:
        for event in events:
            session = self.session
            if type(event) is TextMessage:
                assert session is not None  # frames flow only after accept(), which made it
                session.receive_text(event.text, now)
            elif isinstance(event, UpgradeRequest):
                self._deadline = None
                session = self.session = ServerSession(
                    self._config, handshake_headers=event.headers
                )
                early = ws.accept()
                session.connection_made(now)
                self._handle(ws, early, now)
            elif isinstance(event, HttpRequest):
                self._deadline = None
                self._out.append(
                    HttpRequestReceived(
                        method=event.method, target=event.target, headers=event.headers
                    )
                )
            elif isinstance(event, Rejected):
                self._out.append(HandshakeRejected(status=event.status, reason=event.reason))
            elif isinstance(event, Closed) and session is not None:
                session.connection_lost(now)
        self._flush(ws)

    def _flush(self, ws: WsServer) -> None:
        data = ws.data_to_send()
        if data:
            self._out.write(data)
        if ws.transport_should_close and self._ws is ws:
            self._ws = None
            self._deadline = None
            self._out.append(CloseTransport())

    def _send(self, text: str) -> None:
        frames = self._frames
        frame = frames.pop(id(text), None) if frames else None
        ws = self._ws
        if ws is not None and ws.state is _WS_OPEN:
            # A compressed connection cannot use the frame shared by all.
            if frame is None or ws.compression is not None:
                ws.send_text(text)
                self._out.write(ws.data_to_send())
            else:
                self._out.write(frame)

    def _close(self, action: CloseConnection, now: float) -> None:
        ws = self._ws
        if ws is not None and ws.state is _WS_OPEN:
            ws.close(action.code, _close_reason(action.reason))
            self._out.write(ws.data_to_send())
            self._deadline = now + self._close_timeout
